#!/usr/bin/env bash
# Vessel's main job, from a fresh Debian 12 machine (as root):
#   install everything, make a small OCI image from Debian's busybox-static, build a
#   rootfs from it, check it, build the guest kit, boot a microVM sandbox on the rootfs,
#   run a command in it, and print the result and timings.
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
for applet in sh ls cat echo uname df id env mkdir rm sleep; do ln -sf busybox "$rootfs/bin/$applet"; done
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
exit $rc
