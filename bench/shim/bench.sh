#!/usr/bin/env bash
# `ctr run --rm` of the busybox test image to its output: runc vs containerd-shim-vessel-v1, in the
# same run, alternating, against one private containerd (temp dir, CRI off, removed at exit).
# Prints each run's wall time, the medians and their ratio, and the shim's own breakdown (from its
# log lines: rootfs mount + ext4 image, VM boot to a ready agent).
# Usage: bench/shim/bench.sh [runs (default 5)]
# Needs root, containerd, ctr, runc, umoci, busybox-static, qemu, the guest kit (vessel kit build) and a
# Release build of the shim (dotnet build src/Vessel.Shim -c Release).
set -euo pipefail
RUNS=${1:-5}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
SHIM_DIR=$REPO/src/Vessel.Shim/bin/Release/net10.0
[ -x "$SHIM_DIR/containerd-shim-vessel-v1" ] || { echo "build first: dotnet build src/Vessel.Shim -c Release" >&2; exit 1; }
W=$(mktemp -d /tmp/vessel-bench-shim.XXXXXX)
NS=bench
source "$REPO/bench/lib/containerd.sh"
trap 'containerd_cleanup "$W"' EXIT
containerd_start "$W" "$SHIM_DIR"

# The busybox image as the tests make it (bench/images.sh), as an OCI layout (umoci), imported.
source "$REPO/bench/images.sh"
busybox_tarball "$W/busybox.tar.gz"
umoci init --layout "$W/oci" >/dev/null
umoci new --image "$W/oci:test" >/dev/null
umoci unpack --rootless --image "$W/oci:test" "$W/bundle" >/dev/null
tar -C "$W/bundle/rootfs" -xzf "$W/busybox.tar.gz"
umoci repack --image "$W/oci:test" "$W/bundle" >/dev/null
tar -C "$W/oci" -cf "$W/oci.tar" .
"${CTR[@]}" images import --base-name docker.io/library/bench >/dev/null "$W/oci.tar"
IMAGE=docker.io/library/bench:test

run_once() { # runtime name -> seconds
  local start end
  start=$(date +%s.%N)
  "${CTR[@]}" run --rm --runtime "$1" "$IMAGE" "$2" sh -c 'cat /etc/vessel-test-release' </dev/null >"$W/out" 2>&1
  end=$(date +%s.%N)
  grep -q 'busybox-test 1' "$W/out" || { echo "run $2 printed: $(cat "$W/out")" >&2; exit 1; }
  echo "$end - $start" | bc
}
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

: >"$W/runc"; : >"$W/vessel"
for i in $(seq "$RUNS"); do
  r=$(run_once io.containerd.runc.v2 "runc$i"); echo "$r" >>"$W/runc"
  v=$(run_once io.containerd.vessel.v1 "vessel$i"); echo "$v" >>"$W/vessel"
  printf 'run %d: runc %.3f s, vessel %.3f s\n' "$i" "$r" "$v"
done
R=$(median <"$W/runc"); V=$(median <"$W/vessel")
printf 'median: runc %.3f s, vessel %.3f s, ratio %.1fx\n' "$R" "$V" "$(echo "$V / $R" | bc -l)"
echo "vessel breakdown per run (the shim's Create, from its log; VMM started and agent ready count from the sandbox create):"
grep -o 'timings: [^"]*' "$W/containerd.log" | sed 's/^timings: /  /'
