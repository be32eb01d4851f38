#!/usr/bin/env bash
# Vessel's main job, from a fresh Debian 12 machine (as root):
#   install everything, make a small OCI image from Debian's busybox-static, build a
#   rootfs from it, check it, build the guest kit, boot a microVM sandbox on the rootfs,
#   run a command in it; then build a template from the image (a RUN step in a build VM,
#   a start command, a snapshot), resume a sandbox from it, run a command, and print the
#   results and timings. Then the same through the daemon: start `vessel serve`, build a
#   template through its HTTP API, create a sandbox, run two commands, write and read a file,
#   pause and resume it, kill it, print the timings, stop the daemon, leave nothing running.
# Needs nothing outside this repository and Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
work=$(mktemp -d /tmp/vessel-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

t() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(t)" 'BEGIN { printf "%.2f s", b - a }'; }
# timed_run WHAT CMD...: runs CMD, prints its exit code and time ("including WHAT"), stops the demo if it failed.
timed_run() {
  local what=$1 start rc=0
  shift
  start=$(t)
  "$@" || rc=$?
  echo "   exit code $rc, $(elapsed "$start") $what"
  [ "$rc" = 0 ] || exit "$rc"
}

echo
echo "== 1. an OCI image from Debian's busybox-static (umoci)"
start=$(t)
umoci init --layout "$work/oci" >/dev/null
umoci new --image "$work/oci:demo" >/dev/null
umoci unpack --rootless --image "$work/oci:demo" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/root" "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh ls cat echo uname df id env mkdir rm sleep date test hostname; do ln -sf busybox "$rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\n' > "$rootfs/etc/group"
umoci repack --image "$work/oci:demo" "$work/bundle" >/dev/null
umoci config --image "$work/oci:demo" --config.cmd /bin/sh --config.env PATH=/bin --config.workingdir /root >/dev/null
echo "   image oci:$work/oci:demo ($(elapsed "$start"))"

echo
echo "== 2. vessel rootfs build (one streaming pass, no root, no mounts)"
start=$(t)
vessel rootfs build "oci:$work/oci:demo" -o "$work/rootfs.ext4" --free 64M
echo "   total $(elapsed "$start") including CLI start"

echo
echo "== 3. vessel rootfs check (e2fsck -fn)"
vessel rootfs check "$work/rootfs.ext4" | tail -2
debugfs -R 'ls -l /bin' "$work/rootfs.ext4" 2>/dev/null | head -5

echo
echo "== 4. vessel kit build (pinned Debian cloud kernel + Vessel's initramfs; cached)"
start=$(t)
vessel kit build | tail -3
echo "   $(elapsed "$start")"

echo
echo "== 5. vessel sandbox run: boot a microVM on the rootfs and run a command (QEMU; TCG here)"
timed_run "including boot (TCG times: compare as ratios)" \
  vessel sandbox run --timings "$work/rootfs.ext4" -- sh -c 'echo "hello from $(hostname): $(uname -srm)"; id; df -h / | tail -1'

echo
echo "== 6. vessel template build: base from the image, a RUN step in a build VM, start + ready, snapshot"
cat > "$work/template.json" <<EOF
{
  "name": "demo",
  "from": "oci:$work/oci:demo",
  "diskSize": "128M",
  "steps": [
    { "run": "echo built in the template VM at \$(date) > /root/built.txt" },
    { "env": { "GREETING": "hello from a resumed sandbox" } }
  ],
  "start": "while true; do date > /tmp/heartbeat; sleep 1; done",
  "ready": "test -s /tmp/heartbeat"
}
EOF
start=$(t)
vessel template build -f "$work/template.json" >/dev/null
echo "   built in $(elapsed "$start"); again (fully cached):"
start=$(t)
vessel template build -f "$work/template.json" 2>&1 >/dev/null | grep -E "CACHED|built"
echo "   $(elapsed "$start") including CLI start"

echo
echo "== 7. vessel template run: resume a sandbox from the template's snapshot and run a command"
timed_run "including CLI start and restore (TCG)" \
  vessel template run demo --timings -- sh -c 'echo "$GREETING"; cat /root/built.txt; echo "start command still running: $(cat /tmp/heartbeat)"'

echo
echo "== 8. vessel serve: sandboxes that live, through the daemon's API (curl) and its CLI client (vessel sandbox ...)"
# The daemon uses the same home as the steps above (its kit, layers and phase cache).
home="${VESSEL_HOME:-/var/lib/vessel}"
sock="$home/vessel.sock"
vessel serve --home "$home" > "$work/serve.log" 2>&1 &
daemon=$!
stop_daemon() {
  if kill -0 "$daemon" 2>/dev/null; then
    kill -TERM "$daemon"
    wait "$daemon" || true
  fi
}
trap 'stop_daemon; rm -rf "$work"' EXIT
start=$(t)
until vessel sandbox ls --home "$home" >/dev/null 2>&1; do
  kill -0 "$daemon" 2>/dev/null || { echo "vessel serve exited:"; tail -20 "$work/serve.log"; exit 1; }
  sleep 0.2
done
echo "   daemon up on $sock in $(elapsed "$start")"
api() { curl -sS --fail-with-body --unix-socket "$sock" "$@"; }

start=$(t)
api -X DELETE http://localhost/templates/demo-api >/dev/null 2>&1 || true   # from an earlier run
jq '.name = "demo-api"' "$work/template.json" > "$work/template-api.json"
build=$(api -X POST http://localhost/templates -H 'content-type: application/json' --data-binary @"$work/template-api.json" | jq -r .buildId)
api -N "http://localhost/builds/$build/log" | sed 's/^/   | /' | tail -4
status=$(api "http://localhost/builds/$build" | jq -r .status)
echo "   template 'demo-api' built through the API (its phases cached by step 6): $status in $(elapsed "$start")"
[ "$status" = succeeded ] || { tail -20 "$work/serve.log"; exit 1; }

timed() { local s; s=$(t); "$@"; echo "   ($(elapsed "$s"): $*)" | sed "s| --home $home||"; }
start=$(t)
id=$(vessel sandbox create demo-api --home "$home" --timeout 600 --meta demo=yes)
echo "   sandbox $id created (resumed from the template's snapshot) in $(elapsed "$start")"
timed vessel sandbox exec "$id" --home "$home" -- sh -c 'echo "$GREETING"; cat /root/built.txt'
timed vessel sandbox exec "$id" --home "$home" -- sh -c 'echo "start command still running: $(cat /tmp/heartbeat)"'
echo "a file from the host" > "$work/note.txt"
timed vessel sandbox cp "$work/note.txt" "$id:/root/note.txt" --home "$home"
timed vessel sandbox cp "$id:/root/note.txt" - --home "$home"
timed vessel sandbox pause "$id" --home "$home"
vessel sandbox ls --home "$home"
timed vessel sandbox resume "$id" --home "$home"
timed vessel sandbox exec "$id" --home "$home" -- cat /root/note.txt
timed vessel sandbox kill "$id" --home "$home"

start=$(t)
stop_daemon
echo "   daemon stopped in $(elapsed "$start")"
if pgrep -f "qemu-system.*$home/sandboxes/$id" >/dev/null || [ -S "$sock" ]; then
  echo "   LEFT BEHIND: $(pgrep -af "qemu-system.*$id") $(ls "$sock" 2>/dev/null)"
  exit 1
fi
vessel sandbox ls --home "$home" 2>&1 | sed 's/^/   /' || true
echo "   nothing left running"
