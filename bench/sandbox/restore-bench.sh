#!/usr/bin/env bash
# Sandbox from a template: resume from the template's snapshot versus a cold boot of the same
# disk, in the same run, through the CLI (`vessel template run NAME [--cold] --timings -- true`).
# Builds a template from a busybox image (bench/images.sh) with a start command first. Reports the
# host-side "agent ready" time (QEMU start to the agent's answer, printed by --timings) and the
# whole CLI process (the command's result included), median of RUNS each, and the ratios.
# TCG on this machine: compare the ratio, not the absolute times.
#   bench/sandbox/restore-bench.sh [RUNS]     (root, after scripts/setup.sh; default 5)
set -euo pipefail
source "$(dirname "$0")/../lib/work.sh"
bench_work vrestore
runs=${1:-5}
# The CLI as scripts/install.sh publishes it (ReadyToRun), with the guest agent beside it.
dotnet build src/Vessel.Cli -c Release -nologo -v q >/dev/null
dotnet publish src/Vessel.Cli/Vessel.Cli.csproj -c Release -r linux-x64 --self-contained false \
  -p:PublishReadyToRun=true -o "$work/cli" -nologo -v q >/dev/null
cp -r artifacts/agent/Release "$work/cli/agent"
cli=(dotnet "$work/cli/Vessel.Cli.dll")
source bench/images.sh
busybox_tarball "$work/busybox.tar.gz"
cat > "$work/spec.json" <<EOF
{
  "name": "bench",
  "from": "tarball:$work/busybox.tar.gz",
  "diskSize": "256M",
  "memoryMb": 256,
  "steps": [ { "run": "mkdir -p /srv && echo ok > /srv/health" } ],
  "start": "while true; do cat /srv/health > /tmp/served; sleep 1; done",
  "ready": "test -s /tmp/served"
}
EOF
echo "== building the template (TCG)"
"${cli[@]}" template build -f "$work/spec.json" --home "$work/home" 2>&1 | grep -E "snapshot:|built"

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
measure() { # $1: extra flag ("" or --cold); prints "agent_ms wall_ms" per run
  for _ in $(seq "$runs"); do
    local start end err
    start=$(date +%s%N)
    err=$("${cli[@]}" template run bench --home "$work/home" --timings $1 -- cat /srv/health 2>&1 >/dev/null)
    end=$(date +%s%N)
    echo "$(echo "$err" | sed -n 's/.*agent ready \([0-9]*\) ms;.*/\1/p') $(( (end - start) / 1000000 ))"
  done
}
echo "== $runs resumes from the snapshot, $runs cold boots of the same disk"
measure "" > "$work/restore.txt"
measure --cold > "$work/cold.txt"
r_agent=$(cut -d' ' -f1 "$work/restore.txt" | median); r_wall=$(cut -d' ' -f2 "$work/restore.txt" | median)
c_agent=$(cut -d' ' -f1 "$work/cold.txt" | median); c_wall=$(cut -d' ' -f2 "$work/cold.txt" | median)
printf '%-34s %10s %10s\n' "" "resume" "cold boot"
printf '%-34s %8s ms %8s ms\n' "QEMU start to agent ready (median)" "$r_agent" "$c_agent"
printf '%-34s %8s ms %8s ms\n' "whole CLI run, command done" "$r_wall" "$c_wall"
awk -v ra="$r_agent" -v ca="$c_agent" -v rw="$r_wall" -v cw="$c_wall" \
  'BEGIN { printf "ratio cold/resume: agent ready %.1fx, whole run %.1fx\n", ca / ra, cw / rw }'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
