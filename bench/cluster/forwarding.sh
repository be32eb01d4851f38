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
pg=/usr/lib/postgresql/15/bin
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# PostgreSQL as nobody (it refuses root), on a unix socket only.
chmod 755 "$work" # nobody (the server) must reach its directory
mkdir -p "$work/pg/sock" && chown -R nobody:nogroup "$work/pg"
as_pg=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
"${as_pg[@]}" "$pg/initdb" -D "$work/pg/data" -U vessel --auth=trust -E UTF8 --no-sync --no-instructions >/dev/null
pgport=$(free_port)
"${as_pg[@]}" "$pg/postgres" -D "$work/pg/data" -k "$work/pg/sock" -p "$pgport" -c listen_addresses= -c fsync=off 2>"$work/pg/log" &
pids+=($!)
until grep -q "ready to accept connections" "$work/pg/log"; do sleep 0.2; done
"$pg/psql" -h "$work/pg/sock" -p "$pgport" -U vessel -d postgres -qc "CREATE DATABASE vessel" >/dev/null
export VESSEL_STATE="postgres://vessel@/vessel?host=$work/pg/sock&port=$pgport"

# A one-layer busybox-static image and template "t", built into node a's home only.
source bench/images.sh
busybox_oci "$work/oci" t sh true cat echo sleep date test
cat > "$work/t.json" <<JSON
{ "name": "t", "from": "oci:$work/oci:t", "diskSize": "64M", "memoryMb": 256,
  "start": "while true; do date > /tmp/heartbeat; sleep 1; done", "ready": "test -s /tmp/heartbeat" }
JSON
"${cli[@]}" template build -f "$work/t.json" --home "$work/a" 2>&1 | grep -E "^built"
key=$("${cli[@]}" keys create --name bench --home "$work/a" 2>/dev/null)

declare -A api
for n in a b; do
  port=$(free_port)
  api[$n]="http://127.0.0.1:$port"
  : > "$work/$n.log"
  VESSEL_NODE=node-$n VESSEL_SILO_PORT=$(free_port) VESSEL_GATEWAY_PORT=$(free_port) \
    "${cli[@]}" serve --home "$work/$n" --listen "127.0.0.1:$port" --cluster >"$work/$n.log" 2>&1 &
  pids+=($!)
  t0=$(date +%s.%N)
  until grep -q "vessel: serving on" "$work/$n.log"; do
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/$n.log"; exit 1; }; sleep 0.2
  done
  printf 'node %s joined the cluster and serves after %.1f s\n' "$n" "$(echo "$(date +%s.%N) - $t0" | bc)"
done

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
pct() { sort -n | awk -v p="$1" '{ a[NR] = $1 } END { i = int((NR * p + 99) / 100); if (i < 1) i = 1; print a[i] }'; }
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
