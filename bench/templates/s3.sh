#!/usr/bin/env bash
# A template moved to another home through a bucket (s3rver on loopback), in the same run:
#   - push: time, layer bytes, snapshot size and bytes sent (all-zero chunks are not stored);
#   - pull into an empty home: time, layer bytes, snapshot bytes fetched against its size;
#   - first exec (`template run --timings -- true`, resumed from the snapshot) in the home that
#     built it against the home that pulled it; and pull + first exec, the whole cost of
#     starting a template on a node that did not have it;
#   - a lazy pull (snapshot only, VESSEL_REMOTE_STORE behind the home) and its first exec, with the
#     layer bytes the sandbox fetched (its chunk cache) against the template's layer bytes.
# Usage: bash bench/templates/s3.sh [MiB of data the template writes, default 64] (root, after scripts/setup.sh)
set -euo pipefail
source "$(dirname "$0")/../lib/s3rver.sh"
bench_s3_work vessel-tpls3
mib=${1:-64}
source bench/images.sh

busybox_tarball "$work/busybox.tar.gz"
cat > "$work/t.json" <<JSON
{ "name": "t", "from": "tarball:$work/busybox.tar.gz", "diskSize": "$((mib * 2 + 64))M", "memoryMb": 256,
  "steps": [ { "run": "dd if=/dev/urandom of=/data.bin bs=1M count=$mib 2>/dev/null; sync" } ],
  "start": "while true; do date > /tmp/heartbeat; sleep 1; done", "ready": "test -s /tmp/heartbeat" }
JSON
"${cli[@]}" template build -f "$work/t.json" --home "$work/a" 2>&1 | grep -E "^built"
t0=$(now); push=$("${cli[@]}" template push t --to s3://vessel/bench --home "$work/a" 2>&1); push_s=$(secs "$t0")
first_exec() { # home -> wall seconds of `template run t -- true`
  local t; t=$(now); "${cli[@]}" template run t --home "$1" --timings -- true >/dev/null 2>"$work/run.log"
  grep -q "restored from snapshot" "$work/run.log" || { echo "not restored: $(cat "$work/run.log")" >&2; exit 1; }
  secs "$t"
}
local_exec=$(first_exec "$work/a")
t0=$(now); pull=$("${cli[@]}" template pull t --from s3://vessel/bench --home "$work/b" 2>&1); pull_s=$(secs "$t0")
remote_exec=$(first_exec "$work/b")
local_exec2=$(first_exec "$work/a")
t0=$(now); lazy=$(VESSEL_REMOTE_STORE=s3://vessel/bench "${cli[@]}" template pull t --from s3://vessel/bench --lazy --home "$work/c" 2>&1); lazy_s=$(secs "$t0")
lazy_exec=$(VESSEL_REMOTE_STORE=s3://vessel/bench first_exec "$work/c")
lazy_bytes=$(du -sb "$work/c/cache/chunks" | cut -f1)
echo "push:  $push"
echo "pull:  $pull"
printf 'push %.2f s; pull into an empty home %.2f s\n' "$push_s" "$pull_s"
printf 'first exec (resume + true): built home %.2f / %.2f s, pulled home %.2f s; pull + first exec %.2f s\n' \
  "$local_exec" "$local_exec2" "$remote_exec" "$(echo "$pull_s + $remote_exec" | bc)"
echo "lazy:  $lazy"
printf 'lazy pull %.2f s, first exec %.2f s (pull + exec %.2f s); layer chunks fetched for it: %s bytes\n' \
  "$lazy_s" "$lazy_exec" "$(echo "$lazy_s + $lazy_exec" | bc)" "$lazy_bytes"
printf 'bucket holds %s bytes (s3rver files)\n' "$(du -sb "$work/s3" | cut -f1)"
