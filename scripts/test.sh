#!/usr/bin/env bash
# The test suite: each test file in its own pytest process, run once. Exits 0 only if every file passed.
# Usage: bash scripts/test.sh [pytest options]   (PROXRL_TEST_FILES='tests/test_a.py ...' to choose files)
#
# Hangs fail the first time, with every thread's Python stack:
# - a single test running past pytest's faulthandler_timeout (pyproject.toml) has every thread's stack dumped;
# - a file running past PROXRL_TEST_FILE_LIMIT seconds gets SIGABRT, on which Python's faulthandler (enabled by
#   PYTHONFAULTHANDLER, inherited by any Python subprocess a test starts) dumps every thread's stack before the
#   process dies; the file counts as failed. SIGKILL follows 30 s later if the process is still there.
# A failing file's whole output is printed; a passing file's pytest summary line and its wall time.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LIMIT=${PROXRL_TEST_FILE_LIMIT:-900}  # seconds per file; the slowest takes about 75 s on 2 cores at load 3
export PYTHONFAULTHANDLER=1
ulimit -c 0  # no core files from the SIGABRT
passed=0; failed=0; bad_files=()
for f in ${PROXRL_TEST_FILES:-tests/test_*.py}; do
  start=$SECONDS
  out=$(timeout -s ABRT -k 30 "$LIMIT" "$PY" -m pytest -q -o addopts= -p no:cacheprovider "$f" "$@" 2>&1); rc=$?
  secs=$((SECONDS - start))
  p=$(printf '%s\n' "$out" | grep -oE '[0-9]+ passed' | tail -n 1 | cut -d' ' -f1)
  x=$(printf '%s\n' "$out" | grep -oE '[0-9]+ (failed|error)' | awk '{s+=$1} END {print s+0}')
  passed=$((passed + ${p:-0})); failed=$((failed + ${x:-0}))
  # 5: pytest selected no test in this file (e.g. with -k); not a failure
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
    bad_files+=("$f"); [ "${x:-0}" -eq 0 ] && failed=$((failed + 1))
    printf '%s\n' "$out"
    case $rc in
      124) echo "$f: FAILED: exceeded ${LIMIT} s, stopped by SIGABRT (the thread stacks are above) [${secs} s]" ;;
      137) echo "$f: FAILED: killed (SIGKILL: 30 s after a SIGABRT at ${LIMIT} s, or out of memory) [${secs} s]" ;;
      *) echo "$f: FAILED (exit status $rc) [${secs} s]" ;;
    esac
  else
    summary=$(printf '%s\n' "$out" | grep -E '^=*\s*[0-9]+ (passed|failed|deselected|skipped)|no tests ran' | tail -n 1)
    echo "$f: ${summary:-no summary} [${secs} s]"
  fi
done
[ ${#bad_files[@]} -gt 0 ] && echo "failing files: ${bad_files[*]}"
echo "tests: $passed passed, $failed failed"
[ ${#bad_files[@]} -eq 0 ]
