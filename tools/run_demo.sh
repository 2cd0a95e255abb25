#!/usr/bin/env bash
# Sets up .venv (see tools/setup_env.sh) and runs the main job: trains a small
# ScalableViT Mask R-CNN and a small ScalableViT UperNet on the embedded demo
# data on the CPU, evaluates them with the COCO and mIoU metrics through
# tools/test.py, and prints them next to the untrained models' metrics.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
exec .venv/bin/python tools/misc/demo_main_job.py "$@"
