#!/usr/bin/env bash
# Rootfs builder benchmark: the same input, in the same run, through
#   vessel   `vessel rootfs build INPUT -o IMG --size S` (one streaming pass, no root; the CLI
#            published ReadyToRun as scripts/install.sh does)
#   (a)      `tar -xpf INPUT -C DIR` as root, then `mke2fs -t ext4 -d DIR IMG S`
#   (b)      `mkfs.ext4 IMG S`, `mount -o loop`, `tar -xpf INPUT -C MNT`, `umount`
# Every pipeline ends with `sync IMG` so each one is timed until its image is on disk, and
# `dd if=/dev/zero bs=4M count=256 oflag=direct` measures the disk's sequential write speed.
# Inputs: a Debian minbase tarball (debootstrap, cached; bench/images.sh) and a generated tarball of
# SMALL_FILES small files (0-8 KiB) plus LARGE_FILES x LARGE_MIB MiB, random content.
# Prints wall times (median of RUNS), ratios to Vessel, peak RSS (/usr/bin/time), and
# Vessel's bytes written per second against dd's.
#
#   sudo bench/rootfs/run.sh                       # defaults: 200000 small + 4 x 64 MiB, RUNS=3
#   RUNS=1 SMALL_FILES=20000 bench/rootfs/run.sh   # a quick look
set -euo pipefail
script=$(readlink -f "$0")
cd "$(dirname "$script")/../.."
repo=$(pwd)

work=${BENCH_DIR:-/var/tmp/vessel-bench-rootfs}
mnt="$work/mnt"
tar_flags=(--xattrs "--xattrs-include=*" --numeric-owner --same-owner -xpf)
mke2fs_flags=(-q -F -t ext4 -b 4096 -i 4096) # E2B's inode ratio: 200k small files need the inodes

vessel_pipeline() { dotnet "$VESSEL_DLL" rootfs build "$1" -o "$work/img" --size "$2" && sync "$work/img"; }
mke2fs_pipeline() {
  mkdir "$work/dir" && tar "${tar_flags[@]}" "$1" -C "$work/dir" \
    && mke2fs "${mke2fs_flags[@]}" -d "$work/dir" "$work/img" "$2" && sync "$work/img"
}
loop_pipeline() {
  truncate -s "$2" "$work/img" && mkfs.ext4 "${mke2fs_flags[@]}" "$work/img" \
    && mkdir -p "$mnt" && mount -o loop "$work/img" "$mnt" && tar "${tar_flags[@]}" "$1" -C "$mnt" \
    && umount "$mnt" && sync "$work/img"
}
if [ "${1:-}" = __pipeline ]; then # one timed pipeline: __pipeline NAME INPUT SIZE
  "${2}_pipeline" "$3" "$4"
  exit
fi

[ "$(id -u)" = 0 ] || { echo "run.sh: run as root (the peers extract as root and loop-mount)" >&2; exit 1; }
for tool in mke2fs mkfs.ext4 e2fsck tar dd losetup /usr/bin/time dotnet debootstrap; do
  command -v "$tool" >/dev/null || { echo "run.sh: needs $tool (scripts/setup.sh installs it)" >&2; exit 1; }
done

small_files=${SMALL_FILES:-200000}
large_files=${LARGE_FILES:-4}
large_mib=${LARGE_MIB:-64}
runs=${RUNS:-3}
source "$repo/bench/images.sh"
debian=$(debian_tarball) || { echo "run.sh: could not make the Debian minbase tarball (debootstrap)" >&2; exit 1; }

mkdir -p "$work"
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || echo "run.sh: could not unmount $mnt" >&2; fi
  for dev in $(losetup -j "$work/img" -O NAME -n 2>/dev/null); do losetup -d "$dev" || true; done
  rm -rf "$work/dir" "$work/img" "$work/img.json" "$work/dd.bin" "$mnt"
}
trap cleanup EXIT

# The CLI as scripts/install.sh publishes it: ReadyToRun, so the run is not spent in the JIT.
echo "== publishing Vessel (Release, ReadyToRun, as scripts/install.sh does)" >&2
dotnet publish src/Vessel.Cli/Vessel.Cli.csproj -c Release -r linux-x64 --self-contained false \
  -p:PublishReadyToRun=true -o "$work/cli" -nologo -v q >/dev/null
vessel_dll="$work/cli/Vessel.Cli.dll"

generated="$work/generated-${small_files}x-${large_files}x${large_mib}M.tar"
if [ ! -f "$generated" ]; then
  echo "== generating $generated" >&2
  dotnet run --file bench/rootfs/gen-tar.cs -- "$generated.tmp" "$small_files" "$large_files" "$large_mib"
  mv "$generated.tmp" "$generated"
fi

# time_run LABEL CMD...: runs CMD under /usr/bin/time, appends "LABEL wall_s rss_kib" to $results.
time_run() {
  local label=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/time.txt" "$@" >/dev/null 2>"$work/stderr.txt" || {
    echo "run.sh: $label failed:" >&2; cat "$work/stderr.txt" >&2; exit 1; }
  echo "$label $(tail -1 "$work/time.txt")" >> "$results"
}

run_pipeline() { # NAME INPUT SIZE: this script re-run in pipeline mode, under /usr/bin/time
  rm -rf "$work/img" "$work/img.json" "$work/dir"
  time_run "$1" env BENCH_DIR="$work" VESSEL_DLL="$vessel_dll" bash "$script" __pipeline "$1" "$2" "$3"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "== disk: dd if=/dev/zero bs=4M count=256 oflag=direct" >&2
dd_out=$(dd if=/dev/zero of="$work/dd.bin" bs=4M count=256 oflag=direct 2>&1 | tail -1)
rm -f "$work/dd.bin"
dd_seconds=$(echo "$dd_out" | sed -n 's/.*copied, \([0-9.]*\) s.*/\1/p')
dd_bps=$(awk -v s="$dd_seconds" 'BEGIN { printf "%.0f", 1073741824 / s }')

printf '\nmachine: %s cores, load average %s (other work on the machine counts)\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'disk sequential write (dd oflag=direct, 1 GiB): %.0f MB/s\n\n' "$(awk -v b="$dd_bps" 'BEGIN { print b / 1e6 }')"
printf '%-10s %-22s %8s %8s %10s\n' input pipeline wall_s vs_vessel peak_rss_MiB

for input in debian generated; do
  if [ "$input" = debian ]; then file=$debian; size=1G; else file=$generated; size=3G; fi
  cat "$file" > /dev/null # same page-cache state for every pipeline
  results="$work/results-$input.txt"
  : > "$results"
  for ((r = 1; r <= runs; r++)); do
    echo "== $input run $r/$runs" >&2
    run_pipeline vessel "$file" "$size"
    if [ "$r" = 1 ]; then
      e2fsck -fn "$work/img" >/dev/null 2>&1 || { echo "run.sh: e2fsck found problems in Vessel's image" >&2; exit 1; }
      vessel_bytes=$(du -B1 "$work/img" | cut -f1)
    fi
    run_pipeline mke2fs "$file" "$size"
    rm -rf "$work/dir"
    run_pipeline loop "$file" "$size"
  done
  v_wall=$(awk '$1 == "vessel" { print $2 }' "$results" | median)
  for p in vessel mke2fs loop; do
    wall=$(awk -v p=$p '$1 == p { print $2 }' "$results" | median)
    rss=$(awk -v p=$p '$1 == p { print $3 }' "$results" | sort -n | tail -1)
    case $p in vessel) name="vessel rootfs build";; mke2fs) name="(a) tar + mke2fs -d";; loop) name="(b) loop mount + tar";; esac
    printf '%-10s %-22s %8.2f %8.2fx %10.0f\n' "$input" "$name" "$wall" "$(awk -v a="$wall" -v b="$v_wall" 'BEGIN { print a / b }')" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')"
  done
  awk -v b="$vessel_bytes" -v s="$v_wall" -v d="$dd_bps" -v i="$input" 'BEGIN {
    printf "%-10s vessel wrote %.0f MB (allocated) in %.2f s: %.0f MB/s = %.2f of dd\n\n", i, b / 1e6, s, b / s / 1e6, (b / s) / d }'
done
