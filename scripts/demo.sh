#!/usr/bin/env bash
# Vessel's main job, from a fresh Debian 12 machine (as root):
#   install everything, make a small OCI image from Debian's busybox-static, build a
#   rootfs from it, check it, build the guest kit, boot a microVM sandbox on the rootfs,
#   run a command in it; then build a template from the image (a RUN step in a build VM,
#   a start command, a snapshot), resume a sandbox from it, run a command, and print the
#   results and timings.
# Needs nothing outside this repository and Debian's packages.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
work=$(mktemp -d /tmp/vessel-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

t() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(t)" 'BEGIN { printf "%.2f s", b - a }'; }

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
start=$(t)
set +e
vessel sandbox run --timings "$work/rootfs.ext4" -- sh -c 'echo "hello from $(hostname): $(uname -srm)"; id; df -h / | tail -1'
rc=$?
set -e
echo "   exit code $rc, $(elapsed "$start") including boot (TCG times: compare as ratios)"
[ "$rc" = 0 ] || exit $rc

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
start=$(t)
set +e
vessel template run demo --timings -- sh -c 'echo "$GREETING"; cat /root/built.txt; echo "start command still running: $(cat /tmp/heartbeat)"'
rc=$?
set -e
echo "   exit code $rc, $(elapsed "$start") including CLI start and restore (TCG)"
exit $rc
