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
workers() {
  local jobs mem_kb
  jobs="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
  mem_kb="$(awk '/^MemAvailable:/ {print $2; exit}' /proc/meminfo 2>/dev/null || true)"
  if [ -n "$mem_kb" ] && [ $((mem_kb / 3145728)) -lt "$jobs" ]; then
    jobs=$((mem_kb / 3145728))
  fi
  [ "$jobs" -gt 4 ] && jobs=4
  echo $((jobs < 1 ? 1 : jobs))
}
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-$(workers)}" \
  --dist worksteal "$@"
