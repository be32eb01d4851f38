#!/usr/bin/env bash
# Image pull benchmark: Vessel's registry source versus skopeo and a curl|gzip pipeline, same
# image, same local registry (Debian's docker-registry on 127.0.0.1), same run.
#   bench/oci/run.sh [SIZE_MIB]   (default 256: half small text files, half large random files)
# Prints seconds for each and the ratios. Vessel does the most work of the three: it
# verifies the blob digest, decompresses, and verifies the uncompressed diff_id.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
size_mib="${1:-256}"
work="$(mktemp -d /tmp/vessel-bench-oci-XXXXXX)"
registry_pid=""
cleanup() {
  if [[ -n "$registry_pid" ]]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "building a ${size_mib} MiB image with umoci..." >&2
umoci init --layout "$work/layout" >/dev/null
umoci new --image "$work/layout:bench" >/dev/null
umoci unpack --rootless --image "$work/layout:bench" "$work/bundle" >/dev/null
python3 - "$work/bundle/rootfs" "$size_mib" <<'PY'
import os, sys, random
root, mib = sys.argv[1], int(sys.argv[2])
random.seed(1)
words = [("w%05d" % i).encode() for i in range(5000)]
small = os.path.join(root, "usr", "share", "small")
for d in range(64):
    os.makedirs(os.path.join(small, "d%02d" % d), exist_ok=True)
target, n = mib * 512 * 1024, 0   # half of the bytes in 16 KiB text files
while n < target:
    data = b" ".join(random.choice(words) for _ in range(2700))[:16384]
    with open(os.path.join(small, "d%02d" % (n // 16384 % 64), "f%07d" % (n // 16384)), "wb") as f:
        f.write(data)
    n += len(data)
big = os.path.join(root, "opt", "big")
os.makedirs(big, exist_ok=True)
for i in range(max(1, mib // 32)):  # the other half in 16 MiB random files
    with open(os.path.join(big, "b%03d" % i), "wb") as f:
        f.write(os.urandom(16 << 20))
PY
umoci repack --image "$work/layout:bench" "$work/bundle" >/dev/null
rm -rf "$work/bundle"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/storage}}
http: {addr: 127.0.0.1:$port, secret: bench}
YML
/usr/bin/docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
skopeo copy -q --dest-tls-verify=false "oci:$work/layout:bench" "docker://127.0.0.1:$port/bench:1"
ref="127.0.0.1:$port/bench:1"

echo "warming up (build of the runner, page cache)..." >&2
dotnet build -c Release "$here/../../src/Vessel" >/dev/null
(cd "$here" && dotnet run -c Release pull.cs -- "$ref" --insecure >/dev/null)

# Wall and CPU (user + sys, all processes of the command) seconds. On a shared 2-core
# machine the wall time swings with other load; the CPU time is the steadier figure.
t() { local TIMEFORMAT='%R %U %S' out; out=$( { time "$@" >/dev/null 2>&1; } 2>&1 ); echo "$out" | awk '{printf "%.3f %.3f\n", $1, $2 + $3}'; }

read -r vessel_wall _ vessel_cpu < <(cd "$here" && dotnet run -c Release pull.cs -- "$ref" --insecure | awk '{print $1, $2, $4}')
read -r skopeo_wall skopeo_cpu < <(t skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$work/out:1")
rm -rf "$work/out"
layer=$(skopeo inspect --raw --tls-verify=false "docker://$ref" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["digest"])')
pipeline() { curl -sf "http://127.0.0.1:$port/v2/bench/blobs/$layer" | tee >(sha256sum >/dev/null) | gzip -dc | sha256sum; }
read -r pipe_wall pipe_cpu < <(t pipeline)
compressed=$(skopeo inspect --raw --tls-verify=false "docker://$ref" | python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')

printf 'image: %s MiB of files, %s compressed bytes in one gzip layer; load average %s\n' "$size_mib" "$compressed" "$(cut -d' ' -f1 /proc/loadavg)"
printf '%-58s %8s %8s\n' "" "wall s" "cpu s"
printf '%-58s %8.3f %8.3f\n' "vessel pull (download, sha256, gunzip, sha256 diff_id)" "$vessel_wall" "$vessel_cpu"
printf '%-58s %8.3f %8.3f\n' "skopeo copy docker:// -> oci: (download, sha256, write)" "$skopeo_wall" "$skopeo_cpu"
printf '%-58s %8.3f %8.3f\n' "curl | tee sha256sum | gzip -dc | sha256sum" "$pipe_wall" "$pipe_cpu"
printf 'peer/vessel wall: skopeo %.2f, pipeline %.2f; cpu: skopeo %.2f, pipeline %.2f\n' \
  "$(echo "$skopeo_wall / $vessel_wall" | bc -l)" "$(echo "$pipe_wall / $vessel_wall" | bc -l)" \
  "$(echo "$skopeo_cpu / $vessel_cpu" | bc -l)" "$(echo "$pipe_cpu / $vessel_cpu" | bc -l)"
