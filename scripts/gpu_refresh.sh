#!/usr/bin/env bash
# Refresh the GPU evidence of issue 4 on a CUDA machine (docs/reports/runtime-gpu*.md,
# bench-runtime.md): the GPU side of the 20-job trace report, the GPU tests, the bench.
#
# Why a script: the GPU machines this project borrows are bare and short-lived, with no
# internet, so every step below must run from the repo alone, writing what the CPU side
# needs next into one folder. Run it from the repo root:
#
#   OUT=/tmp/gpu bash scripts/gpu_refresh.sh [SECTION [STAGES]]
#
# SECTION: the bench section name (default cuda). STAGES: any of report, tests, bench,
# comma-separated (default all three). Why stages: a borrowed machine runs one command
# for at most 10 minutes and the three together take longer on a fresh one, so each call
# runs one or two; Triton's compiled kernels are kept in $TRITON_CACHE_DIR between calls
# on one machine (scripts/device_kit.sh's setup.sh sets it).
#
# Needs python3 with torch + triton (+ the repo's pure-Python needs: numpy, msgpack,
# pycryptodome, gguf, mpmath, jinja2; pytest for the tests) and the model file in
# $JUDGE_MODEL_CACHE (scripts/device_kit.sh carries both to a bare machine). Then, on
# the CPU side (the committed CPU roots are the reference; docs/reports/runtime-gpu.md):
#
#   python scripts/gpu_runtime_report.py --compare docs/reports/runtime-gpu.cpu-roots.json \
#       $OUT/gpu-roots.json --out docs/reports --name runtime-gpu-<gpu>
#   python scripts/bench_runtime.py --merge $OUT/bench/bench-runtime.json --out docs/reports
set -uo pipefail
OUT=${OUT:?set OUT to a folder for the results}
SECTION=${1:-cuda}
STAGES=",${2:-report,tests,bench},"
mkdir -p "$OUT/bench"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || exit 2
t0=$(date +%s)
stage() { [[ $STAGES == *",$1,"* ]]; }
if stage report; then
  echo "== trace report, GPU side (20 jobs x 64 tokens)"
  python3 scripts/gpu_runtime_report.py --side cuda --prompts 20 --tokens 64 \
      --workers "$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))" --write "$OUT/gpu-roots.json" \
      2>&1 | grep -v "^job " | tail -5
fi
if stage tests; then
  echo "== GPU tests ($(( $(date +%s) - t0 )) s so far)"
  python3 -m pytest -q tests/ree -k "cuda and not interpreter" -p no:cacheprovider 2>&1 \
      | tee "$OUT/tests.log" | tail -5
fi
if stage bench; then
  echo "== bench, section $SECTION ($(( $(date +%s) - t0 )) s so far)"
  python3 scripts/bench_runtime.py --device cuda --tokens 64 --batch 32 --batch-tokens 32 \
      --section "$SECTION" --out "$OUT/bench" 2>&1 | grep '^{"prefill\|^{"batch' | cut -c1-300
fi
echo "== done in $(( $(date +%s) - t0 )) s: $OUT"
