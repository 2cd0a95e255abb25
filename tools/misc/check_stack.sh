#!/usr/bin/env bash
# Checks mmscalable on the oldest supported stack: torch 2.1.2 with mmcv 2.1.0 (the newest torch
# that mmcv 2.1.0 ships prebuilt wheels for), numpy 1.26, mmengine 0.10.7, mmdet 3.3.0,
# mmsegmentation 1.2.2 and mmpretrain 1.2.0, pinned in requirements/constraints-torch2.1.txt.
#
# It builds that stack in its own virtual environment (default .venv-torch2.1 in the repository
# root; --venv DIR or STACK_VENV=DIR to move it), mmcv 2.1.0 from source with its ops, installs
# mmscalable into it from a copy of the sources (a wheel build: the extension built against torch
# 2.1 never lands in the source tree, where .venv's mmscalable/_ext*.so lives), and runs there:
#   - the import, with the extension required (MMSCALABLE_REQUIRE_EXT=1);
#   - the torch fallbacks, the checkpoint loaders and the compiled ops' tests;
#   - fast against reference paths of every family (tests/test_models/test_fast_paths.py);
#   - a loss, backward and predict step of every task of every family;
#   - the demo UperNet job (tools/misc/demo_main_job.py --only upernet).
# The tests run from a copy of the repository without the mmscalable/ folder, so that they import
# the installed package (checked before they start). Tests of what needs a newer torch
# (torch.compile / torch.export of the custom ops, ...) skip with the reason.
# A summary is printed and written to work_dirs/check_stack/<date>.txt (--results FILE to move it).
#
# Idempotent like tools/setup_env.sh: each install step is skipped when what it produces is already
# there. A first run downloads about 2.5 GB (torch 2.1.2's CUDA build and its nvidia-* wheels) and
# builds mmcv for about 17 minutes on 2 cores; the tests and the demo job take about 20 more. pip's
# cache for this stack is its own (~/.cache/mmscalable/pip-torch2.1, or STACK_PIP_CACHE_DIR): pip
# keys a built mmcv wheel by the sdist, not by torch, and must not mix the two stacks' wheels.
#
# Compile jobs: MAX_JOBS from the environment, else one per core as far as memory allows. On a
# machine busy with other torch jobs, run it with OMP_NUM_THREADS=1 (two multi-threaded torch jobs on
# 2 cores thrash: the demo job then takes half an hour instead of a few minutes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

VENV="${STACK_VENV:-$ROOT/.venv-torch2.1}"
RESULTS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --results) RESULTS="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$0"; exit 0 ;;
    *) echo "check_stack.sh: unknown argument $1 (use --venv DIR, --results FILE)" >&2; exit 2 ;;
  esac
done
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
if [ "$VENV" = "$ROOT/.venv" ]; then
  echo "check_stack.sh: $VENV is the main environment (tools/setup_env.sh); choose another --venv" >&2
  exit 2
fi
RESULTS="${RESULTS:-$ROOT/work_dirs/check_stack/$(date +%Y-%m-%d).txt}"
CONSTRAINTS="$ROOT/requirements/constraints-torch2.1.txt"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS")
export PIP_CACHE_DIR="${STACK_PIP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mmscalable/pip-torch2.1}"
TORCH_VERSION="$(sed -n 's/^torch==//p' "$CONSTRAINTS")"

log() { printf '[check_stack] %s\n' "$*"; }

# One compile job per core, bounded by memory (~1.5 GB a job).
. "$ROOT/tools/jobs_by_memory.sh"
MAX_JOBS="${MAX_JOBS:-$(jobs_by_memory 1572864)}"
export MAX_JOBS

# 1. The environment.
if [ ! -x "$PY" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi
# Keep the environment out of git (a venv made by Python 3.13+ has this file already).
[ -f "$VENV/.gitignore" ] || printf '*\n' > "$VENV/.gitignore"

if ! "$PY" -c "import torch, torchvision, numpy, setuptools, ninja; assert torch.__version__.split('+')[0] == '$TORCH_VERSION' and numpy.__version__.startswith('1.')" 2>/dev/null; then
  log "installing torch $TORCH_VERSION, torchvision and numpy 1.26 (about 2.5 GB on a first run)"
  "${PIP[@]}" -q --upgrade pip
  "${PIP[@]}" -q torch torchvision numpy 'setuptools>=77.0.3,<81' wheel ninja
fi

if ! "$PY" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; then
  log "installing mmcv 2.1.0 with its ops against torch $TORCH_VERSION: the first build from source takes about $(((34 + MAX_JOBS / 2) / MAX_JOBS)) minutes with MAX_JOBS=$MAX_JOBS (later ones re-use this stack's pip cache)"
  start=$SECONDS
  "${PIP[@]}" --no-build-isolation mmcv==2.1.0
  log "mmcv 2.1.0 installed in $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s"
fi

if ! "$PY" -c 'import mmdet, mmseg, mmpretrain, mmengine, ftfy, regex, pytest, pytest_timeout' 2>/dev/null; then
  log "installing the OpenMMLab stack and pytest"
  "${PIP[@]}" -q -r requirements/runtime.txt -r requirements/optional.txt pytest pytest-timeout
fi

# 2. mmscalable, built from a copy of the sources (re-installed when they change).
copy_tree() {  # copy_tree DEST [tar options]: the repository without git, environments and builds
  local dest="$1"
  shift
  mkdir -p "$dest"
  tar -C "$ROOT" --exclude=./.git --exclude='./.venv*' --exclude="./${VENV#"$ROOT"/}" \
    --exclude=./build --exclude=./work_dirs --exclude=./data --exclude=./mmscalable/.mim \
    --exclude='*.so' --exclude='__pycache__' --exclude='*.egg-info' --exclude=.pytest_cache \
    "$@" -cf - . | tar -C "$dest" -xf -
}
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mmscalable-check-stack.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
STAMP="$VENV/.mmscalable-build"
BUILD_HASH="$(find setup.py MANIFEST.in model-index.yml mmscalable configs tools requirements \
  -type f ! -path '*/__pycache__/*' ! -path 'mmscalable/.mim/*' ! -name '*.so' -print0 2>/dev/null |
  sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$BUILD_HASH" ] || ! (cd "$WORK" && "$PY" -c 'import mmscalable') 2>/dev/null; then
  log "installing mmscalable and building mmscalable._ext against torch $TORCH_VERSION (a few minutes)"
  # The copy lives in the environment, so that a rebuild recompiles only the changed sources (its
  # build/ folder is kept; the sources are copied afresh).
  SRC="$VENV/mmscalable-src"
  find "$SRC" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} + 2>/dev/null || true
  copy_tree "$SRC"
  start=$SECONDS
  if ! (cd "$SRC" && "${PIP[@]}" --no-build-isolation --no-deps --force-reinstall .) \
      > "$VENV/mmscalable-build.log" 2>&1; then
    tail -n 30 "$VENV/mmscalable-build.log" >&2
    log "building mmscalable failed; the whole log is $VENV/mmscalable-build.log"
    exit 1
  fi
  echo "$BUILD_HASH" > "$STAMP"
  log "mmscalable installed in $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s"
fi

# 3. The tests, from a copy without the sources, so that they import the installed package.
TESTS="$WORK/tests-root"
copy_tree "$TESTS" --exclude=./mmscalable
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
STACK="$(cd "$TESTS" && MMSCALABLE_REQUIRE_EXT=1 "$PY" - "$TESTS" "$SITE" <<'EOF'
import sys
tests_root, site = sys.argv[1:3]
# As tests/conftest.py sets the path.
sys.path[:0] = [tests_root, tests_root + '/tests']
import mmscalable
from mmscalable.ops import ext_info
assert mmscalable.__file__.startswith(site + '/'), (
    f'mmscalable imported from {mmscalable.__file__}, not from {site}')
info = ext_info()
assert info['available'], f"mmscalable._ext: {info['error']}"
import importlib.metadata as metadata
import platform
print(f'python {platform.python_version()}, ' + ', '.join(
    f'{name} {metadata.version(name)}' for name in (
        'torch', 'torchvision', 'numpy', 'mmengine', 'mmcv', 'mmdet',
        'mmsegmentation', 'mmpretrain', 'mmscalable')))
print(f"extension: {', '.join(info['ops'])}")
print(f"note: {info['compile_note'] or 'torch.compile keeps the ops'}")
EOF
)"
log "importing the installed mmscalable with its extension: ok"
printf '%s\n' "$STACK" | sed 's/^/[check_stack]   /'

SUMMARY=()
FAILED=0
run_step() {  # run_step NAME LOG COMMAND...: runs it from the test copy, keeps the last lines
  local name="$1" log_file="$2" rc=0 start=$SECONDS
  shift 2
  log "$name: running (log: $log_file)"
  (cd "$TESTS" && MMSCALABLE_REQUIRE_EXT=1 "$@") > "$log_file" 2>&1 || rc=$?
  local last
  # pytest's closing line, or the demo's metric against the untrained model's, or the last line.
  last="$(grep -E '(passed|failed|error|skipped).* in [0-9.]+s' "$log_file" | tail -n 1 || true)"
  [ -n "$last" ] || last="$(grep -E '^ +mIoU ' "$log_file" | sed 's/  */ /g' | tail -n 1 || true)"
  [ -n "$last" ] || last="$(tail -n 1 "$log_file")"
  local line
  line="$(printf '%-28s %s (%d s) %s' "$name" "$([ $rc -eq 0 ] && echo PASS || echo FAIL)" $((SECONDS - start)) "$last")"
  SUMMARY+=("$line")
  log "$line"
  [ $rc -eq 0 ] || FAILED=1
}

mkdir -p "$(dirname "$RESULTS")"
LOGS="${RESULTS%.txt}"
mkdir -p "$LOGS"
PYTEST=("$PY" -m pytest -q -p no:cacheprovider -rs --timeout 1800)
run_step "fallbacks, loaders, ops" "$LOGS/ops.log" "${PYTEST[@]}" tests/test_torch_compat.py \
  tests/test_compat.py tests/test_ops/test_window_partition.py tests/test_ops/test_group_mix.py \
  tests/test_ops/test_fused_refined_attention.py
run_step "fast vs reference" "$LOGS/fast_paths.log" "${PYTEST[@]}" tests/test_models/test_fast_paths.py
run_step "task steps" "$LOGS/tasks.log" "${PYTEST[@]}" tests/test_models/test_task_models.py \
  "tests/test_models/test_refiner_vit.py::test_classifier_loss_and_predict" \
  tests/test_engine.py::test_bf16_amp_steps_on_the_cpu_stay_finite \
  tests/test_engine.py::test_amp_wrapper_arguments
run_step "demo upernet" "$LOGS/demo_upernet.log" "$PY" tools/misc/demo_main_job.py --only upernet \
  --work-dir "$LOGS/demo"

{
  echo "mmscalable check_stack $(date '+%Y-%m-%d %H:%M') on $(getconf _NPROCESSORS_ONLN) cores${OMP_NUM_THREADS:+, OMP_NUM_THREADS=$OMP_NUM_THREADS}: $([ $FAILED -eq 0 ] && echo PASS || echo FAIL)"
  printf '%s\n' "$STACK"
  printf '%s\n' "${SUMMARY[@]}"
  echo "skipped tests (without a GPU, the CUDA tests skip too: $(grep -h '^SKIPPED.*CUDA' "$LOGS"/*.log |
    sed 's/^SKIPPED \[\([0-9]*\)\].*/\1/' | awk '{n += $1} END {print n + 0}'))":
  grep -h '^SKIPPED' "$LOGS"/*.log | grep -v CUDA | sed 's/^/  /' || echo "  none"
  echo "logs: $LOGS"
} > "$RESULTS"
echo
cat "$RESULTS"
exit $FAILED
