#!/usr/bin/env bash
# Input images for the benchmarks, made from Debian packages (nothing from outside the repository): source this file.
# The same recipes as the tests' images (tests/Shared/TestImages.cs).
#   busybox_tarball OUT.tar.gz   busybox-static with every applet linked, a passwd; ~300 entries, about 1 s
#   busybox_oci LAYOUT TAG APPLET...  a one-layer OCI image LAYOUT:TAG (umoci, rootless) of busybox-static
#                                with these applets linked in /bin, root in /etc/passwd and /etc/group,
#                                cmd /bin/sh and PATH=/bin; about 1 s
#   debian_tarball               prints the path of a Debian minbase tarball (debootstrap --variant=minbase
#                                bookworm, the machine's apt mirror), cached under ~/.cache/vessel/bench-images
#                                by suite and mirror; minutes the first time (root)

busybox_tarball() {
  local out=$1 tree applet up
  tree=$(mktemp -d /tmp/vessel-busybox.XXXXXX)
  mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,etc,home,proc,sys,dev,run,var/tmp,tmp,root}
  chmod 1777 "$tree/tmp"; chmod 700 "$tree/root"
  cp "$(command -v busybox)" "$tree/bin/busybox"
  for applet in $(busybox --list-full); do
    [ "$applet" = bin/busybox ] && continue
    up=$(echo "$applet" | sed 's|[^/]*/|../|g; s|[^/]*$||')
    mkdir -p "$tree/$(dirname "$applet")"
    ln -sf "${up}bin/busybox" "$tree/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$tree/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' > "$tree/etc/group"
  printf 'busybox-test 1\n' > "$tree/etc/vessel-test-release"
  tar --numeric-owner --sort=name --use-compress-program='gzip -n' -cf "$out" -C "$tree" .
  rm -rf "$tree"
}

busybox_oci() {
  local layout=$1 tag=$2 bundle applet
  shift 2
  bundle="$layout.bundle-$tag"
  [ -d "$layout" ] || umoci init --layout "$layout" >/dev/null
  umoci new --image "$layout:$tag" >/dev/null
  umoci unpack --rootless --image "$layout:$tag" "$bundle" >/dev/null
  mkdir -p "$bundle/rootfs"/{bin,etc,root,tmp,mnt}
  cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
  for applet in "$@"; do ln -sf busybox "$bundle/rootfs/bin/$applet"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$bundle/rootfs/etc/passwd"
  printf 'root:x:0:\n' > "$bundle/rootfs/etc/group"
  umoci repack --image "$layout:$tag" "$bundle" >/dev/null
  umoci config --image "$layout:$tag" --config.cmd /bin/sh --config.env PATH=/bin >/dev/null
  rm -rf "$bundle"
}

# The apt mirror for bookworm from /etc/apt/sources.list(.d) (one-line or deb822), else deb.debian.org.
debian_mirror() {
  local m
  m=$(awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $(i) !~ /\]$/) i++; i++ } if ($(i + 1) == "bookworm") { print $(i); exit } }' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1)
  [ -n "$m" ] || m=$(awk 'BEGIN { RS = ""; FS = "\n" } /(^|\n)Types:[^\n]*deb/ && /(^|\n)Suites:[^\n]*bookworm( |$|\n)/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, u, " "); print u[1]; exit } }' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  echo "${m:-http://deb.debian.org/debian}"
}

debian_tarball() {
  local mirror key dir out tmp
  mirror=$(debian_mirror)
  key=$(printf 'bookworm minbase\n%s\n' "$mirror" | sha256sum | cut -c1-16)
  dir=${XDG_CACHE_HOME:-$HOME/.cache}/vessel/bench-images
  out="$dir/debian-bookworm-minbase-$key.tar.gz"
  if [ ! -f "$out" ]; then
    mkdir -p "$dir"
    tmp=$(mktemp -d "$dir/.debian.XXXXXX")
    echo "debootstrap --variant=minbase bookworm $mirror (minutes)..." >&2
    if ! debootstrap --variant=minbase bookworm "$tmp/root" "$mirror" >"$tmp/log" 2>&1; then
      tail -20 "$tmp/log" >&2
      grep " $tmp/root/" /proc/self/mounts | awk '{ print $2 }' | sort -r | xargs -r -n1 umount
      rm -rf --one-file-system "$tmp"; return 1
    fi
    tar --numeric-owner --sort=name --xattrs --use-compress-program='gzip -n' -cf "$tmp/rootfs.tar.gz" -C "$tmp/root" .
    mv "$tmp/rootfs.tar.gz" "$out"
    rm -rf --one-file-system "$tmp"
  fi
  echo "$out"
}

# Prints the path of an uncompressed tarball of the busybox image above plus /big, MIB MiB of
# random data (no zero blocks to skip), cached under ~/.cache/vessel/bench-images by size: the
# pods bench's sized images (10 MB, 1 GiB) and its 512 MiB read file. Seconds the first time.
random_tarball() {
  local mib=$1 dir out tmp
  dir=${XDG_CACHE_HOME:-$HOME/.cache}/vessel/bench-images
  out="$dir/busybox-random-${mib}M.tar"
  if [ ! -f "$out" ]; then
    mkdir -p "$dir"
    tmp=$(mktemp -d "$dir/.random.XXXXXX")
    busybox_tarball "$tmp/small.tar.gz"
    mkdir "$tmp/root" && tar -xzf "$tmp/small.tar.gz" -C "$tmp/root"
    head -c $((mib << 20)) /dev/urandom > "$tmp/root/big"
    tar --numeric-owner --sort=name -cf "$tmp/image.tar" -C "$tmp/root" .
    mv "$tmp/image.tar" "$out"
    rm -rf "$tmp"
  fi
  echo "$out"
}
