#!/usr/bin/env bash
# The test suite: each test file in its own pytest process, run once, PROXRL_TEST_JOBS files at a time (default:
# the number of cores, at most 2). Exits 0 only if every file passed.
# Usage: bash scripts/test.sh [pytest options]   (PROXRL_TEST_FILES='tests/test_a.py ...' to choose files)
#
# Hangs fail the first time, with every thread's Python stack:
# - a single test running past pytest's faulthandler_timeout (pyproject.toml) has every thread's stack dumped;
# - a file running past PROXRL_TEST_FILE_LIMIT seconds gets SIGABRT, on which Python's faulthandler (enabled by
#   PYTHONFAULTHANDLER, inherited by any Python subprocess a test starts) dumps every thread's stack before the
#   process dies; the file counts as failed. SIGKILL follows 30 s later if the process is still there.
# A failing file's whole output is printed; a passing file's pytest summary line and its wall time, in the order
# the files finish. The slowest files start first, so that two at a time finish together.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LIMIT=${PROXRL_TEST_FILE_LIMIT:-900}  # seconds per file; the slowest takes about 75 s on 2 cores at load 3
cores=$(nproc 2>/dev/null || echo 1)
JOBS=${PROXRL_TEST_JOBS:-$((cores < 2 ? cores : 2))}
export PYTHONFAULTHANDLER=1
ulimit -c 0  # no core files from the SIGABRT
SLOW="offpolicy_ac off_policy_learning tabular sac ppo npg off_policy host sweep appo train_driver qac bad_input"
if [ -n "${PROXRL_TEST_FILES:-}" ]; then
  files=($PROXRL_TEST_FILES)
else
  files=()
  for s in $SLOW; do [ -f "tests/test_$s.py" ] && files+=("tests/test_$s.py"); done
  for f in tests/test_*.py; do
    case " ${files[*]} " in *" $f "*) ;; *) files+=("$f") ;; esac
  done
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

run_file() {  # $1: index, $2: file; writes $work/$1.out and $work/$1.status ("rc secs")
  local start=$SECONDS rc
  timeout -s ABRT -k 30 "$LIMIT" "$PY" -m pytest -q -o addopts= -p no:cacheprovider "$2" "${@:3}" >"$work/$1.out" 2>&1
  rc=$?
  echo "$rc $((SECONDS - start))" >"$work/$1.status"
}

passed=0; failed=0; bad_files=()
report() {  # $1: index, $2: file
  local out rc secs p x summary
  out=$(cat "$work/$1.out"); read -r rc secs <"$work/$1.status"
  p=$(printf '%s\n' "$out" | grep -oE '[0-9]+ passed' | tail -n 1 | cut -d' ' -f1)
  x=$(printf '%s\n' "$out" | grep -oE '[0-9]+ (failed|error)' | awk '{s+=$1} END {print s+0}')
  passed=$((passed + ${p:-0})); failed=$((failed + ${x:-0}))
  # 5: pytest selected no test in this file (e.g. with -k); not a failure
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
    bad_files+=("$2"); [ "${x:-0}" -eq 0 ] && failed=$((failed + 1))
    printf '%s\n' "$out"
    case $rc in
      124) echo "$2: FAILED: exceeded ${LIMIT} s, stopped by SIGABRT (the thread stacks are above) [${secs} s]" ;;
      137) echo "$2: FAILED: killed (SIGKILL: 30 s after a SIGABRT at ${LIMIT} s, or out of memory) [${secs} s]" ;;
      *) echo "$2: FAILED (exit status $rc) [${secs} s]" ;;
    esac
  else
    summary=$(printf '%s\n' "$out" | grep -E '^=*\s*[0-9]+ (passed|failed|deselected|skipped)|no tests ran' | tail -n 1)
    echo "$2: ${summary:-no summary} [${secs} s]"
  fi
}

declare -A running=()  # index -> file
next=0
while [ "$next" -lt "${#files[@]}" ] || [ "${#running[@]}" -gt 0 ]; do
  while [ "$next" -lt "${#files[@]}" ] && [ "${#running[@]}" -lt "$JOBS" ]; do
    run_file "$next" "${files[$next]}" "$@" &
    running[$next]=${files[$next]}
    next=$((next + 1))
  done
  wait -n
  for i in "${!running[@]}"; do
    if [ -f "$work/$i.status" ]; then report "$i" "${running[$i]}"; unset "running[$i]"; fi
  done
done
[ ${#bad_files[@]} -gt 0 ] && echo "failing files: ${bad_files[*]}"
echo "tests: $passed passed, $failed failed"
[ ${#bad_files[@]} -eq 0 ]
