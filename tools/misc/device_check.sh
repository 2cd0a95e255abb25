#!/usr/bin/env bash
# The GPU checks in one command, for a machine with an H100/H200, PyTorch and
# nvcc but without mmcv or network access; sized to finish within 15 minutes.
#
# Prepare on a machine with network access, once (the wheels are ignored by
# git):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl mmengine==0.10.7 mmcv-lite==2.1.0 addict yapf termcolor
# Then copy the checkout with .whl/ to the GPU machine and run
# `bash tools/misc/device_check.sh` there (about 9 minutes); results land in
# $OUT (default: /tmp/device_out).
#
# Stages (STAGES, default all): build (mmscalable._ext with CUDA for sm_90),
# ops (tools/misc/check_ops_cuda.py), tests (the CUDA tests: kernels against
# their references, fast against reference paths), bench (the benchmark at
# 224x224 batch 64, BENCH_MODELS; BENCH_ARGS adds arguments). Logs, JSON,
# Markdown and PNG land in $OUT.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
OUT="${OUT:-/tmp/device_out}"
mkdir -p "$OUT"
STAGES="${STAGES:-build ops tests bench}"
BENCH_MODELS="${BENCH_MODELS:-scalablevit-s scalablevit-b scalablevit-l groupmixformer-m groupmixformer-t groupmixformer-s groupmixformer-b groupmixformer-l refiner-vit-s}"
export PYTHONUNBUFFERED=1

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$ROOT"
else
  export PYTHONPATH="$ROOT"
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"

status=0
for stage in $STAGES; do
  echo "=== $stage ($(date +%T))"
  case "$stage" in
    build)
      CC=/usr/bin/gcc CXX=/usr/bin/g++ FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" \
        MAX_JOBS=16 python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1 \
        || { tail -30 "$OUT/build.log"; exit 1; }
      python3 -m mmscalable.ops ;;
    ops)
      python3 tools/misc/check_ops_cuda.py 2>&1 | tee "$OUT/ops.log" | tail -15 || status=1 ;;
    tests)
      MMSCALABLE_REQUIRE_EXT=1 python3 -m pytest -q -p no:cacheprovider \
        tests/test_ops tests/test_models/test_fast_paths.py -k "(cuda or CUDA) and not compile_for" 2>&1 \
        | tee "$OUT/tests.log" | tail -15 || status=1 ;;
    bench)
      # shellcheck disable=SC2086
      python3 tools/analysis_tools/benchmark.py --models $BENCH_MODELS \
        --settings 224x224:64 --warmup 5 --repeats 20 ${BENCH_ARGS:-} \
        --out "$OUT/bench" > "$OUT/bench.log" 2>&1 || { tail -30 "$OUT/bench.log"; status=1; }
      cat "$OUT/bench.md" 2>/dev/null ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
exit $status
