# Sourced by setup_env.sh, run_tests.sh and misc/check_stack.sh.
#
# jobs_by_memory KB_PER_JOB [MAX]: one job per online core, no more than the
# available memory holds at KB_PER_JOB each (MemTotal where MemAvailable is
# missing), at most MAX if given, at least one. getconf, not nproc: nproc
# follows OMP_NUM_THREADS.
jobs_by_memory() {
  local per_job_kb=$1 most=${2:-} jobs mem_kb
  jobs="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
  mem_kb="$(awk '/^MemAvailable:/ {print $2; exit}' /proc/meminfo 2>/dev/null || true)"
  if [ -z "$mem_kb" ]; then
    mem_kb="$(awk '/^MemTotal:/ {print $2; exit}' /proc/meminfo 2>/dev/null || true)"
  fi
  if [ -n "$mem_kb" ] && [ $((mem_kb / per_job_kb)) -lt "$jobs" ]; then
    jobs=$((mem_kb / per_job_kb))
  fi
  if [ -n "$most" ] && [ "$jobs" -gt "$most" ]; then
    jobs=$most
  fi
  echo $((jobs < 1 ? 1 : jobs))
}
