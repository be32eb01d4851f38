#!/usr/bin/env bash
# Runs Vessel's whole test suite (unit + integration) and ends with one plain line:
#   N passed, N failed, N skipped
# Installs what the tests need first (scripts/setup.sh is idempotent).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "$(id -u)" = 0 ]; then
  bash scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }
fi

results="$root/artifacts/test-results"
rm -rf "$results"
mkdir -p "$results"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build Vessel.slnx -c Release -nologo -v q || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

# Test projects run in parallel; each writes a trx file that we count from.
dotnet test Vessel.slnx -c Release --no-build --logger "trx" --logger "console;verbosity=normal" \
  --results-directory "$results" -- RunConfiguration.TestSessionTimeout=3000000 2>&1 | tee "$results/console.log" \
  | grep -E '^\s+(Failed|Skipped) |^\s*(Error Message|Stack Trace)|Total tests|Passed!|Failed!' || true

passed=0; failed=0; skipped=0; files=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  files=$((files + 1))
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  p=$(echo "$counters" | sed -n 's/.* passed="\([0-9]*\)".*/\1/p')
  f=$(echo "$counters" | sed -n 's/.* failed="\([0-9]*\)".*/\1/p')
  e=$(echo "$counters" | sed -n 's/.* error="\([0-9]*\)".*/\1/p')
  t=$(echo "$counters" | sed -n 's/.* total="\([0-9]*\)".*/\1/p')
  x=$(echo "$counters" | sed -n 's/.* executed="\([0-9]*\)".*/\1/p')
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0} + ${e:-0}))
  skipped=$((skipped + ${t:-0} - ${x:-0}))
done
# Three test projects (unit, integration, client): a missing trx means a test host crashed.
if [ "$files" -lt 3 ]; then
  echo "expected 3 test result files, found $files (a test host crashed?)"
  failed=$((failed + 3 - files))
fi
echo "$passed passed, $failed failed, $skipped skipped"
# With CI=true a test whose requirement is missing fails instead of skipping (tests/Shared/Requires.cs);
# any other skip left there still means something did not run.
if [ "${CI:-}" = true ] && [ "$skipped" -gt 0 ]; then
  echo "CI=true: $skipped tests skipped; nothing may skip in CI"
  exit 1
fi
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
