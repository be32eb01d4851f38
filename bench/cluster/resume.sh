#!/usr/bin/env bash
# Cross-node resume (docs/BENCHMARKS.md, "Cluster: resume on another node"): two `vessel serve
# --cluster` nodes on loopback over a private PostgreSQL and a bucket (s3rver, VESSEL_REMOTE_STORE on
# both). Template "t" (busybox, memoryMb 256) is built only in node a's home. Each run creates a
# sandbox on a, has it write MIB MiB of random data to its disk (so RAM and disk hold something),
# then, in the same run:
#   - same node: pause through a, resume through a ({"node":"node-a"}), time to the first exec;
#   - other node: pause through a, resume through b ({"node":"node-b"}), time to the first exec,
#     and what b fetched before that exec: the snapshot files (b's log) against their size, and the
#     disk chunks (b's chunk cache, emptied before each run) against the layers' data.
#   bench/cluster/resume.sh [RUNS] [MIB]   (root, after scripts/setup.sh; defaults 3 and 32)
set -euo pipefail
source "$(dirname "$0")/../lib/work.sh"
bench_work vresume
runs=${1:-3}
mib=${2:-32}
bench_cli

# PostgreSQL (bench/lib/cluster.sh) and the bucket.
source bench/lib/cluster.sh
start_cluster_state
source bench/lib/s3rver.sh
start_s3rver "$work"
export VESSEL_REMOTE_STORE=s3://vessel/bench

source bench/images.sh
busybox_tarball "$work/busybox.tar.gz"
cluster_template "tarball:$work/busybox.tar.gz" "$((mib * 2 + 64))M"

start_cluster_nodes a b
sleep 5 # both silos active and both heartbeats written

call() { # node method path [body] -> body on stdout; fails on an error status
  curl -sS --fail-with-body -X "$2" -H "X-API-Key: $key" -H 'content-type: application/json' ${4:+-d "$4"} "${api[$1]}$3"
}
run() { # node id script -> stdout of the command
  call "$1" POST "/sandboxes/$2/commands" "$(python3 -c 'import json,sys; print(json.dumps({"cmd":"/bin/sh","args":["-c",sys.argv[1]]}))' "$3")" \
    | python3 -c 'import json,sys,base64; print("".join(base64.b64decode(e["data"]).decode() for e in map(json.loads, sys.stdin) if e["type"]=="stdout"), end="")'
}
resume_exec() { # via-node to-node id -> seconds from the resume request to the first exec's end
  local t; t=$(now)
  call "$1" POST "/sandboxes/$3/resume" "{\"node\":\"node-$2\"}" >/dev/null
  [ "$(run "$1" "$3" "echo ok")" = ok ] || { echo "first exec after resume on $2 failed" >&2; exit 1; }
  secs "$t"
}
printf '%-4s %-12s %-12s %-22s %-26s %s\n' run same-node-s other-node-s "snapshot files fetched" "disk chunks fetched" "pause upload (log)"
for i in $(seq "$runs"); do
  id=$(call a POST /sandboxes '{"template":"t"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["sandboxId"])')
  run a "$id" "head -c $((mib << 20)) /dev/urandom > /root/data; sync; md5sum /root/data | cut -c1-32 > /root/sum" >/dev/null
  call a POST "/sandboxes/$id/pause" >/dev/null
  same=$(resume_exec a a "$id")
  call a POST "/sandboxes/$id/pause" >/dev/null
  upload=$(grep "Sandbox $id: pause 2 uploaded" "$work/a.log" | grep -o 'in [0-9]* ms ([^)]*)' | tail -1)
  rm -rf "$work/b/cache/chunks"/* 2>/dev/null || true
  other=$(resume_exec b b "$id")
  files=$(grep "Sandbox $id: took over" "$work/b.log" | tail -1 | grep -o '([0-9]* of [0-9]* bytes)' | tr -d '()')
  chunks=$(du -sb "$work/b/cache/chunks" 2>/dev/null | cut -f1)
  layers=$(du -sb --apparent-size "$work/a/blocks/builds" | cut -f1)
  [ "$(run b "$id" 'md5sum /root/data | cut -c1-32')" = "$(run b "$id" 'cat /root/sum')" ] || { echo "data differs after the cross-node resume" >&2; exit 1; }
  printf '%-4s %-12.2f %-12.2f %-22s %-26s %s\n' "$i" "$same" "$other" "$files" "$chunks of $layers bytes" "$upload"
  call b DELETE "/sandboxes/$id" >/dev/null
done
