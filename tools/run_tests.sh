#!/usr/bin/env bash
# Sets up .venv (see tools/setup_env.sh) and runs the test suite.
# Extra arguments go to pytest, e.g. `bash tools/run_tests.sh -m "not slow"`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
# The compiled extension must be there: a silent fallback to the reference
# ops would hide a broken build.
export MMSCALABLE_REQUIRE_EXT=1
exec .venv/bin/python -m pytest "$@"
