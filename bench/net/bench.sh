#!/usr/bin/env bash
# slirp (QEMU's libslirp, Vessel's default) against passt, in one run: guest -> host TCP
# throughput (256 MiB) and 1-byte echo round trip p50 through the gateway 10.0.2.2 (both stacks
# map it to the host's loopback, each connect decided by the connect filter), then cold boot and
# snapshot restore to agent ready, alternating backends. Figures: docs/BENCHMARKS.md, "slirp or passt".
# Needs scripts/setup.sh (qemu, passt, clang) and a Release build of tests/Vessel.IntegrationTests.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec flock /tmp/vessel-bench.lock dotnet test tests/Vessel.IntegrationTests -c Release --no-build \
  --filter "FullyQualifiedName~Network.NetworkTests.Slirp_and_passt|FullyQualifiedName~Network.NetworkTests.Cold_boot_and_restore_are_measured_on_slirp_and_on_passt" \
  --logger "console;verbosity=detailed"
