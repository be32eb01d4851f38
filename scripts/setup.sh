#!/usr/bin/env bash
# Installs every Debian package Vessel and its tests need. Safe to run twice.
set -euo pipefail

packages=(
  e2fsprogs            # mke2fs/e2fsck/debugfs/tune2fs/resize2fs: the oracle and the resize tools
  busybox-static       # provisioning busybox and the guest initramfs
  qemu-system-x86      # the VMM (TCG here); depends on qemu-system-common, which holds /usr/lib/qemu/virtiofsd (virtio-fs pods)
  qemu-utils           # qemu-img, qemu-io, qemu-nbd
  libnbd-bin           # nbdinfo, nbdcopy, nbdfuse (file view of an NBD export)
  nbdkit               # reference NBD server for benchmarks
  skopeo umoci         # build and move OCI images in tests (umoci makes the tests' busybox image)
  debootstrap          # the tests' Debian minbase image (tests/Shared/TestImages.cs) and bench/rootfs input
  docker-registry      # a real registry for pull tests
  containerd runc      # a real containerd for views and leases
  kmod cpio            # modinfo for guest module dependencies
  fuse3                # fusermount3 for nbdfuse
  rsync                # the peer pipelines in benchmarks
  time                 # /usr/bin/time: peak RSS in bench/rootfs/run.sh
  clang zlib1g-dev      # the guest agent is published Native AOT (the ILCompiler links with clang); clang also builds the network filter QEMU loads (src/Vessel/Vmm/NetworkFilter.c)
  util-linux           # setpriv: QEMU runs under PR_SET_PDEATHSIG and dies with Vessel; unshare: virtiofsd in a private mount namespace
  jq curl ca-certificates xz-utils zstd
  procps               # kill, pgrep, ps: tests signal and find processes
  python3-minimal      # /usr/bin/python3: the network filter tests call sendto/sendmsg under the filter
  postgresql           # PostgreSQL 15 (initdb, postgres): the state store's second database and the cluster's membership, started privately by tests
  passt                # the other user-mode network stack, measured against slirp (bench/net/bench.sh, docs/BENCHMARKS.md "slirp or passt")
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all Debian packages present"
fi

# node and npm run s3rver (an S3-compatible server) for the object-store tests
# (tests/Vessel.IntegrationTests/Blocks/S3Server.cs). A machine whose nodejs already brings
# npm (NodeSource's nodejs provides and conflicts with Debian's npm) keeps it; otherwise
# Debian's nodejs and npm.
node_packages=(
  nodejs npm
)
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "setup: installing ${node_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${node_packages[@]}" >/dev/null
fi

# The stock units of these packages must not own the machine: Vessel starts private
# instances with their own configs and sockets.
for unit in containerd docker-registry postgresql; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    systemctl stop "$unit" || true
  fi
done
