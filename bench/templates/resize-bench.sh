#!/usr/bin/env bash
# Build-from-template resize: Vessel (resize2fs/e2fsck/debugfs on the copy-on-write layer
# through nbdfuse, only changed blocks stored) versus seed 001's materialize-and-copy
# pipeline (flatten the parent, fresh mkfs.ext4 at the target size, loop-mount both,
# rsync -aH, shrink, resize, e2fsck), on the same parent with >= 1 GiB of files, grow and
# shrink, in the same run. Also times a fully cached rebuild. Needs root (loop mounts).
#
#   bench/templates/resize-bench.sh            # ~1 GiB of files, parent disk 3 GiB, grow to 4 GiB, shrink to 2 GiB
#   DATA_MB=2048 PARENT=4G GROW=6G SHRINK=3G bench/templates/resize-bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA_MB=${DATA_MB:-1024}
PARENT=${PARENT:-3G}
GROW=${GROW:-4G}
SHRINK=${SHRINK:-2G}
WORK=${BENCH_DIR:-/var/tmp/vessel-template-bench}
# The CLI as scripts/install.sh publishes it (ReadyToRun: the run is not spent in the JIT).
# --no-vm below: the resize is the base phase; finalize would only add a VM boot + snapshot
# that the baseline does not do.
CLI="dotnet $WORK/cli/Vessel.Cli.dll"
[ "$(id -u)" = 0 ] || { echo "needs root (loop mounts for the baseline)"; exit 1; }
rm -rf "$WORK"; mkdir -p "$WORK/data" "$WORK/mnt-src" "$WORK/mnt-dst"
dotnet publish src/Vessel.Cli/Vessel.Cli.csproj -c Release -r linux-x64 --self-contained false \
  -p:PublishReadyToRun=true -o "$WORK/cli" -nologo -v q >/dev/null
HOME_DIR="$WORK/home"
cleanup() {
    mountpoint -q "$WORK/mnt-src" && umount "$WORK/mnt-src" || true
    mountpoint -q "$WORK/mnt-dst" && umount "$WORK/mnt-dst" || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

echo "== generating ${DATA_MB} MiB of files (1 MiB files + 4 KiB files) =="
python3 - "$WORK/data" "$DATA_MB" <<'PY'
import os, sys
root, mb = sys.argv[1], int(sys.argv[2])
big = mb * 15 // 16
os.makedirs(f"{root}/big", exist_ok=True); os.makedirs(f"{root}/small", exist_ok=True)
for i in range(big):
    with open(f"{root}/big/f{i:05}", "wb") as f: f.write(os.urandom(1 << 20))
for i in range((mb - big) * 256):
    d = f"{root}/small/d{i // 1000:03}"; os.makedirs(d, exist_ok=True)
    with open(f"{d}/s{i:06}", "wb") as f: f.write(os.urandom(4096))
PY
tar -C "$WORK/data" -cf "$WORK/parent.tar" .
rm -rf "$WORK/data"
cat > "$WORK/parent.json" <<JSON
{ "name": "parent", "from": "tarball:$WORK/parent.tar", "diskSize": "$PARENT" }
JSON
echo "== building the parent template (diskSize $PARENT) =="
$CLI template build --no-vm -f "$WORK/parent.json" --home "$HOME_DIR" 2>&1 | tail -1
PARENT_LAYER=$($CLI template ls --home "$HOME_DIR" | awk '$1=="parent"{print $5}')
# The store records a verified stamp only for data files whose ctime is over 2 s old (coarse
# timestamps): a parent is normally older than that when children are built from it.
sleep 3

vessel_child() { # name size
    cat > "$WORK/$1.json" <<JSON
{ "name": "$1", "fromTemplate": "parent", "diskSize": "$2" }
JSON
    # Twice: the first child build of a parent also checks the SHA-256 of the parent's data
    # (once per parent: the store then keeps a verified stamp); the second (--no-cache) is what
    # every later child of that parent costs. Both are reported; the ratio uses the second.
    local t0 t1 t2
    t0=$(now)
    $CLI template build --no-vm -f "$WORK/$1.json" --home "$HOME_DIR" >/dev/null 2>"$WORK/$1.first.log" || { cat "$WORK/$1.first.log" >&2; exit 1; }
    t1=$(now)
    $CLI template build --no-vm --no-cache -f "$WORK/$1.json" --home "$HOME_DIR" >/dev/null 2>"$WORK/$1.log" || { cat "$WORK/$1.log" >&2; exit 1; }
    t2=$(now)
    echo "$(secs "$t0" "$t1") $(secs "$t1" "$t2")"
}

baseline() { # target-size
    local t0; t0=$(now)
    $CLI blocks flatten "$PARENT_LAYER" "$WORK/src.img" --store "$HOME_DIR/blocks" 2>/dev/null   # materialize the diff chain
    truncate -s "$1" "$WORK/dst.img"
    mkfs.ext4 -q -b 4096 -m 0 -i 4096 "$WORK/dst.img"
    mount -o loop,ro "$WORK/src.img" "$WORK/mnt-src"
    mount -o loop "$WORK/dst.img" "$WORK/mnt-dst"
    rsync -aH "$WORK/mnt-src/" "$WORK/mnt-dst/"
    umount "$WORK/mnt-src"; umount "$WORK/mnt-dst"
    e2fsck -fy "$WORK/dst.img" >/dev/null || [ $? -le 1 ]
    resize2fs -M "$WORK/dst.img" >/dev/null 2>&1
    resize2fs "$WORK/dst.img" "$1" >/dev/null 2>&1
    e2fsck -fy "$WORK/dst.img" >/dev/null || [ $? -le 1 ]
    sync
    local t1; t1=$(now)
    rm -f "$WORK/src.img" "$WORK/dst.img"
    secs "$t0" "$t1"
}

echo "== grow $PARENT -> $GROW and shrink $PARENT -> $SHRINK =="
read -r VG1 VG < <(vessel_child grow "$GROW"); BG=$(baseline "$GROW")
read -r VS1 VS < <(vessel_child shrink "$SHRINK"); BS=$(baseline "$SHRINK")
echo "first child build of the parent (includes the one-time check of its data): grow $VG1 s, shrink $VS1 s"
echo "where the steady-state grow went:"; sed 's/^/    /' "$WORK/grow.log"
echo "where the steady-state shrink went:"; sed 's/^/    /' "$WORK/shrink.log"
t0=$(now); $CLI template build --no-vm -f "$WORK/grow.json" --home "$HOME_DIR" >/dev/null 2>&1; t1=$(now); CACHED=$(secs "$t0" "$t1")
STORED_G=$(grep -o 'storing [0-9.]* [KMG]iB' "$WORK/grow.log" | head -1 || true)
STORED_S=$(grep -o 'storing [0-9.]* [KMG]iB' "$WORK/shrink.log" | head -1 || true)
printf '\n%-8s %12s %12s %8s   %s\n' case vessel_s baseline_s ratio "new layer"
printf '%-8s %12.2f %12.2f %7.1fx   %s\n' grow "$VG" "$BG" "$(echo "$BG / $VG" | bc -l)" "${STORED_G#storing }"
printf '%-8s %12.2f %12.2f %7.1fx   %s\n' shrink "$VS" "$BS" "$(echo "$BS / $VS" | bc -l)" "${STORED_S#storing }"
printf 'fully cached rebuild (CLI process included): %.2f s\n' "$CACHED"
