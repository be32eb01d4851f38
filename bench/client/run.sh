#!/usr/bin/env bash
# Vessel.Client's overhead: create + RunAsync("true") + kill through the SDK against the raw
# HTTP API (hand-written requests on the same unix socket), 20 interleaved rounds each, on one
# `vessel serve` with a template built through its API from Debian's busybox-static.
# TCG on this machine: the VM times are noisy; read the SDK - raw difference.
# Usage: bench/client/run.sh [rounds]   (as root, after scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-20}
work=$(mktemp -d /tmp/vcb.XXXXXX)
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
daemon=
cleanup() {
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then kill -TERM "$daemon"; wait "$daemon" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

dotnet build src/Vessel.Cli -c Release -nologo -v q >/dev/null
dotnet build bench/client/ClientBench -c Release -nologo -v q -o "$work/bench" >/dev/null
cli="dotnet src/Vessel.Cli/bin/Release/net10.0/Vessel.Cli.dll"

# The image: busybox-static with a shell, as a rootfs tarball.
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/root" "$work/rootfs/tmp"
cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh true cat echo sleep date; do ln -s busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .

home="$work/home"
sock="$home/vessel.sock"
$cli serve --home "$home" > "$work/serve.log" 2>&1 &
daemon=$!
until $cli sandbox ls --home "$home" >/dev/null 2>&1; do
  kill -0 "$daemon" 2>/dev/null || { tail -20 "$work/serve.log"; exit 1; }
  sleep 0.2
done
spec="{\"name\":\"bench\",\"from\":\"tarball:$work/busybox.tar\",\"diskSize\":\"128M\",\"start\":\"sleep 100000\"}"
build=$(curl -sS --fail-with-body --unix-socket "$sock" -X POST http://localhost/templates -H 'content-type: application/json' -d "$spec" | jq -r .buildId)
curl -sS -N --unix-socket "$sock" "http://localhost/builds/$build/log" >/dev/null
[ "$(curl -sS --unix-socket "$sock" "http://localhost/builds/$build" | jq -r .status)" = succeeded ] || { tail -20 "$work/serve.log"; exit 1; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
dotnet "$work/bench/ClientBench.dll" "$sock" bench "$rounds"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
