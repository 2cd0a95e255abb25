#!/usr/bin/env bash
# Creates (or refreshes) the virtual environment at .venv/ in the repository root with the pinned
# OpenMMLab stack, mmcv 2.1.0 built from source with its ops, and mmscalable (with its extension
# mmscalable._ext) installed in editable mode.
#
# Idempotent: each step is skipped when what it produces is already there, so a second run takes
# seconds. pip keeps the mmcv wheel it built in its cache, so a fresh .venv re-uses it as long as
# torch is the same exact build (pinned in requirements/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -c "$ROOT/requirements/constraints.txt")

log() { printf '[setup_env] %s\n' "$*"; }

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
  log "installing mmcv 2.1.0 with its ops (first build from source takes ~20 min on 2 cores)"
  MAX_JOBS="${MAX_JOBS:-2}" "${PIP[@]}" --no-build-isolation mmcv==2.1.0
fi

if ! "$PY" -c 'import mmdet, mmseg, mmpretrain, torchvision, ftfy, regex, pytest, onnx, onnxscript, onnxruntime' 2>/dev/null; then
  log "installing the OpenMMLab stack and test requirements"
  "${PIP[@]}" -q -r requirements/runtime.txt -r requirements/optional.txt -r requirements/tests.txt
fi

# Rebuild the package only when its build inputs changed since the last install.
STAMP="$VENV/.mmscalable-build"
BUILD_HASH="$(cat setup.py $(find mmscalable/ops/csrc -type f 2>/dev/null | sort) | sha256sum | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$BUILD_HASH" ] || ! "$PY" -c 'import mmscalable' 2>/dev/null; then
  log "installing mmscalable (editable) and building mmscalable._ext"
  MAX_JOBS="${MAX_JOBS:-2}" "${PIP[@]}" -q --no-build-isolation --no-deps -e .
  echo "$BUILD_HASH" > "$STAMP"
fi
log "ready: $("$PY" -c 'import torch, mmcv, mmdet, mmseg, mmpretrain, mmengine; print(f"torch {torch.__version__}, mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}")')"
