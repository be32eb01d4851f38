#!/usr/bin/env bash
# Sandbox cold start, exec round trip and file throughput, next to the peer: a bare QEMU
# boot of the same kernel with a minimal busybox initramfs that prints one line and powers
# off (the floor any microVM sandbox on this QEMU pays). TCG on this machine: compare ratios.
# Usage: bench/sandbox/bench.sh [boots]   (run as root, after scripts/setup.sh)
#        PSS=1 bench/sandbox/bench.sh [boots]   also host memory per sandbox (one cold, ten resumed)
# The image is Debian's busybox-static, made into an OCI image here with umoci: nothing from outside the repository.
set -euo pipefail
source "$(dirname "$0")/../lib/work.sh"
bench_work vbench
boots=${1:-3}

dotnet build src/Vessel.Cli -c Release -nologo -v q >/dev/null
dotnet build bench/sandbox/SandboxBench -c Release -nologo -v q -o "$work/bench" >/dev/null
cli="dotnet src/Vessel.Cli/bin/Release/net10.0/Vessel.Cli.dll"
kitdir=$($cli kit build 2>/dev/null | sed -n 's/^kit [0-9a-f]*: //p')
# The image: Debian's busybox-static in an OCI layout made with umoci (as scripts/demo.sh does).
source bench/images.sh
busybox_oci "$work/oci" bench sh true cat echo sleep test mkdir
$cli rootfs build "oci:$work/oci:bench" -o "$work/rootfs.ext4" --size 256M >/dev/null
tsc=$(dotnet "$work/bench/Vessel.Bench.dll" --tsc)
tsc_arg=${tsc:+tsc_early_khz=$tsc}

# Peer: bare QEMU + kernel + busybox init that echoes and reboots.
mkdir -p "$work/peer/bin" "$work/peer/dev" "$work/peer/proc"
cp /bin/busybox "$work/peer/bin/busybox"
printf '#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\nread up idle < /proc/uptime\necho "peer-init at ${up}s"\n/bin/busybox reboot -f\n' > "$work/peer/init"
chmod +x "$work/peer/init"
(cd "$work/peer" && find . | cpio -o -H newc --quiet > "$work/peer.cpio")
echo "== peer: bare QEMU microvm boot to init and power-off (TCG)"
peer_total=0
for i in $(seq "$boots"); do
  start=$(date +%s%N)
  line=$(timeout 120 qemu-system-x86_64 -M microvm -accel tcg -cpu max -m 256M -smp 1 -nodefaults -no-user-config -display none -no-reboot \
    -serial stdio -kernel "$kitdir/vmlinuz" -initrd "$work/peer.cpio" \
    -append "console=ttyS0 quiet panic=-1 reboot=t $tsc_arg tsc=reliable no_timer_check" | grep -a peer-init | tr -d '\r')
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  peer_total=$((peer_total + ms))
  echo "boot $i: $line, whole run $ms ms"
done

echo "== vessel: sandbox create (QEMU + kernel + init + agent) and exec"
out=$(dotnet "$work/bench/Vessel.Bench.dll" "$work/rootfs.ext4" "$work/state" "$boots")
echo "$out"
vessel_total=0
for ms in $(echo "$out" | sed -n 's/.*| total \([0-9]*\) ms/\1/p'); do vessel_total=$((vessel_total + ms)); done
echo "== ratio: vessel sandbox ready + first exec / bare QEMU boot-to-init-and-exit = $(echo "scale=2; $vessel_total / $peer_total" | bc)"
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${PSS:-0}" = 1 ]; then
  echo "== host memory per sandbox (Pss of QEMU, /proc/PID/smaps_rollup)"
  dotnet "$work/bench/Vessel.Bench.dll" --pss "$work/rootfs.ext4" "oci:$work/oci:bench" "$work/pss" 256
fi
