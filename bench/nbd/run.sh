#!/usr/bin/env bash
# NBD server benchmark: Vessel's server vs nbdkit (file plugin) and qemu-nbd on the same flat
# file, same clients, same run; then a 16-layer build vs a 1-layer build; then export cost.
#   bench/nbd/run.sh [SIZE_MIB] [ROUNDS]     (defaults: 1024 MiB, 3 rounds)
# Rounds are interleaved (every server once per round, the order turned around each round) so
# that load from elsewhere on a shared machine falls on all servers alike; each figure is shown
# as best and median of its rounds, and the ratios are taken of both.
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

echo "bench/nbd/run.sh $size_mib $rounds on $(date -u "+%Y-%m-%d %H:%M UTC"), $(nproc) cores"
dotnet build src/Vessel.Cli -c Release -nologo -v q >/dev/null
# An array, not a function: "$!" must be the server's own pid so that kill reaches it.
vessel=(dotnet "$PWD/src/Vessel.Cli/bin/Release/net10.0/Vessel.Cli.dll")
export VESSEL_HOME="$work/home"

img="$work/disk.raw"
head -c "${size_mib}M" /dev/urandom > "$img"
cat "$img" > /dev/null # page cache warm for every server alike

wait_sock() { for _ in $(seq 1 300); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 1; }

# Wall time of one run of a command, in seconds.
timed() {
  local t0 t1
  t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
# "best median" of the numbers in a file, one a line.
stats() { sort -g "$1" | awk '{a[NR] = $1} END {m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.3f %.3f", a[1], m}'; }
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
# CPU seconds (user + system) a server process has used so far: unlike wall time, this
# barely moves when other work shares the machine.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# One timed run of a client against a server: the time goes to $work/NAME.time and the
# server's CPU ticks to $work/NAME.ticks.
measure() {
  local name=$1 pid=$2 a b; shift 2
  a=$(cpu_ticks "$pid"); timed "$@" >> "$work/$name.time"; b=$(cpu_ticks "$pid")
  echo "$b - $a" | bc >> "$work/$name.ticks"
}
# Server CPU seconds per run, averaged over the rounds.
cpu_per_run() { awk -v hz="$(getconf CLK_TCK)" '{s += $1} END {printf "%.3f", s / NR / hz}' "$work/$1.ticks"; }
# Servers in the order of round $1: forwards, then backwards, and so on.
in_order() { local r=$1; shift; if (( r % 2 )); then printf '%s\n' "$@"; else printf '%s\n' "$@" | tac; fi; }

seqread() { nbdcopy "nbd+unix:///?socket=$1" null:; }
# 4 KiB reads, 16 in flight, striding 7919 blocks (a prime) so consecutive reads are far apart.
randread() { qemu-img bench -f raw -c 50000 -d 16 -s 4096 -S $((7919 * 4096)) "nbd+unix:///?socket=$1"; }

declare -A pid_of
nbdkit --foreground --unix "$work/nbdkit.sock" --readonly file "$img" & pids+=($!); pid_of[nbdkit]=$!
qemu-nbd --persistent --shared=8 --read-only --format=raw --socket="$work/qemu.sock" "$img" & pids+=($!); pid_of[qemu]=$!
"${vessel[@]}" nbd serve "$img" --read-only --socket "$work/vessel.sock" >/dev/null & pids+=($!); pid_of[vessel]=$!
for s in nbdkit qemu vessel; do wait_sock "$work/$s.sock"; done
for s in nbdkit qemu vessel; do seqread "$work/$s.sock" >/dev/null 2>&1; randread "$work/$s.sock" >/dev/null 2>&1; done # warm-up, not counted

echo "== ${size_mib} MiB flat file, $rounds interleaved rounds (load: $(cut -d' ' -f1-3 /proc/loadavg)) =="
for r in $(seq 1 "$rounds"); do
  for s in $(in_order "$r" nbdkit qemu vessel); do measure "seq.$s" "${pid_of[$s]}" seqread "$work/$s.sock"; done
  for s in $(in_order "$r" nbdkit qemu vessel); do measure "rnd.$s" "${pid_of[$s]}" randread "$work/$s.sock"; done
done
printf '%-8s %22s %22s %14s %14s\n' server "seq read s best/median" "4K reads s best/median" "CPU s per seq" "CPU s per 4K"
declare -A seq_best seq_med rnd_best rnd_med
for s in nbdkit qemu vessel; do
  read -r seq_best[$s] seq_med[$s] <<< "$(stats "$work/seq.$s.time")"
  read -r rnd_best[$s] rnd_med[$s] <<< "$(stats "$work/rnd.$s.time")"
  printf '%-8s %22s %22s %14s %14s\n' "$s" "${seq_best[$s]} / ${seq_med[$s]}" "${rnd_best[$s]} / ${rnd_med[$s]}" "$(cpu_per_run "seq.$s")" "$(cpu_per_run "rnd.$s")"
done
peer_min() { printf '%s\n' "$@" | sort -g | head -1; }
echo "seq read:  vessel / fastest peer = $(ratio "${seq_best[vessel]}" "$(peer_min "${seq_best[nbdkit]}" "${seq_best[qemu]}")") best, $(ratio "${seq_med[vessel]}" "$(peer_min "${seq_med[nbdkit]}" "${seq_med[qemu]}")") median (below 1.00 means Vessel is faster)"
echo "4K reads:  vessel / fastest peer = $(ratio "${rnd_best[vessel]}" "$(peer_min "${rnd_best[nbdkit]}" "${rnd_best[qemu]}")") best, $(ratio "${rnd_med[vessel]}" "$(peer_min "${rnd_med[nbdkit]}" "${rnd_med[qemu]}")") median"
echo "(load: $(cut -d' ' -f1-3 /proc/loadavg); ${SECONDS} s so far)"

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
"${vessel[@]}" nbd serve "$base" --socket "$work/b1.sock" >/dev/null & pids+=($!); pid_of[b1]=$!
"${vessel[@]}" nbd serve "$top" --socket "$work/b16.sock" >/dev/null & pids+=($!); pid_of[b16]=$!
wait_sock "$work/b1.sock"; wait_sock "$work/b16.sock"
for b in b1 b16; do seqread "$work/$b.sock" >/dev/null 2>&1; randread "$work/$b.sock" >/dev/null 2>&1; done # warm-up
# Three times the rounds for the sequential read, whose sub-second times move most with load.
for r in $(seq 1 $((3 * rounds))); do
  for b in $(in_order "$r" b1 b16); do measure "seq.$b" "${pid_of[$b]}" seqread "$work/$b.sock"; done
done
for r in $(seq 1 "$rounds"); do
  for b in $(in_order "$r" b1 b16); do measure "rnd.$b" "${pid_of[$b]}" randread "$work/$b.sock"; done
done
read -r b1_best b1_med <<< "$(stats "$work/seq.b1.time")"; read -r b16_best b16_med <<< "$(stats "$work/seq.b16.time")"
read -r r1_best r1_med <<< "$(stats "$work/rnd.b1.time")"; read -r r16_best r16_med <<< "$(stats "$work/rnd.b16.time")"
echo "== builds: 1 layer vs 16 layers ($extents extents), $((3 * rounds)) / $rounds interleaved rounds (load: $(cut -d' ' -f1-3 /proc/loadavg)) =="
echo "seq read:  1 layer ${b1_best} / ${b1_med} s, 16 layers ${b16_best} / ${b16_med} s (best / median), ratio $(ratio "$b16_best" "$b1_best") best, $(ratio "$b16_med" "$b1_med") median"
echo "4K reads:  1 layer ${r1_best} / ${r1_med} s, 16 layers ${r16_best} / ${r16_med} s (best / median), ratio $(ratio "$r16_best" "$r1_best") best, $(ratio "$r16_med" "$r1_med") median"
echo "server CPU per seq read: 1 layer $(cpu_per_run seq.b1) s, 16 layers $(cpu_per_run seq.b16) s; per 50k 4K reads: $(cpu_per_run rnd.b1) s, $(cpu_per_run rnd.b16) s"

# Export cost: N MiB written through an overlay, then stored (time and bytes of the new build).
echo "== export cost (overlay over the ${size_mib} MiB build; ${SECONDS} s so far) =="
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
echo "(load: $(cut -d' ' -f1-3 /proc/loadavg); ${SECONDS} s in all)"
