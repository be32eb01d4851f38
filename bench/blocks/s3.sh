#!/usr/bin/env bash
# The layer store in an S3-compatible bucket (s3rver on loopback) served over NBD, against the
# same build in a local store, in the same run:
#   - first 4 KiB read through NBD with an empty chunk cache: time and bytes fetched, against
#     the build's data size (what a node starting a template pays before its first read);
#   - a whole sequential read (nbdcopy to /dev/null) cold (fetching) and warm (cached);
#   - the physical limit: the same chunks fetched straight from the server with curl.
# Usage: bash bench/blocks/s3.sh [MiB of data, default 256]
set -euo pipefail
source "$(dirname "$0")/../lib/s3rver.sh"
bench_s3_work vessel-s3bench
mib=${1:-256}
port=$s3_port
export VESSEL_HOME=$work/home

# An image with data in 3 of every 4 MiB (incompressible), zeros elsewhere.
img=$work/img.raw
truncate -s "$((mib * 4 / 3 + 4))M" "$img"
for ((i = 0; i < mib * 4 / 3; i += 4)); do
  dd if=/dev/urandom of="$img" bs=1M count=3 seek="$i" conv=notrunc status=none
done
id=$("${cli[@]}" blocks import "$img" --store "$work/local" 2>/dev/null)
"${cli[@]}" blocks copy "$id" --from "$work/local" --to s3://vessel/bench 2>/dev/null >/dev/null
data=$("${cli[@]}" blocks info "$id" --store "$work/local" 2>/dev/null | awk -F': *' '/data length|data:/ {split($2, a, " "); print a[1]; exit}')

serve() { # store socket
  "${cli[@]}" nbd serve "$id" --store "$1" --socket "$2" >"$2.log" 2>&1 & pids+=($!)
  for _ in $(seq 300); do [ -S "$2" ] && break; sleep 0.05; done
}
cache_bytes() { du -sb "$work/home/cache/chunks" 2>/dev/null | cut -f1 || echo 0; }
first_read() { # socket -> seconds for one 4 KiB read at the start of the data
  local t0; t0=$(now)
  qemu-io -f raw -r -c 'read 4096 4096' "nbd+unix:///?socket=$1" >/dev/null
  echo "$(now) - $t0" | bc
}
full_read() { local t0; t0=$(now); nbdcopy "nbd+unix:///?socket=$1" null: ; echo "$(now) - $t0" | bc; }

serve "$work/local" "$work/local.sock"
l_first=$(first_read "$work/local.sock"); l_full=$(full_read "$work/local.sock")
serve s3://vessel/bench "$work/s3.sock"
s_first=$(first_read "$work/s3.sock"); s_first_bytes=$(cache_bytes)
s_cold=$(full_read "$work/s3.sock"); s_cold_bytes=$(cache_bytes)
s_warm=$(full_read "$work/s3.sock")
# The physical limit here: every chunk object fetched one after another with curl (s3rver
# serves unsigned GETs), no hashing, no cache writes.
t0=$(now)
for f in $(cd "$work/s3/vessel" && find bench/builds -path '*/data/*' -name '*._S3rver_object' | sed 's/\._S3rver_object$//'); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/vessel/$f" || { echo "curl of $f failed (unsigned GET refused)"; break; }
done
curl_all=$(echo "$(now) - $t0" | bc)
printf 'build data: %s bytes in %s-byte chunks\n' "$data" "$((4 << 20))"
printf 'first 4 KiB read: local %.3f s, bucket cold %.3f s fetching %s bytes\n' "$l_first" "$s_first" "$s_first_bytes"
printf 'whole read: local %.2f s, bucket cold %.2f s (%s bytes fetched), bucket warm %.2f s; curl of every chunk %.2f s\n' \
  "$l_full" "$s_cold" "$s_cold_bytes" "$s_warm" "$curl_all"
