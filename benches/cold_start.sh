#!/usr/bin/env bash
# Cold start: the same `wasmproc spawn` without the compiled-code cache, with an empty one
# (compile and write) and with a warm one (deserialize), N runs each, in a scratch cache (the
# user's is never touched). Wall time per process, milliseconds: median, min, max.
#
#   cargo build --release -p wasmproc
#   benches/cold_start.sh [N] [MANIFEST ENTRY [ARGS...]]
# Default: probe.wasm, the largest guest in guests/dist, through a manifest made here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=${WASMPROC_BIN:-${CARGO_TARGET_DIR:-target}/release/wasmproc}
n=${1:-10}
shift || true
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export WASMPROC_CACHE_DIR=$scratch/cache
unset WASMPROC_CACHE
if [ $# -ge 2 ]; then
  target=("$@")
else
  hash=$(sha256sum guests/dist/probe.wasm | cut -d' ' -f1)
  cat >"$scratch/m.yaml" <<YAML
namespace: m
entries:
  - { name: bins, kind: fs.directory, directory: $PWD/guests/dist }
  - { name: host, kind: process.host }
  - { name: probe, kind: process.wasm, fs: bins, path: /probe.wasm, hash: "sha256:$hash", method: environment, imports: [wasi:cli, wasi:filesystem] }
YAML
  target=("$scratch/m.yaml" m:probe)
fi

# One series: runs `$bin $@` n times (after `cache clear` each time when $clear is 1).
series() {
  local label=$1 clear=$2
  shift 2
  local times=()
  for _ in $(seq "$n"); do
    [ "$clear" = 1 ] && "$bin" cache clear >/dev/null
    local start end
    start=$(date +%s%N)
    "$bin" "$@" >/dev/null
    end=$(date +%s%N)
    times+=($(((end - start) / 1000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" -v n="$n" '
    { t[NR] = $1 }
    END { printf "%-40s median %7.1f ms  min %7.1f  max %7.1f  (n=%d)\n", label,
          (n % 2 ? t[(n + 1) / 2] : (t[n / 2] + t[n / 2 + 1]) / 2) / 1000, t[1] / 1000, t[n] / 1000, n }'
}

echo "wasmproc spawn ${target[*]}"
series "--no-cache (compile, write nothing)" 0 --no-cache spawn "${target[@]}"
series "first: empty cache (compile + write)" 1 spawn "${target[@]}"
"$bin" spawn "${target[@]}" >/dev/null
series "second: warm cache (deserialize)" 0 spawn "${target[@]}"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
