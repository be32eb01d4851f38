#!/usr/bin/env bash
# The start the cluster benchmarks share (after bench/lib/work.sh's bench_work and bench_cli): source this file.
#   free_port             prints a free loopback TCP port
#   start_cluster_state   a private PostgreSQL 15 as nobody (it refuses root) in $work/pg, on a unix
#                         socket only, with a database `vessel`; appends its pid to `pids` and exports
#                         VESSEL_STATE
#   cluster_template FROM DISK  template "t" (FROM, DISK of disk, 256 MiB of memory, a heartbeat start
#                         command and ready check) built into node a's home only ($work/a); sets `key`,
#                         an API key of that home
#   start_cluster_nodes N...  one `vessel serve --cluster` per name on loopback (home $work/N, log
#                         $work/N.log, VESSEL_NODE=node-N); fills the associative array `api` (name ->
#                         base URL), appends each pid to `pids`, prints when each serves; a node that
#                         exits first prints its log and fails the script
pg=/usr/lib/postgresql/15/bin
declare -A api

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_cluster_state() {
  chmod 755 "$work" # nobody (the server) must reach its directory
  mkdir -p "$work/pg/sock" && chown -R nobody:nogroup "$work/pg"
  local as_pg=(setpriv --reuid=nobody --regid=nogroup --clear-groups) pgport
  "${as_pg[@]}" "$pg/initdb" -D "$work/pg/data" -U vessel --auth=trust -E UTF8 --no-sync --no-instructions >/dev/null
  pgport=$(free_port)
  "${as_pg[@]}" "$pg/postgres" -D "$work/pg/data" -k "$work/pg/sock" -p "$pgport" -c listen_addresses= -c fsync=off 2>"$work/pg/log" &
  pids+=($!)
  until grep -q "ready to accept connections" "$work/pg/log"; do sleep 0.2; done
  "$pg/psql" -h "$work/pg/sock" -p "$pgport" -U vessel -d postgres -qc "CREATE DATABASE vessel" >/dev/null
  export VESSEL_STATE="postgres://vessel@/vessel?host=$work/pg/sock&port=$pgport"
}

cluster_template() {
  cat > "$work/t.json" <<JSON
{ "name": "t", "from": "$1", "diskSize": "$2", "memoryMb": 256,
  "start": "while true; do date > /tmp/heartbeat; sleep 1; done", "ready": "test -s /tmp/heartbeat" }
JSON
  "${cli[@]}" template build -f "$work/t.json" --home "$work/a" 2>&1 | grep -E "^built"
  key=$("${cli[@]}" keys create --name bench --home "$work/a" 2>/dev/null)
}

start_cluster_nodes() {
  local n port t0
  for n in "$@"; do
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
}
