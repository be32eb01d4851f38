#!/usr/bin/env bash
# Installs Vessel on this machine: Debian packages (scripts/setup.sh), then the `vessel`
# CLI published ReadyToRun (fast start) to artifacts/vessel, with /usr/local/bin/vessel
# pointing at it, and (as root, with systemd) a vessel.service unit for the daemon, installed
# but neither enabled nor started unless asked:
#   bash scripts/install.sh                    # install; the unit is there, stopped
#   bash scripts/install.sh --enable-service   # also enable it at boot and start it now
# Safe to run twice.
set -euo pipefail
enable_service=0
for arg in "$@"; do
  case "$arg" in
    --enable-service) enable_service=1 ;;
    *) echo "install: unknown option $arg (use --enable-service)" >&2; exit 2 ;;
  esac
done
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

# containerd's runtime v2 shim (docs/shim.md), published into the same directory: it shares the
# CLI's libraries and finds the agent beside it.
echo "install: publishing containerd-shim-vessel-v1"
dotnet publish src/Vessel.Shim/Vessel.Shim.csproj -c Release -r linux-x64 --self-contained false \
  -p:PublishReadyToRun=true -o "$root/artifacts/vessel" -v q -nologo >/dev/null

bin=/usr/local/bin
[ -w "$bin" ] || bin="$HOME/.local/bin"
mkdir -p "$bin"
cat > "$bin/vessel" <<SH
#!/bin/sh
exec "$root/artifacts/vessel/Vessel.Cli" "\$@"
SH
chmod +x "$bin/vessel"
echo "install: vessel -> $bin/vessel"
# containerd finds a runtime's shim on its PATH by name (io.containerd.vessel.v1 -> containerd-shim-vessel-v1).
cat > "$bin/containerd-shim-vessel-v1" <<SH
#!/bin/sh
exec "$root/artifacts/vessel/containerd-shim-vessel-v1" "\$@"
SH
chmod +x "$bin/containerd-shim-vessel-v1"
echo "install: containerd-shim-vessel-v1 -> $bin/containerd-shim-vessel-v1"

# The daemon's unit. KillMode=mixed: SIGTERM goes to `vessel serve` alone, which stops its
# sandboxes' VMs itself (paused sandboxes stay on disk); whatever is left of the unit's
# processes after TimeoutStopSec gets SIGKILL. Its socket is /var/lib/vessel/vessel.sock (0600).
unit="$root/artifacts/vessel.service"
cat > "$unit" <<UNIT
[Unit]
Description=Vessel daemon: microVM sandboxes over HTTP (vessel serve)
Documentation=file://$root/docs/api.md
After=network.target

[Service]
Type=simple
Environment=VESSEL_HOME=/var/lib/vessel
ExecStart=$bin/vessel serve --home /var/lib/vessel
Restart=on-failure
RestartSec=2
KillMode=mixed
TimeoutStopSec=90

[Install]
WantedBy=multi-user.target
UNIT
if [ "$(id -u)" = 0 ] && [ -d /etc/systemd/system ]; then
  install -m 0644 "$unit" /etc/systemd/system/vessel.service
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$enable_service" = 1 ]; then
      systemctl enable --now vessel.service
      echo "install: vessel.service enabled and started (systemctl status vessel)"
    else
      echo "install: vessel.service installed, not started (start it: systemctl enable --now vessel)"
    fi
  else
    echo "install: vessel.service installed in /etc/systemd/system (systemd is not running here)"
  fi
else
  echo "install: the unit is in $unit (as root it goes to /etc/systemd/system/vessel.service)"
fi
