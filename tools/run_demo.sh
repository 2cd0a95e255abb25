#!/usr/bin/env bash
# Sets up .venv (see tools/setup_env.sh) and runs the main job
# (tools/misc/demo_main_job.py): generates the embedded demo data, trains small
# ScalableViT and GroupMixFormer Mask R-CNNs and UperNets and a ScalableViT
# classifier on it on the CPU, evaluates them through tools/test.py, and
# prints their metrics next to the untrained models'. It prints a progress line
# per epoch and evaluation; the full logs go to work_dirs/demo/<job>/.
# Options: --only NAME (one job), --verbose (the full logs here), --work-dir.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
exec .venv/bin/python tools/misc/demo_main_job.py "$@"
