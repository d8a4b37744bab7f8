#!/usr/bin/env bash
# Instructions per spawn → EXIT of the compute guest (64 in flight, 2 workers): wasmproc, and
# bare wasmtime with wasmproc's engine configuration (unmetered, the goal's baseline, and
# metered), counted by callgrind. Each side runs twice, with N1 and N2 spawns; the difference
# divided by N2 - N1 leaves out start-up and compilation. User-space instructions only: the
# kernel's share (resetting pool slots, waking threads) is the same on both sides, and this
# count does not move with the machine's load as time does (ratio of instructions here ~ the
# ratio of spawns per second `spawn_exit` measures, on a quiet machine).
#
#   benches/instructions.sh [N1 N2]          (needs valgrind: apt install valgrind)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt install valgrind)" >&2; exit 1; }
n1=${1:-2000}
n2=${2:-12000}
cargo build -q --release -p wasmproc-benches --example spawn_instructions
bin=${CARGO_TARGET_DIR:-target}/release/examples/spawn_instructions
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# valgrind cannot reserve the default pool's address space (~125 GB for 1,000 slots).
export WASMPROC_POOL=100

# Instructions callgrind counted for `$bin $side $n`.
count() {
  valgrind --tool=callgrind --callgrind-out-file="$scratch/out" "$bin" "$1" "$2" 2>"$scratch/log" \
    || { cat "$scratch/log" >&2; exit 1; }
  sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$scratch/log"
}

declare -A per_spawn
for side in wasmproc bare bare_metered; do
  a=$(count "$side" "$n1")
  b=$(count "$side" "$n2")
  per_spawn[$side]=$(( (b - a) / (n2 - n1) ))
  echo "$side: ${per_spawn[$side]} instructions per spawn"
done
awk -v w="${per_spawn[wasmproc]}" -v b="${per_spawn[bare]}" -v m="${per_spawn[bare_metered]}" 'BEGIN {
  printf "wasmproc / bare_pooling_tuned = %.3f (bare / wasmproc instructions); metering costs bare %d instructions per spawn\n", b / w, m - b
}'
