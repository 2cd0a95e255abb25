#!/usr/bin/env bash
# The GPU checks in one command, for a machine with an H100/H200, PyTorch and
# nvcc but without mmcv or network access.
#
# What it does, in order (STAGES, default all four):
#   build  mmscalable._ext with CUDA for sm_90 (TORCH_CUDA_ARCH_LIST), then
#          `python -m mmscalable.ops`; a failed build ends the run.
#   ops    tools/misc/check_ops_cuda.py: the window kernels against their
#          references, and the timings of the window ops, IWSA's window
#          attention, the fused refined attention and the Group-Mix
#          depthwise conv against cuDNN (a verdict line per direction,
#          `group_mix forward: op|cudnn faster (ratio)`).
#   tests  the CUDA tests (every test of tests/test_ops and of the fast paths
#          whose name says cuda): kernels against references (outputs and
#          gradients in fp64/fp32/bf16/fp16, empty batches, more heads than
#          the kernel holds, deterministic mode, a second GPU where there is
#          one), and the fast paths of the backbones against the reference
#          paths (outputs and gradients, fp32 and bf16, eval and training
#          mode).
#   bench  tools/analysis_tools/benchmark.py on every named model (or
#          BENCH_MODELS), reference against fast: throughput, latency, peak
#          GPU memory, FLOPs, fraction of the bf16 peak and the SDPA
#          backends, inference and a training step. One pass per BENCH_PASSES
#          entry (DTYPE@HxW:BATCH, or DTYPE@HxW:BATCH/MODEL,MODEL for some
#          models only), bf16 first: bf16 at 224x224 batch 64 and 512x512
#          batch 8, Refiner-ViT-S at 1024x1024 batch 2, ScalableViT-S and
#          GroupMixFormer-S at 800x1344 batch 2, then fp32 at 224 and 512.
#          FLOPs (and so the fraction of the bf16 peak) come from the first
#          pass. BENCH_ARGS adds arguments to every pass, e.g.
#          BENCH_ARGS='--compile reduce-overhead' for the CUDA-graphs
#          column (torch.compile with mode='reduce-overhead'; it compiles
#          every model first).
# Before any stage it checks that torch, mmengine, mmcv, yapf, platformdirs
# and pytest import, and stops at once, naming what is missing.
#
# How long: the build, ops and tests stages take a few minutes (estimated
# for an H100: 1.5-2, 2-4 and 1-2); the benchmark then runs until its passes
# end or until TIME_LIMIT_S seconds (default 510) have passed since the
# script started, whichever is first, so that a call limited to 9 minutes
# ends by itself. The ops and tests stages stop at that limit too (with
# SIGINT, so that pytest still reports what ran), and count as failed then.
# Each record is written as soon as it is measured, so a pass cut short
# keeps every figure measured so far; a pass not started in time is skipped.
# The emulated kernels' tests (`pytest tests/test_ops -k emulated`) are not
# run here: they need no GPU, and compiling and running them takes about 3
# minutes of CPU. TIME_LIMIT_S=0 runs every pass
# to the end (the four passes over the 11 named models may well take longer
# than the default limit). Results land in $OUT (default: /tmp/device_out):
# gpu.txt, build.log, ops.log, tests.log, and per pass bench_<pass>.json,
# .md (both rewritten after every record), .png (at the end of the pass) and
# .log. The exit status is 1 if a stage failed (a benchmark record left
# unmeasured by a mismatch or an error counts; a pass cut by the time limit
# does not), 2 for an unknown stage, 3 for a missing module.
#
# Prepare on a machine with network access, once (the wheels are ignored by
# git):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl mmengine==0.10.7 mmcv-lite==2.1.0 addict yapf platformdirs termcolor
# Then copy the checkout with .whl/ to the GPU machine and run
# `bash tools/misc/device_check.sh` there.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 1
OUT="${OUT:-/tmp/device_out}"
mkdir -p "$OUT"
STAGES="${STAGES:-build ops tests bench}"
BENCH_MODELS="${BENCH_MODELS:-all}"
BENCH_PASSES="${BENCH_PASSES:-bf16@224x224:64 bf16@512x512:8 bf16@1024x1024:2/refiner-vit-s bf16@800x1344:2/scalablevit-s,groupmixformer-s fp32@224x224:64 fp32@512x512:8}"
TIME_LIMIT_S="${TIME_LIMIT_S:-510}"
export PYTHONUNBUFFERED=1

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$ROOT"
else
  export PYTHONPATH="$ROOT"
fi

# Every module the stages import, before the build: a missing wheel would
# otherwise show only when the tests or the benchmark start.
python3 - <<'EOF' || exit 3
import importlib
import sys

missing = []
for name in ('torch', 'mmengine', 'mmcv', 'yapf', 'platformdirs', 'pytest'):
    try:
        importlib.import_module(name)
    except Exception as error:  # a missing dependency of it too
        missing.append(f'{name} ({type(error).__name__}: {error})')
if missing:
    print('cannot import: ' + '; '.join(missing), file=sys.stderr)
    print('download the wheels named in the header of '
          'tools/misc/device_check.sh into .whl/', file=sys.stderr)
    sys.exit(1)
EOF

nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"

# One benchmark pass, DTYPE@HxW:BATCH[/MODEL,MODEL...], within the time
# left. FLOPs are counted in the first pass only (tracing each model takes
# seconds to a minute).
flops_args=""
bench_pass() {
  local spec="$1" models="$BENCH_MODELS" left=0
  if [[ "$spec" == */* ]]; then
    models="${spec#*/}"
    models="${models//,/ }"
    spec="${spec%%/*}"
  fi
  local dtype="${spec%%@*}" setting="${spec#*@}"
  local name="bench_${dtype}_${setting/:/_b}"
  [ "$models" = "$BENCH_MODELS" ] || name="${name}_${models// /_}"
  if [ "$TIME_LIMIT_S" -gt 0 ]; then
    left=$((TIME_LIMIT_S - SECONDS))
    if [ "$left" -lt 30 ]; then
      echo "--- $name: skipped, ${left} s left of TIME_LIMIT_S=$TIME_LIMIT_S"
      return 0
    fi
  fi
  echo "--- $name ($(date +%T))"
  # shellcheck disable=SC2086
  timeout "$left" python3 tools/analysis_tools/benchmark.py --models $models \
    --dtypes "$dtype" --settings "$setting" --warmup 5 --repeats 20 $flops_args ${BENCH_ARGS:-} \
    --out "$OUT/$name" > "$OUT/$name.log" 2>&1
  local rc=$?
  flops_args="--no-flops"
  cat "$OUT/$name.md" 2>/dev/null
  case $rc in
    0) ;;
    124) echo "--- $name: cut short at TIME_LIMIT_S=$TIME_LIMIT_S; the records above were measured" ;;
    *) tail -30 "$OUT/$name.log"; return 1 ;;
  esac
}

# Seconds left of TIME_LIMIT_S (a day when it is 0: no limit).
time_left() {
  if [ "$TIME_LIMIT_S" -gt 0 ]; then echo $((TIME_LIMIT_S - SECONDS)); else echo 86400; fi
}

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
      left=$(time_left)
      [ "$left" -ge 30 ] || { echo "--- ops: skipped, ${left} s left of TIME_LIMIT_S=$TIME_LIMIT_S"; status=1; continue; }
      timeout -s INT -k 15 "$left" python3 tools/misc/check_ops_cuda.py 2>&1 \
        | tee "$OUT/ops.log" | tail -15 || status=1 ;;
    tests)
      left=$(time_left)
      [ "$left" -ge 30 ] || { echo "--- tests: skipped, ${left} s left of TIME_LIMIT_S=$TIME_LIMIT_S"; status=1; continue; }
      MMSCALABLE_REQUIRE_EXT=1 timeout -s INT -k 15 "$left" python3 -m pytest -q -p no:cacheprovider \
        tests/test_ops tests/test_models/test_fast_paths.py -k "(cuda or CUDA) and not compile_for" 2>&1 \
        | tee "$OUT/tests.log" | tail -15 || status=1 ;;
    bench)
      for pass in $BENCH_PASSES; do
        bench_pass "$pass" || status=1
      done ;;
    *) echo "unknown stage $stage"; exit 2 ;;
  esac
done
exit $status
