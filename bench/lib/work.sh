#!/usr/bin/env bash
# The start every sandbox/API benchmark shares: source this file.
#   bench_work PREFIX  goes to the repository root, makes $work (mktemp -d /tmp/PREFIX.XXXXXX) and
#                      removes it at exit, first stopping $daemon and every process in the `pids` array
#                      (SIGTERM, then wait) that the script started; quiets dotnet
#   bench_cli          builds the CLI (Release) and sets `cli`, the array that runs it
#   now                the wall clock in seconds (date +%s.%N)
#   secs T0            seconds since T0 (a `now`)
#   pct P              the P-th percentile (50, 95) of the numbers on stdin
bench_work() {
  cd "$(dirname "${BASH_SOURCE[0]}")/../.."
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  daemon=
  pids=()
  trap bench_work_cleanup EXIT
  export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
}

bench_work_cleanup() {
  local p
  for p in ${daemon:-} "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in ${daemon:-} "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}

bench_cli() {
  dotnet build src/Vessel.Cli -c Release -nologo -v q >/dev/null
  cli=(dotnet "$PWD/src/Vessel.Cli/bin/Release/net10.0/Vessel.Cli.dll")
}

now() { date +%s.%N; }
secs() { echo "$(now) - $1" | bc; }
pct() { sort -n | awk -v p="$1" '{ a[NR] = $1 } END { i = int((NR * p + 99) / 100); if (i < 1) i = 1; print a[i] }'; }
