#!/usr/bin/env bash
# A stand-in for `vessel rootfs build` made of peer tools (umoci/skopeo/tar + mke2fs -d), run
# as root. It exists to debug the read-back checker against a known-good pipeline:
#   VESSEL_ROOTFS_STANDIN=$PWD/tests/Vessel.IntegrationTests/Rootfs/standin/mke2fs-standin.sh \
#     dotnet test tests/Vessel.IntegrationTests -c Release --filter 'FullyQualifiedName~Rootfs'
# It does not reject hostile input the way Vessel must, so those tests fail against it.
# Usage: mke2fs-standin.sh SOURCE -o OUT [--size S | --free F] [--reserved R]
set -euo pipefail

src="" out="" size="" free="64M" reserved="0"
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --free) free="$2"; shift 2 ;;
    --reserved) reserved="$2"; shift 2 ;;
    *) src="$1"; shift ;;
  esac
done
[ -n "$src" ] && [ -n "$out" ] || { echo "usage: $0 SOURCE -o OUT" >&2; exit 2; }

work=$(mktemp -d)
ok=0
cleanup() { rm -rf "$work"; [ "$ok" = 1 ] || rm -f "$out" "$out.json"; }
trap cleanup EXIT

bytes() { numfmt --from=iec "${1%iB}"; }

layout="" tag="latest" rootfs="$work/bundle/rootfs" config='{}' digest=""
if [ -d "$src" ]; then
  layout="$src"
elif [ -d "${src%:*}" ] && [ "${src%:*}" != "$src" ]; then
  layout="${src%:*}"; tag="${src##*:}"
elif tar -tf "$src" oci-layout >/dev/null 2>&1; then
  skopeo copy -q "oci-archive:$src" "oci:$work/layout:t" >&2; layout="$work/layout"; tag=t
elif tar -tf "$src" manifest.json >/dev/null 2>&1; then
  skopeo copy -q "docker-archive:$src" "oci:$work/layout:t" >&2; layout="$work/layout"; tag=t
fi
if [ -n "$layout" ]; then
  umoci unpack --image "$layout:$tag" "$work/bundle" >&2
  config=$(skopeo inspect --config "oci:$layout:$tag")
  digest=$(skopeo inspect "oci:$layout:$tag" | jq -r .Digest)
else
  mkdir -p "$rootfs"
  tar --xattrs --xattrs-include='*' --numeric-owner -xpf "$src" -C "$rootfs"
  digest="sha256:$(sha256sum "$src" | cut -d' ' -f1)"
fi

mkdir -p "$rootfs/etc" "$rootfs/.vessel"
rm -rf "$rootfs/etc/hosts" "$rootfs/etc/resolv.conf" "$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$rootfs/etc/hosts"
printf 'nameserver 10.0.2.3\n' > "$rootfs/etc/resolv.conf"
printf 'vessel\n' > "$rootfs/etc/hostname"
cp /bin/busybox "$rootfs/.vessel/busybox"
printf '%s\n' "$config" > "$rootfs/.vessel/image.json"

if [ -n "$size" ]; then
  total=$(bytes "$size")
else
  used=$(du -sb "$rootfs" | cut -f1)
  total=$(( used * 13 / 10 + $(bytes "$free") * 115 / 100 + 32 * 1024 * 1024 ))
fi
total=$(( (total + 4095) / 4096 * 4096 ))
rm -f "$out"
mke2fs -q -F -t ext4 -b 4096 -m 0 -d "$rootfs" "$out" "$((total / 1024))k" >&2
tune2fs -r "$(( $(bytes "$reserved") / 4096 ))" "$out" >/dev/null
jq -n --arg digest "$digest" --argjson config "$config" '{digest: $digest, config: $config}' > "$out.json"
ok=1
