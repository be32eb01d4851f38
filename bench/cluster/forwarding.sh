#!/usr/bin/env bash
# The cluster's forwarding overhead (docs/BENCHMARKS.md, "Cluster"): two `vessel serve --cluster`
# nodes on loopback over a private PostgreSQL (initdb in the work dir, a unix socket); template "t"
# is built only in node a's home, so placement runs every sandbox on a. RUNS creates through a (the
# owner: served where they land) alternate with RUNS creates through b (placed on a and forwarded):
# curl's time to the 201, p50/p95 of each, and the same for `exec true` (NDJSON streamed back).
#   bench/cluster/forwarding.sh [RUNS]   (root, after scripts/setup.sh; default 10)
set -euo pipefail
source "$(dirname "$0")/../lib/work.sh"
bench_work vclus
runs=${1:-10}
bench_cli
source bench/lib/cluster.sh
start_cluster_state

# A one-layer busybox-static image and template "t", built into node a's home only.
source bench/images.sh
busybox_oci "$work/oci" t sh true cat echo sleep date test
cluster_template "oci:$work/oci:t" 64M

start_cluster_nodes a b

create() { # node -> "seconds id served-by"
  curl -sS -o "$work/c.json" -D "$work/c.hdr" -w '%{time_total}' -H "X-API-Key: $key" -H 'content-type: application/json' \
    -d '{"template":"t"}' "${api[$1]}/sandboxes" > "$work/c.time"
  echo "$(cat "$work/c.time") $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sandboxId"])' "$work/c.json") \
$(grep -i '^x-vessel-node:' "$work/c.hdr" | tr -d '\r' | cut -d' ' -f2)"
}
exec_true() { # node id -> seconds
  curl -sS -o /dev/null -w '%{time_total}' -H "X-API-Key: $key" -H 'content-type: application/json' \
    -d '{"cmd":"/bin/true"}' "${api[$1]}/sandboxes/$2/commands"
}
: > "$work/a.create"; : > "$work/b.create"; : > "$work/a.exec"; : > "$work/b.exec"
for i in $(seq "$runs"); do
  for n in a b; do
    read -r secs id served < <(create "$n")
    [ "$served" = node-a ] || { echo "a create through $n was served by '$served', not node-a" >&2; exit 1; }
    echo "$secs" >> "$work/$n.create"
    exec_true "$n" "$id" >> "$work/$n.exec"; echo >> "$work/$n.exec"
    curl -sS -o /dev/null -X DELETE -H "X-API-Key: $key" "${api[a]}/sandboxes/$id"
  done
done
for what in create exec; do
  for n in a b; do
    printf '%-6s through node %s (%s): p50 %.3f s, p95 %.3f s (%d runs)\n' "$what" "$n" "$([ $n = a ] && echo owner || echo forwarded)" \
      "$(pct 50 < "$work/$n.$what")" "$(pct 95 < "$work/$n.$what")" "$runs"
  done
done
