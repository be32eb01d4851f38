#!/usr/bin/env bash
# An S3-compatible server for benchmarks (npm s3rver, as the tests use): source this file.
#   start_s3rver DIR   serves a bucket `vessel` from DIR/s3 on a loopback port, appends its pid to
#                      the caller's `pids` array, exports VESSEL_S3_ENDPOINT/ACCESS_KEY/SECRET_KEY
#                      and sets `s3_port`
#   bench_s3_work PREFIX  the start the bucket benchmarks share: bench_work PREFIX (bench/lib/work.sh),
#                      bench_cli, then start_s3rver "$work"
source "$(dirname "${BASH_SOURCE[0]}")/work.sh"

bench_s3_work() {
  bench_work "$1"
  bench_cli
  start_s3rver "$work"
}

start_s3rver() {
  local dir=$1 tools=${XDG_CACHE_HOME:-$HOME/.cache}/vessel/test-tools/s3rver-3.7.1
  [ -x "$tools/node_modules/.bin/s3rver" ] || npm install --no-audit --no-fund --prefix "$tools" s3rver@3.7.1 >/dev/null
  mkdir -p "$dir/s3"
  "$tools/node_modules/.bin/s3rver" -d "$dir/s3" -a 127.0.0.1 -p 0 --configure-bucket vessel -s >"$dir/s3.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$dir/s3.log" && break; sleep 0.1; done
  s3_port=$(grep -o '127.0.0.1:[0-9]*' "$dir/s3.log" | head -1 | cut -d: -f2)
  export VESSEL_S3_ENDPOINT=http://127.0.0.1:$s3_port VESSEL_S3_ACCESS_KEY=S3RVER VESSEL_S3_SECRET_KEY=S3RVER
}
