#!/usr/bin/env bash
# Issue 18's many-core run in one command (~6 minutes on a 16-core machine, under the device's
# 10-minute limit with the build):
#   - int8 linear / matmul at 1, 2 and 16 threads (MM_THREADS; 1 thread alone takes ~90 s);
#   - quantize at 1, 2, 4, 8 and 16 (THREADS); observers at 1 and 16;
#   - attention (lowbit.attention vs torch's sdpa), convolutions (ResNet shapes against torch's
#     static engines, MobileNetV2's depthwise) and the MobileNet / MiniLM models at 16 (FEW; each
#     extra count adds ~3.5 minutes at 2 threads).
# Each benchmark's table goes to $OUT/<name>.md (stderr to .err) and its rows to stdout. A benchmark
# whose peers or data are missing there (MiniLM needs transformers and its weights) says why in its
# .err and the rest go on. Also LIMIT (seconds per benchmark, default 240), PYTHON, OUT (default
# benchmarks/manycore-out). On the 16-core machine, after `bash ../shared/tools/manycore-stage.sh`
# here:  bash build/manycore/build.sh && bash benchmarks/manycore.sh
set -uo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-1,2,4,8,16}
MM_THREADS=${MM_THREADS:-1,2,16}
FEW=${FEW:-16}
LIMIT=${LIMIT:-240}
PY=${PYTHON:-python3}
OUT=${OUT:-benchmarks/manycore-out}
mkdir -p "$OUT"
run() {
  local name=$1
  shift
  local t0=$SECONDS
  timeout "$LIMIT" "$PY" "$@" >"$OUT/$name.md" 2>"$OUT/$name.err"
  echo "== $name: exit $? in $((SECONDS - t0)) s ($*)"
  grep -E '^\|' "$OUT/$name.md" | tail -n 60
}
"$PY" -c "import lowbit; i = lowbit.cpu_info(); print('lowbit', i['arch'], i['available'], i['num_threads'], 'threads')"
run matmul benchmarks/bench_matmul.py --quick --threads "$MM_THREADS"
run quantize benchmarks/bench_quantize.py --quick --threads "$THREADS"
for t in 1 "${THREADS##*,}"; do
  run "observers-$t" benchmarks/bench_observers.py --quick --threads "$t"
done
for t in ${FEW//,/ }; do
  run "attention-$t" benchmarks/bench_attention.py --threads "$t" --rounds 5
  run "conv-$t" benchmarks/bench_conv.py --threads "$t" --rounds 3
  run "models-$t" benchmarks/bench_models.py --models mobilenet,minilm --batches 1,8,32 --threads "$t" --rounds 3
done
