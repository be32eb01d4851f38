#!/usr/bin/env bash
# vessel serve: what the API adds to sandbox lifecycles, measured against the in-process paths in
# the same run (docs/BENCHMARKS.md, "Sandbox API"). TCG on this machine: read the ratios.
#   1. in-process: `vessel template run t --timings -- true`, RUNS times (agent ready, command)
#   2. 20 sequential creates through the API: curl time vs the daemon's own create time (its
#      log) and the resume's agent-ready time; p50/p95
#   3. exec of `true` through the API (curl, NDJSON to the exit line), 20 times
#   4. 20 concurrent creates: all must succeed; p50/p95; sum of the QEMU processes' PSS
#   5. pause and resume of a 256 MiB sandbox after 64 MiB of guest memory was dirtied (tmpfs)
#   bench/api/bench.sh [RUNS [CONCURRENT [built]]]   (root, after scripts/setup.sh; defaults 20 20)
#   "built": use the `dotnet build` output instead of publishing ReadyToRun (quicker to start)
set -euo pipefail
source "$(dirname "$0")/../lib/work.sh"
bench_work vapi
runs=${1:-20}
conc=${2:-20}
how=${3:-publish}
bench_cli
if [ "$how" != built ]; then
  dotnet publish src/Vessel.Cli/Vessel.Cli.csproj -c Release -r linux-x64 --self-contained false \
    -p:PublishReadyToRun=true -o "$work/cli" -nologo -v q >/dev/null
  cp -r artifacts/agent/Release "$work/cli/agent"
  cli=(dotnet "$work/cli/Vessel.Cli.dll")
fi
home="$work/home"

# A one-layer busybox-static image (as scripts/demo.sh makes it) and a template with a start command.
source bench/images.sh
busybox_oci "$work/oci" t sh true cat echo sleep date test dd mount mkdir
cat > "$work/t.json" <<EOF
{ "name": "t", "from": "oci:$work/oci:t", "diskSize": "64M", "memoryMb": 256,
  "start": "while true; do date > /tmp/heartbeat; sleep 1; done", "ready": "test -s /tmp/heartbeat" }
EOF
echo "== template build (TCG)"
"${cli[@]}" template build -f "$work/t.json" --home "$home" 2>&1 | grep -E "snapshot:|built"

echo "== 1. in process: vessel template run t --timings -- true (5 runs)"
for _ in $(seq 5); do
  "${cli[@]}" template run t --home "$home" --timings -- true 2>&1 >/dev/null \
    | sed -n 's/.*agent ready \([0-9]*\) ms;.*/\1/p; s/.*command \([0-9]*\) ms,.*/cmd \1/p'
done > "$work/inproc.txt"
ip_agent=$(grep -v cmd "$work/inproc.txt" | pct 50)
ip_cmd=$(grep cmd "$work/inproc.txt" | cut -d' ' -f2 | pct 50)

"${cli[@]}" serve --home "$home" > "$work/serve.log" 2>&1 &
daemon=$!
for _ in $(seq 300); do grep -q "serving on" "$work/serve.log" && break; sleep 0.2; done
api=(curl -sS --fail-with-body --unix-socket "$home/vessel.sock" -H 'content-type: application/json')

create() { # prints "curl_ms id"
  local out
  out=$("${api[@]}" -w ' %{time_total}' -X POST http://localhost/sandboxes -d '{"template":"t","timeoutSeconds":3600}')
  echo "$(echo "$out" | awk '{ printf "%d", $NF * 1000 }') $(echo "$out" | sed 's/.*"sandboxId":"\([^"]*\)".*/\1/')"
}

echo "== 2. $runs sequential creates through the API"
for _ in $(seq "$runs"); do create; done > "$work/seq.txt"
grep -o 'created from template .t. in [0-9]* ms, agent ready [0-9]* ms' "$work/serve.log" | awk '{ print $6, $10 }' > "$work/daemon.txt"
api50=$(cut -d' ' -f1 "$work/seq.txt" | pct 50); api95=$(cut -d' ' -f1 "$work/seq.txt" | pct 95)
d50=$(cut -d' ' -f1 "$work/daemon.txt" | pct 50); d95=$(cut -d' ' -f1 "$work/daemon.txt" | pct 95)
a50=$(cut -d' ' -f2 "$work/daemon.txt" | pct 50); a95=$(cut -d' ' -f2 "$work/daemon.txt" | pct 95)
paste -d' ' <(cut -d' ' -f1 "$work/seq.txt") <(cut -d' ' -f1 "$work/daemon.txt") | awk '{ print $1 - $2 }' > "$work/overhead.txt"
o50=$(pct 50 < "$work/overhead.txt"); o95=$(pct 95 < "$work/overhead.txt")
first=$(head -1 "$work/seq.txt" | cut -d' ' -f2)

echo "== 3. exec of true through the API ($runs times, one sandbox)"
for _ in $(seq "$runs"); do
  "${api[@]}" -o /dev/null -w '%{time_total}\n' -X POST "http://localhost/sandboxes/$first/commands" -d '{"cmd":"true"}'
done | awk '{ printf "%d\n", $1 * 1000 }' > "$work/exec.txt"
e50=$(pct 50 < "$work/exec.txt"); e95=$(pct 95 < "$work/exec.txt")

echo "== 5. pause/resume with 64 MiB of dirty guest memory"
"${api[@]}" -o /dev/null -X POST "http://localhost/sandboxes/$first/commands" \
  -d '{"cmd":"/bin/sh","args":["-c","mount -t tmpfs tmpfs /mnt && dd if=/dev/urandom of=/mnt/x bs=1M count=64 2>/dev/null"]}'
pause_ms=$("${api[@]}" -o /dev/null -w '%{time_total}' -X POST "http://localhost/sandboxes/$first/pause" | awk '{ printf "%d", $1 * 1000 }')
state_mb=$(du -m "$home"/snapshots/"$first"-*/state | cut -f1)
resume_ms=$("${api[@]}" -o /dev/null -w '%{time_total}' -X POST "http://localhost/sandboxes/$first/resume" | awk '{ printf "%d", $1 * 1000 }')

for id in $(cut -d' ' -f2 "$work/seq.txt"); do "${api[@]}" -X DELETE "http://localhost/sandboxes/$id"; done

echo "== 4. $conc concurrent creates"
pids=()
for i in $(seq "$conc"); do create > "$work/conc.$i" & pids+=($!); done
wait "${pids[@]}" || true
cat "$work"/conc.* > "$work/conc.txt"
ok=$(grep -c sbx- "$work/conc.txt" || true)
c50=$(cut -d' ' -f1 "$work/conc.txt" | pct 50); c95=$(cut -d' ' -f1 "$work/conc.txt" | pct 95)
pss=0
for pid in $(pgrep -f "qemu-system.*$home/"); do
  pss=$((pss + $(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup")))
done
for id in $(cut -d' ' -f2 "$work/conc.txt"); do "${api[@]}" -X DELETE "http://localhost/sandboxes/$id"; done

echo
printf 'in-process resume (template run): agent ready p50 %s ms, exec true %s ms\n' "$ip_agent" "$ip_cmd"
printf 'API create x%s sequential: p50 %s ms, p95 %s ms\n' "$runs" "$api50" "$api95"
printf '  daemon in-process create: p50 %s ms, p95 %s ms (agent ready p50 %s ms, p95 %s ms)\n' "$d50" "$d95" "$a50" "$a95"
printf '  API overhead (curl - daemon create): p50 %s ms, p95 %s ms\n' "$o50" "$o95"
printf 'API exec true x%s: p50 %s ms, p95 %s ms (in-process exec: %s ms)\n' "$runs" "$e50" "$e95" "$ip_cmd"
printf '%s concurrent creates: %s succeeded, p50 %s ms, p95 %s ms; QEMU PSS sum %s MiB vs %s x 256 MiB = %s MiB\n' "$conc" "$ok" "$c50" "$c95" "$((pss / 1024))" "$conc" "$((conc * 256))"
printf 'pause (64 MiB dirty of 256 MiB): %s ms, state file %s MiB; resume: %s ms\n' "$pause_ms" "$state_mb" "$resume_ms"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
