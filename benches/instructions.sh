#!/usr/bin/env bash
# Instructions per operation, wasmproc beside bare wasmtime, counted by callgrind: a figure the
# machine's load does not move, to measure a change to a hot path before and after.
#
#   benches/instructions.sh [spawn|serve] [N1 N2]      (needs valgrind: apt install valgrind)
#
# - spawn: spawn → EXIT of the compute guest, 64 in flight on 2 workers (`spawn_exit`'s
#   sides): wasmproc, `bare_pooling_tuned` (wasmproc's engine configuration, unmetered: the
#   goal's baseline) and the same metered. Default N: 2,000 and 12,000.
# - serve: `GET /` of the WASI 0.3 http_service guest over 16 keep-alive connections
#   (`serve/hello`'s sides, the client counted too). Default N: 500 and 2,500.
#
# Each side runs alone in the benchmark's process (`WASMPROC_BENCH_ONLY=SIDE:N`), twice, with
# N1 and N2 operations; the difference over N2 - N1 leaves out start-up and compilation. Only
# user-space instructions count: the kernel's share (resetting pool slots, waking threads,
# sockets) is the same on both sides. Runs of one build agree within ~0.3%.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt install valgrind)" >&2; exit 1; }
what=${1:-spawn}
case $what in
  spawn) bench=scheduler filter=spawn_exit sides=(wasmproc bare bare_metered) n1=${2:-2000} n2=${3:-12000} ;;
  serve) bench=serve filter=serve/hello sides=(wasmproc bare) n1=${2:-500} n2=${3:-2500} ;;
  *) echo "usage: benches/instructions.sh [spawn|serve] [N1 N2]" >&2; exit 2 ;;
esac
bin=$(cargo bench -p wasmproc-benches --bench "$bench" --no-run 2>&1 \
  | sed -n 's/.*Executable .*(\(.*\))$/\1/p')
[ -x "$bin" ] || { echo "could not build the $bench benchmark" >&2; exit 1; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# valgrind cannot reserve the default pool's address space (~125 GB for 1,000 slots).
export WASMPROC_POOL=100

# Instructions callgrind counted in the benchmark's own process for `$side:$n`.
count() {
  WASMPROC_BENCH_ONLY="$1:$2" valgrind --tool=callgrind --callgrind-out-file="$scratch/out.%p" \
    "$bin" --bench "$filter" >/dev/null 2>"$scratch/log" || { cat "$scratch/log" >&2; exit 1; }
  # The first process valgrind reports is the benchmark (criterion may start others).
  local pid
  pid=$(sed -n 's/^==\([0-9]*\)==.*/\1/p' "$scratch/log" | head -1)
  sed -n "s/^==$pid== Collected : \([0-9]*\)$/\1/p" "$scratch/log"
}

declare -A per_op
for side in "${sides[@]}"; do
  a=$(count "$side" "$n1")
  b=$(count "$side" "$n2")
  per_op[$side]=$(( (b - a) / (n2 - n1) ))
  echo "$what/$side: ${per_op[$side]} instructions per operation"
done
awk -v w="${per_op[wasmproc]}" -v b="${per_op[bare]}" -v what="$what" 'BEGIN {
  printf "%s: bare / wasmproc = %.3f (instructions per operation)\n", what, b / w
}'
if [ "$what" = spawn ]; then
  echo "metering (fuel, epochs) costs bare $(( per_op[bare_metered] - per_op[bare] )) instructions per spawn"
fi
