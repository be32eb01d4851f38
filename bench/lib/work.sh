#!/usr/bin/env bash
# The start every sandbox/API benchmark shares: source this file.
#   bench_work PREFIX  goes to the repository root, makes $work (mktemp -d /tmp/PREFIX.XXXXXX) and
#                      removes it at exit, first stopping $daemon (SIGTERM, then wait) when the script
#                      started one; quiets dotnet
bench_work() {
  cd "$(dirname "${BASH_SOURCE[0]}")/../.."
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  daemon=
  trap bench_work_cleanup EXIT
  export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
}

bench_work_cleanup() {
  if [ -n "${daemon:-}" ]; then kill -TERM "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  rm -rf "$work"
}
