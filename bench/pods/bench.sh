#!/usr/bin/env bash
# Pods (issue 15) through `vessel serve` (docs/BENCHMARKS.md, "Pods"). TCG here: read ratios.
#   1. create -> first command in a container (POST /sandboxes, then a `true` in it), for a small image
#      (busybox-static + an 8 MiB random file, ~10 MiB uncompressed tarball) and a larger one
#      (LARGE_MIB=1024: busybox + 1 GiB random file, made once by bench/images.sh and cached; or
#      LARGE=path of any rootfs tarball): lower not cached (the home's images/ emptied first) and
#      cached; RUNS runs each for the small image, LARGE_RUNS (default 1) for the large, median
#   2. a pod of 2 containers that each wrote 64 MiB to their upper: pause time and size, resume time
#      (to the first command), against a cold create of the same pod
#   3. (READ=1) sequential read of a 512 MiB file in the guest: block lower, virtio-fs lower, and a
#      template sandbox (today's ext4 rootfs over NBD) of the same image (busybox + /big, 512 MiB random)
#   MODE="block", "virtiofs" or "block virtiofs" picks the lowers of 1. (2. runs when block is one of
#   them: a virtio-fs pod cannot pause); SKIP_PAUSE=1 leaves 2. out
#   bench/pods/bench.sh [RUNS]   (root, after scripts/setup.sh; LARGE_MIB=..., LARGE=..., MODE=..., READ=1 optional)
set -euo pipefail
source "$(dirname "$0")/../lib/work.sh"
bench_work vpod
runs=${1:-3}
modes=${MODE:-block}
large_runs=${LARGE_RUNS:-1}
source bench/images.sh
dotnet build src/Vessel.Cli -c Release -nologo -v q > "$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
cli=(dotnet src/Vessel.Cli/bin/Release/net10.0/Vessel.Cli.dll)
home="$work/home"
busybox_tarball "$work/small.tar.gz"
small=$(random_tarball 8)
"${cli[@]}" serve --home "$home" > "$work/serve.log" 2>&1 &
daemon=$!
for _ in $(seq 3000); do grep -q "serving on" "$work/serve.log" && break; sleep 0.2; done # a new kit is built first
grep -q "serving on" "$work/serve.log" || { echo "vessel serve did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
api=(curl -sS --fail-with-body --unix-socket "$home/vessel.sock" -H 'content-type: application/json')
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
med() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

pod() { # $1 image, $2 memoryMb, $3 upperMb: a pod of one container "c" (or two with $4 = 2)
  local c='{"name":"c","image":"'$1'","command":["sleep","100000"]}'
  [ "${4:-1}" = 2 ] && c="$c"',{"name":"d","image":"'$1'","command":["sleep","100000"]}'
  echo '{"containers":['"$c"'],"rootfs":"'${5:-block}'","memoryMb":'$2',"upperMb":'$3',"timeoutSeconds":3600}'
}
run_in() { # $1 id, $2 container, $3 script
  "${api[@]}" -X POST "http://localhost/sandboxes/$1/commands" -d '{"cmd":"/bin/sh","args":["-c","'"$3"'"],"container":"'$2'"}' > "$work/out.ndjson"
  grep -q '"exitCode":0' "$work/out.ndjson" || { echo "command failed: $(cat "$work/out.ndjson")" >&2; exit 1; }
}
create_first() { # $1 body; prints "ms id"
  local t0 id
  t0=$(now)
  id=$("${api[@]}" -X POST http://localhost/sandboxes -d "$1" | sed 's/.*"sandboxId":"\([^"]*\)".*/\1/')
  run_in "$id" c true
  echo "$(ms "$t0" "$(now)") $id"
}
kill_sb() { "${api[@]}" -X DELETE "http://localhost/sandboxes/$1" >/dev/null; }

measure() { # $1 mode, $2 label, $3 image, $4 runs
  local cold=() warm=() r id mode=$1
  for _ in $(seq "$4"); do
    rm -rf "$home/images"
    read -r r id < <(create_first "$(pod "$3" 256 64 1 "$mode")"); cold+=("$r"); kill_sb "$id"
    read -r r id < <(create_first "$(pod "$3" 256 64 1 "$mode")"); warm+=("$r"); kill_sb "$id"
  done
  local lower; lower=$(ls -s --block-size=1M "$home"/images/*.ext4 | awk '{ s += $1 } END { print s }')
  [ "$mode" = virtiofs ] && lower="$lower (+ tree $(du -sm "$home/images/trees" | cut -f1))"
  echo "$mode $2: lower not cached $(printf '%s\n' "${cold[@]}" | med) ms, cached $(printf '%s\n' "${warm[@]}" | med) ms (median of $4; lower ext4 ${lower} MiB allocated)"
}

echo "== 1. create -> first command (1 container, 256 MiB guest)"
large=${LARGE:-}
[ -z "$large" ] && [ -n "${LARGE_MIB:-}" ] && large=$(random_tarball "$LARGE_MIB")
for mode in $modes; do
  measure "$mode" "small ($(du -h "$small" | cut -f1) tarball)" "$small" "$runs"
  if [ -n "$large" ]; then measure "$mode" "large ($(du -h "$large" | cut -f1) tarball)" "$large" "$large_runs"; fi
done

if [ "${SKIP_PAUSE:-}" != 1 ] && [[ " $modes " == *" block "* ]]; then
echo "== 2. pause/resume of 2 containers with 64 MiB each in their uppers (768 MiB guest, upperMb 96)"
body=$(pod "$work/small.tar.gz" 768 96 2)
read -r _ id < <(create_first "$body"); kill_sb "$id" # builds the lower: the cold create below boots on it cached
read -r cold id < <(create_first "$body")
run_in "$id" c "dd if=/dev/urandom of=/big bs=1M count=64 2>/dev/null"
run_in "$id" d "dd if=/dev/urandom of=/big bs=1M count=64 2>/dev/null"
t0=$(now); "${api[@]}" -X POST "http://localhost/sandboxes/$id/pause" >/dev/null; pause=$(ms "$t0" "$(now)")
size=$(du -sm "$home"/snapshots/"$id"-* | awk '{ s += $1 } END { print s }')
t0=$(now); "${api[@]}" -X POST "http://localhost/sandboxes/$id/resume" >/dev/null; run_in "$id" c "test -s /big"; resume=$(ms "$t0" "$(now)")
kill_sb "$id"
echo "cold create to first command ${cold} ms (lower cached); pause ${pause} ms (${size} MiB saved); resume to first command ${resume} ms (the 64 MiB upper file read back)"
fi

if [ "${READ:-}" = 1 ]; then
  echo "== 3. sequential read of a 512 MiB file in the guest (first read after boot; host page cache warm)"
  big=$(random_tarball 512)
  read_once() { # $1 sandbox id, $2 container ("" for a template sandbox): ms for dd of /big
    local t0 extra=''
    [ -n "$2" ] && extra=',"container":"'$2'"'
    t0=$(now)
    "${api[@]}" -X POST "http://localhost/sandboxes/$1/commands" -d '{"cmd":"/bin/sh","args":["-c","dd if=/big of=/dev/null bs=1M"]'"$extra"'}' > "$work/out.ndjson"
    local t1; t1=$(now)
    grep -q '"exitCode":0' "$work/out.ndjson" || { echo "dd failed: $(cat "$work/out.ndjson")" >&2; exit 1; }
    ms "$t0" "$t1"
  }
  for m in block virtiofs; do
    read -r _ id < <(create_first "$(pod "$big" 512 64 1 "$m")")
    echo "$m lower: $(read_once "$id" c) ms"
    kill_sb "$id"
  done
  printf '{"name":"bigread","from":"%s","memoryMb":512}\n' "$big" > "$work/bigread.json"
  "${cli[@]}" template build -f "$work/bigread.json" --home "$home" --no-vm > /dev/null
  id=$("${api[@]}" -X POST http://localhost/sandboxes -d '{"template":"bigread","timeoutSeconds":3600}' | sed 's/.*"sandboxId":"\([^"]*\)".*/\1/')
  echo "template sandbox (ext4 over NBD): $(read_once "$id" "") ms"
  kill_sb "$id"
fi