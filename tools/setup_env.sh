#!/usr/bin/env bash
# Creates (or refreshes) the virtual environment at .venv/ in the repository root with the pinned
# OpenMMLab stack, mmcv 2.1.0 built from source with its ops, and mmscalable (with its extension
# mmscalable._ext) installed in editable mode.
#
# Idempotent: each step is skipped when what it produces is already there, so a second run takes
# seconds. pip keeps the mmcv wheel it built in its cache, so a fresh .venv re-uses it as long as
# torch is the same exact build (pinned in requirements/).
#
# Compile jobs: MAX_JOBS from the environment, else one per core as far as memory allows
# (about 1.5 GB per job), at least one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -c "$ROOT/requirements/constraints.txt")

log() { printf '[setup_env] %s\n' "$*"; }

# One compile job per core, bounded by memory: a job compiling mmcv's ops takes up to ~1.5 GB.
. "$ROOT/tools/jobs_by_memory.sh"
MAX_JOBS="${MAX_JOBS:-$(jobs_by_memory 1572864)}"
export MAX_JOBS

# The first mmcv build took about 17 minutes with 2 jobs; it scales roughly with the job count.
build_estimate() {
  local minutes=$(((34 + $1 / 2) / $1))
  if [ "$minutes" -le 5 ]; then echo "a few minutes"; else echo "about $minutes minutes"; fi
}

if [ ! -x "$PY" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV"
fi

if ! "$PY" -c 'import torch, setuptools, ninja; assert torch.__version__.split("+")[0] == "2.13.0" and torch.version.cuda' 2>/dev/null; then
  log "installing build requirements (torch 2.13.0, setuptools<81)"
  "${PIP[@]}" -q --upgrade pip
  "${PIP[@]}" -q -r requirements/build.txt
fi

if ! "$PY" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; then
  log "installing mmcv 2.1.0 with its ops: the first build from source takes $(build_estimate "$MAX_JOBS") with MAX_JOBS=$MAX_JOBS compile jobs (later ones re-use pip's wheel)"
  start=$SECONDS
  "${PIP[@]}" --no-build-isolation mmcv==2.1.0
  elapsed=$((SECONDS - start))
  log "mmcv 2.1.0 installed in $((elapsed / 60)) min $((elapsed % 60)) s"
fi

if ! "$PY" -c 'import mmdet, mmseg, mmpretrain, torchvision, ftfy, regex, pytest, xdist, onnx, onnxscript, onnxruntime' 2>/dev/null; then
  log "installing the OpenMMLab stack and test requirements"
  "${PIP[@]}" -q -r requirements/runtime.txt -r requirements/optional.txt -r requirements/tests.txt
fi

# Rebuild the package only when its build inputs changed since the last install.
STAMP="$VENV/.mmscalable-build"
BUILD_HASH="$(cat setup.py $(find mmscalable/ops/csrc -type f 2>/dev/null | sort) | sha256sum | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$BUILD_HASH" ] || ! "$PY" -c 'import mmscalable' 2>/dev/null; then
  log "installing mmscalable (editable) and building mmscalable._ext"
  # setuptools tells every editable install of a flat layout that a folder
  # named like the package in the working directory may shadow it; here that
  # folder is the installed package itself.
  PYTHONWARNINGS="ignore:Editable installation" \
    "${PIP[@]}" -q --no-build-isolation --no-deps -e .
  echo "$BUILD_HASH" > "$STAMP"
fi
log "ready: $("$PY" -c 'import torch, mmcv, mmdet, mmseg, mmpretrain, mmengine; print(f"torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}")')"
