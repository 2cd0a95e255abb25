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
# Tests run in parallel worker processes (pytest-xdist), one per core as
# memory allows (a worker training a model takes up to ~3 GB), at most 4;
# each worker's torch uses one thread (tests/conftest.py). PYTEST_WORKERS
# overrides the count; 0 runs everything in this process.
. "$ROOT/tools/jobs_by_memory.sh"
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-$(jobs_by_memory 3145728 4)}" \
  --dist worksteal "$@"
