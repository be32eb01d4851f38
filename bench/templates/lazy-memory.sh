#!/usr/bin/env bash
# A ~1 GiB template started on a node that has none of it (issue 19, item 2's figure), against
# homes that hold it, in the same run (s3rver on loopback, TCG):
#   - the template: Debian bookworm minbase (debootstrap, cached) plus MIB MiB of random data
#     (COPY), MEM MiB of guest memory, a start command; built in home a and pushed;
#   - cold: `template pull --lazy` into an empty home c (empty chunk cache: only the manifest,
#     the headers, snapshot.json and state are fetched; layers and memory stay in the bucket),
#     then the first exec (`template run t --timings -- true`, resumed from the snapshot), with the
#     bytes it fetched from the bucket (memory and layers, counted where chunks are fetched);
#   - warm: the same run again in home c (its chunk cache now holds what the first run read),
#     and in home a, which built it (everything local);
#   - the old way: a whole `template pull` into home b, then the first exec there.
# Usage: bash bench/templates/lazy-memory.sh [MiB of random data, default 900] [guest MiB, default 512]
# (root, after scripts/setup.sh; needs about 4x the data in free disk)
set -euo pipefail
source "$(dirname "$0")/../lib/s3rver.sh"
bench_s3_work vessel-tplmem
mib=${1:-900}
mem=${2:-512}
source bench/images.sh
bucket=s3://vessel/bench

debian=$(debian_tarball)
head -c $((mib << 20)) /dev/urandom > "$work/random.bin"
cat > "$work/t.json" <<JSON
{ "name": "t", "from": "tarball:$debian", "diskSize": "$((mib + 700))M", "memoryMb": $mem,
  "steps": [ { "copy": { "src": "random.bin", "dest": "/data/random.bin" } } ],
  "start": "while true; do date > /tmp/heartbeat; sleep 1; done", "ready": "test -s /tmp/heartbeat" }
JSON
"${cli[@]}" template build -f "$work/t.json" --home "$work/a" 2>&1 | grep -E "^built"
t0=$(now); push=$("${cli[@]}" template push t --to $bucket --home "$work/a" 2>&1) || { echo "push failed: $push" >&2; exit 1; }; push_s=$(secs "$t0")
first_exec() { # home -> wall seconds of `template run t -- true`; its stderr in $work/run.log
  local t; t=$(now)
  "${cli[@]}" template run t --home "$1" --timings -- true >/dev/null 2>"$work/run.log" || { echo "run in $1 failed: $(cat "$work/run.log")" >&2; exit 1; }
  grep -q "restored from snapshot" "$work/run.log" || { echo "not restored: $(cat "$work/run.log")" >&2; exit 1; }
  secs "$t"
}
fetched() { sed -n 's/.*fetched from .*: \([0-9]* bytes (memory [0-9]*, layers [0-9-]*)\).*/\1/p' "$work/run.log"; }

export VESSEL_REMOTE_STORE=$bucket
t0=$(now); lazy=$("${cli[@]}" template pull t --from $bucket --lazy --home "$work/c" 2>&1) || { echo "lazy pull failed: $lazy" >&2; exit 1; }; lazy_s=$(secs "$t0")
cold_exec=$(first_exec "$work/c"); cold_fetched=$(fetched)
warm_exec=$(first_exec "$work/c"); warm_fetched=$(fetched)
unset VESSEL_REMOTE_STORE
local_exec=$(first_exec "$work/a")
t0=$(now); pull=$("${cli[@]}" template pull t --from $bucket --home "$work/b" 2>&1) || { echo "pull failed: $pull" >&2; exit 1; }; pull_s=$(secs "$t0")
pulled_exec=$(first_exec "$work/b")

snap=$(ls -d "$work"/a/snapshots/*/ | head -1)
echo "push:  $push"
echo "lazy:  $lazy"
echo "pull:  $pull"
printf 'template: %s MiB random data + Debian minbase; memory file %s bytes (%s bytes allocated); bucket holds %s bytes\n' \
  "$mib" "$(stat -c %s "$snap/memory")" "$(du -B1 "$snap/memory" | cut -f1)" "$(du -sb "$work/s3" | cut -f1)"
printf 'push %.2f s\n' "$push_s"
printf 'cold (empty home, empty cache): lazy pull %.2f s + first exec %.2f s = %.2f s; fetched by the run: %s\n' \
  "$lazy_s" "$cold_exec" "$(echo "$lazy_s + $cold_exec" | bc)" "$cold_fetched"
printf 'warm cache (same home again): first exec %.2f s; fetched: %s\n' "$warm_exec" "$warm_fetched"
printf 'local (home that built it): first exec %.2f s\n' "$local_exec"
printf 'whole pull %.2f s + first exec %.2f s = %.2f s\n' "$pull_s" "$pulled_exec" "$(echo "$pull_s + $pulled_exec" | bc)"
printf 'chunk cache of the lazy home: %s bytes\n' "$(du -sb "$work/c/cache/chunks" | cut -f1)"
