#!/usr/bin/env bash
# A private containerd for a benchmark, everything under one temp dir (CRI off): source this file.
#   containerd_start DIR [PATH-PREFIX]  writes DIR/config.toml, starts containerd with root, state and
#                                        sockets under DIR (PATH-PREFIX first on its PATH, for a shim),
#                                        waits until ctr answers; sets CONTAINERD_PID, SOCK and CTR (an
#                                        array: ctr on SOCK in namespace NS, default "bench")
#   containerd_cleanup DIR              stops it, unmounts what is mounted under DIR, removes DIR
# Callers: trap 'containerd_cleanup "$W"' EXIT right after mktemp.

containerd_start() {
  local dir=$1 path_prefix=${2:-}
  SOCK=$dir/containerd.sock
  CTR=(ctr -a "$SOCK" -n "${NS:-bench}")
  cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
TOML
  PATH="${path_prefix:+$path_prefix:}$PATH" containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
  CONTAINERD_PID=$!
  for _ in $(seq 100); do "${CTR[@]}" version >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "containerd did not answer on $SOCK within 10 s; its log:" >&2
  tail -n 20 "$dir/containerd.log" >&2
  return 1
}

containerd_cleanup() {
  local dir=$1
  if [ -n "${CONTAINERD_PID:-}" ]; then kill "$CONTAINERD_PID" 2>/dev/null || true; wait "$CONTAINERD_PID" 2>/dev/null || true; fi
  { grep -o " $dir[^ ]*" /proc/self/mountinfo || true; } | sort -r | while read -r m; do umount "$m" || true; done
  rm -rf "$dir"
}
