#!/usr/bin/env bash
# Boot artifacts from containerd: Vessel's snapshot view vs Vessel's streamed extraction vs
# the peers (ctr images mount, which is a leased view, + cp; a full unpack of every layer with tar), on a small
# image and a ~1 GiB image. Starts a private containerd in a temp dir and removes it at exit.
# Usage: bench/containerd/bench.sh [large-size-MiB (default 1024)] [runs (default 3)]
# Needs root, containerd, ctr, skopeo, jq, awk, and a Release build of the CLI
# (dotnet build src/Vessel.Cli -c Release).
set -euo pipefail
shopt -s inherit_errexit
LARGE_MIB=${1:-1024}
RUNS=${2:-3}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
VESSEL=(dotnet "$REPO/src/Vessel.Cli/bin/Release/net10.0/Vessel.Cli.dll")
[ -f "${VESSEL[1]}" ] || { echo "build first: dotnet build src/Vessel.Cli -c Release" >&2; exit 1; }
W=$(mktemp -d /tmp/vessel-bench-ctrd.XXXXXX)
NS=bench
source "$REPO/bench/lib/containerd.sh"
trap 'containerd_cleanup "$W"' EXIT
containerd_start "$W"

# An OCI layout with uncompressed layers, written by hand: layer i holds dir layer$i.
# Artifacts: kernel in the first layer, initrd in the middle, config in the top one.
build_image() { # name layers bytes-per-layer
  local name=$1 layers=$2 bytes=$3 dir=$W/img-$1 diffs=() descs=()
  mkdir -p "$dir/blobs/sha256"
  for i in $(seq 1 "$layers"); do
    local root=$dir/l$i
    mkdir -p "$root/data"
    head -c "$bytes" /dev/urandom >"$root/data/fill$i"
    if [ "$i" = 1 ]; then mkdir -p "$root/boot"; head -c $((8 << 20)) /dev/urandom >"$root/boot/vmlinuz"; fi
    if [ "$i" = $(((layers + 1) / 2)) ]; then mkdir -p "$root/boot"; head -c $((16 << 20)) /dev/urandom >"$root/boot/initrd.img"; fi
    if [ "$i" = "$layers" ]; then echo '{"hypervisor":"qemu"}' >"$root/urunc.json"; fi
    tar -C "$root" -cf "$dir/layer.tar" .
    local d size
    d=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1); size=$(stat -c %s "$dir/layer.tar")
    mv "$dir/layer.tar" "$dir/blobs/sha256/$d"; rm -rf "$root"
    diffs+=("\"sha256:$d\""); descs+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$d\",\"size\":$size}")
  done
  local cfg man
  cfg=$(printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$(IFS=,; echo "${diffs[*]}")")
  printf %s "$cfg" >"$dir/cfg"; local cd cs; cd=$(sha256sum "$dir/cfg" | cut -d' ' -f1); cs=$(stat -c %s "$dir/cfg"); mv "$dir/cfg" "$dir/blobs/sha256/$cd"
  man=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' "$cd" "$cs" "$(IFS=,; echo "${descs[*]}")")
  printf %s "$man" >"$dir/man"; local md ms; md=$(sha256sum "$dir/man" | cut -d' ' -f1); ms=$(stat -c %s "$dir/man"); mv "$dir/man" "$dir/blobs/sha256/$md"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"1"}}]}' "$md" "$ms" >"$dir/index.json"
  skopeo copy --quiet "oci:$dir:1" "docker-archive:$W/$name.tar:bench/$name:1"
  rm -rf "$dir"
  "${CTR[@]}" images import "$W/$name.tar" >/dev/null
  rm -f "$W/$name.tar"
}
echo "building images (small: 3 x 1 MiB fill; large: 4 x $((LARGE_MIB / 4)) MiB fill)..." >&2
build_image small 3 $((1 << 20))
build_image large 4 $(((LARGE_MIB / 4) << 20))

now() { date +%s.%N; }
FILES=(--file /boot/vmlinuz --file /boot/initrd.img --file /urunc.json)
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

vessel_run() { # image mode -> seconds for artifacts (cleanup not timed, checked)
  local b=$W/b-$RANDOM; mkdir -p "$b/bundle"
  local t0 t1; t0=$(now)
  "${VESSEL[@]}" containerd artifacts --address "$SOCK" -n "$NS" --image "bench/$1:1" "${FILES[@]}" --bundle "$b/bundle" --out "$b/out" --mode "$2" >"$b/log" 2>&1
  t1=$(now)
  grep -q "^artifacts: $2" "$b/log" || { cat "$b/log" >&2; exit 1; }
  cmp -s "$b/out/urunc.json" <(echo '{"hypervisor":"qemu"}') || { echo "bad bytes" >&2; exit 1; }
  "${VESSEL[@]}" containerd cleanup --bundle "$b/bundle" >/dev/null
  if [ "${INPROC:-0}" = 1 ]; then
    sed -n 's/^vessel: artifacts ready in \([0-9]*\) ms$/\1/p' "$b/log" | awk '{printf "%.3f\n", $1/1000}'
  else
    awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f\n", b-a}'
  fi
  rm -rf "$b"
}
ctr_view_run() { # ctr images mount (a leased read-only view, mounted) + cp of the three files: the peer of the view
  local b=$W/c-$RANDOM t0 t1; mkdir -p "$b/mnt" "$b/out"
  t0=$(now)
  "${CTR[@]}" images mount "docker.io/bench/$1:1" "$b/mnt" >/dev/null
  cp "$b/mnt/boot/vmlinuz" "$b/mnt/boot/initrd.img" "$b/mnt/urunc.json" "$b/out/"
  t1=$(now)
  "${CTR[@]}" images unmount --rm "$b/mnt" >/dev/null; rm -rf "$b"; awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f\n", b-a}'
}
full_unpack_run() { # every layer untarred in order (what extracting the whole image costs)
  local b=$W/u-$RANDOM t0 t1; mkdir -p "$b"
  t0=$(now)
  for blob in $(layers_of "$1"); do tar -C "$b" -xf "$W/root/io.containerd.content.v1.content/blobs/sha256/${blob#sha256:}"; done
  t1=$(now)
  rm -rf "$b"; awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f\n", b-a}'
}
layers_of() {
  local m c; m=$("${CTR[@]}" images ls | awk -v n="docker.io/bench/$1:1" '$1==n{print $3}')
  "${CTR[@]}" content get "$m" | jq -r '.layers[].digest'
}

echo "seconds, median of $RUNS; vessel columns: CLI process wall time (in-process time in brackets)"
printf '%-6s %9s %18s %18s %12s %11s\n' image size vessel-view vessel-extract ctr-mount+cp full-untar
for img in small large; do
  size=$("${CTR[@]}" images ls | awk -v n="docker.io/bench/$img:1" '$1==n{print $4 $5}')
  v=$(for _ in $(seq "$RUNS"); do vessel_run "$img" view; done | median)
  vi=$(for _ in $(seq "$RUNS"); do INPROC=1 vessel_run "$img" view; done | median)
  e=$(for _ in $(seq "$RUNS"); do vessel_run "$img" extract; done | median)
  ei=$(for _ in $(seq "$RUNS"); do INPROC=1 vessel_run "$img" extract; done | median)
  c=$(for _ in $(seq "$RUNS"); do ctr_view_run "$img"; done | median)
  u=$(for _ in $(seq "$RUNS"); do full_unpack_run "$img"; done | median)
  printf '%-6s %9s %9.3f (%6.3f) %9.3f (%6.3f) %12.3f %11.3f\n' "$img" "$size" "$v" "$vi" "$e" "$ei" "$c" "$u"
  eval "V_$img=$vi E_$img=$ei"
done
awk -v vs="$V_small" -v vl="$V_large" -v es="$E_small" -v el="$E_large" \
  'BEGIN{printf "in-process: view large/small: %.2fx   extract large/small: %.2fx   extract/view on large: %.1fx\n", vl/vs, el/es, el/vl}'
if "${CTR[@]}" leases ls | grep -q vessel-; then echo "leftover lease" >&2; exit 1; fi
if "${CTR[@]}" snapshots ls | grep -q ' View'; then echo "leftover view" >&2; exit 1; fi
if grep -q " $W/b-" /proc/self/mountinfo; then echo "leftover mount" >&2; exit 1; fi
echo "no leases, views or mounts of Vessel left" >&2
