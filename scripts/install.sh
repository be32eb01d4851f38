#!/usr/bin/env bash
# Installs Vessel on this machine: Debian packages (scripts/setup.sh), then the `vessel`
# CLI published ReadyToRun (fast start) to artifacts/vessel, with /usr/local/bin/vessel
# pointing at it. Safe to run twice.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

if [ "$(id -u)" = 0 ]; then
  bash scripts/setup.sh
fi

echo "install: publishing the vessel CLI"
dotnet publish src/Vessel.Cli/Vessel.Cli.csproj -c Release -r linux-x64 --self-contained false \
  -p:PublishReadyToRun=true -o "$root/artifacts/vessel" -v q -nologo >/dev/null
# The guest agent (published by the build, self-contained) goes beside the CLI, where the
# guest kit builder finds it.
rm -rf "$root/artifacts/vessel/agent"
cp -r "$root/artifacts/agent/Release" "$root/artifacts/vessel/agent"

bin=/usr/local/bin
[ -w "$bin" ] || bin="$HOME/.local/bin"
mkdir -p "$bin"
cat > "$bin/vessel" <<SH
#!/bin/sh
exec "$root/artifacts/vessel/Vessel.Cli" "\$@"
SH
chmod +x "$bin/vessel"
echo "install: vessel -> $bin/vessel"
