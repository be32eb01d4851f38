#!/usr/bin/env bash
# NBD server benchmark: Vessel's server vs nbdkit (file plugin) and qemu-nbd on the same flat
# file, same clients, same run; then a 16-layer build vs a 1-layer build; then export cost.
#   bench/nbd/run.sh [SIZE_MIB] [ROUNDS]     (defaults: 1024 MiB, 3 rounds; the best round counts)
# Needs: dotnet, nbdkit, qemu-nbd, qemu-img, qemu-io, nbdcopy (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
size_mib=${1:-1024}
rounds=${2:-3}
work=$(mktemp -d /tmp/vessel-nbd-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

dotnet build src/Vessel.Cli -c Release -nologo -v q >/dev/null
# An array, not a function: "$!" must be the server's own pid so that kill reaches it.
vessel=(dotnet "$PWD/src/Vessel.Cli/bin/Release/net10.0/Vessel.Cli.dll")
export VESSEL_HOME="$work/home"

img="$work/disk.raw"
head -c "${size_mib}M" /dev/urandom > "$img"
cat "$img" > /dev/null # page cache warm for every server alike

wait_sock() { for _ in $(seq 1 300); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 1; }

# best-of-N wall time of a command, in seconds
best() {
  local best=999999 t0 t1 t
  for _ in $(seq 1 "$rounds"); do
    t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
    t=$(echo "$t1 - $t0" | bc -l)
    if (( $(echo "$t < $best" | bc -l) )); then best=$t; fi
  done
  printf '%.3f' "$best"
}

seqread() { nbdcopy "nbd+unix:///?socket=$1" null:; }
# 4 KiB reads, 16 in flight, striding 7919 blocks (a prime) so consecutive reads are far apart.
randread() { qemu-img bench -f raw -c 50000 -d 16 -s 4096 -S $((7919 * 4096)) "nbd+unix:///?socket=$1"; }

declare -A pid_of
nbdkit --foreground --unix "$work/nbdkit.sock" --readonly file "$img" & pids+=($!); pid_of[nbdkit]=$!
qemu-nbd --persistent --shared=8 --read-only --format=raw --socket="$work/qemu.sock" "$img" & pids+=($!); pid_of[qemu]=$!
"${vessel[@]}" nbd serve "$img" --read-only --socket "$work/vessel.sock" >/dev/null & pids+=($!); pid_of[vessel]=$!
# CPU seconds (user + system) the server process spends on one sequential read: unlike wall
# time, this barely moves when other work shares the machine.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
server_cpu() {
  local a b
  a=$(cpu_ticks "$1"); seqread "$2" >/dev/null 2>&1; b=$(cpu_ticks "$1")
  echo "scale=2; ($b - $a) / $(getconf CLK_TCK)" | bc -l
}
for s in nbdkit qemu vessel; do wait_sock "$work/$s.sock"; done

echo "== ${size_mib} MiB flat file, best of $rounds =="
printf '%-22s %12s %14s %16s\n' server "seq read s" "4K strided s" "server CPU s/seq"
declare -A seq rnd
for s in nbdkit qemu vessel; do
  seq[$s]=$(best seqread "$work/$s.sock")
  rnd[$s]=$(best randread "$work/$s.sock")
  printf '%-22s %12s %14s %16s\n' "$s" "${seq[$s]}" "${rnd[$s]}" "$(server_cpu "${pid_of[$s]}" "$work/$s.sock")"
done
fastest_seq=$(printf '%s\n' "${seq[nbdkit]}" "${seq[qemu]}" | sort -g | head -1)
fastest_rnd=$(printf '%s\n' "${rnd[nbdkit]}" "${rnd[qemu]}" | sort -g | head -1)
echo "seq read:  vessel / fastest peer = $(echo "${seq[vessel]} / $fastest_seq" | bc -l | xargs printf '%.2f') (below 1.00 means Vessel is faster)"
echo "4K reads:  vessel / fastest peer = $(echo "${rnd[vessel]} / $fastest_rnd" | bc -l | xargs printf '%.2f')"

# Build chains: import the image (1 layer), then 15 layers each writing 64 scattered 4 KiB blocks
# through an overlay served by the CLI, stored on SIGTERM.
base=$("${vessel[@]}" blocks import "$img" 2>/dev/null)
top=$base
for layer in $(seq 1 15); do
  sock="$work/layer.sock"
  "${vessel[@]}" nbd serve "$top" --overlay --socket "$sock" > "$work/layer.out" 2>/dev/null & p=$!
  wait_sock "$sock"
  cmds=()
  for i in $(seq 1 64); do cmds+=(-c "write -P $layer $(( (RANDOM * 32768 + RANDOM) % (size_mib * 256) * 4096 )) 4096"); done
  qemu-io -f raw "${cmds[@]}" "nbd+unix:///?socket=$sock" >/dev/null
  kill -TERM "$p"; wait "$p"
  top=$(tail -1 "$work/layer.out")
done
extents=$("${vessel[@]}" blocks info "$top" | sed -n 's/^extents: *//p')
"${vessel[@]}" nbd serve "$base" --socket "$work/b1.sock" >/dev/null & pids+=($!); p1=$!
"${vessel[@]}" nbd serve "$top" --socket "$work/b16.sock" >/dev/null & pids+=($!); p16=$!
wait_sock "$work/b1.sock"; wait_sock "$work/b16.sock"
b1=$(best seqread "$work/b1.sock"); b16=$(best seqread "$work/b16.sock")
r1=$(best randread "$work/b1.sock"); r16=$(best randread "$work/b16.sock")
echo "== builds: 1 layer vs 16 layers ($extents extents), best of $rounds =="
echo "seq read:  1 layer ${b1} s, 16 layers ${b16} s, ratio $(echo "$b16 / $b1" | bc -l | xargs printf '%.2f')"
echo "4K reads:  1 layer ${r1} s, 16 layers ${r16} s, ratio $(echo "$r16 / $r1" | bc -l | xargs printf '%.2f')"
echo "server CPU per seq read: 1 layer $(server_cpu "$p1" "$work/b1.sock") s, 16 layers $(server_cpu "$p16" "$work/b16.sock") s"

# Export cost: N MiB written through an overlay, then stored (time and bytes of the new build).
echo "== export cost (overlay over the ${size_mib} MiB build) =="
printf '%-10s %12s %14s\n' written "export s" "stored bytes"
for n in 1 16 128; do
  sock="$work/exp.sock"
  "${vessel[@]}" nbd serve "$base" --overlay --socket "$sock" > "$work/exp.out" 2>"$work/exp.err" & p=$!
  wait_sock "$sock"
  qemu-io -f raw -c "write -P 9 0 ${n}M" "nbd+unix:///?socket=$sock" >/dev/null
  t0=$(date +%s.%N); kill -TERM "$p"; wait "$p"; t1=$(date +%s.%N)
  id=$(tail -1 "$work/exp.out")
  bytes=$(stat -c %s "$work/home/blocks/builds/$id/data")
  printf '%-10s %12.3f %14s\n' "${n} MiB" "$(echo "$t1 - $t0" | bc -l)" "$bytes"
done
