#!/bin/sh
# run.sh - `make test`: unit tests, the fuzz corpora replayed, then system
# tests, against the sanitizer builds (build/asan, build/fuzz).  The last
# line is "N passed, N failed"; the exit status is 1 when anything failed.
set -u
cd "$(dirname "$0")/.."
B=build/asan
export SELOR_MOD_DIR="$PWD/$B/mod" SELOR_TESTMOD_DIR="$PWD/$B/testmod"
export SELOR_BIN="$PWD/$B/selor" SELORCTL_BIN="$PWD/$B/selorctl"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
passed=0
failed=0

echo "== unit tests"
for t in $B/tests/test_*; do
    [ -x "$t" ] || continue
    out=$("$t" 2>&1)
    rc=$?
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    p=${p:-0}
    f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1  # crashed, or a sanitizer stopped it
    fi
    [ "$f" -eq 0 ] || printf '%s\n' "$out"
    echo "$(basename "$t"): $p passed, $f failed"
    passed=$((passed + p))
    failed=$((failed + f))
done

echo "== fuzz corpora"
fz=$(sh tests/fuzz/replay.sh 2>&1)
fzrc=$?
printf '%s\n' "$fz"
fzf=0
for pf in $(printf '%s\n' "$fz" | sed -n 's/^fuzz_[a-z_]*: \([0-9]*\) passed, \([0-9]*\) failed$/\1:\2/p'); do
    passed=$((passed + ${pf%:*}))
    fzf=$((fzf + ${pf#*:}))
done
[ "$fzrc" -eq 0 ] || [ "$fzf" -gt 0 ] || fzf=1
failed=$((failed + fzf))

echo "== system tests"
xml=$B/pytest.xml
rm -f "$xml"
# --durations: every run lists its slowest tests (before pytest's summary;
# the last line stays ours).
/usr/bin/python3 -m pytest tests/system -q -p no:cacheprovider --junitxml="$xml" \
    --durations=30 ${PYTEST_ARGS:-}
rc=$?
if [ -f "$xml" ]; then
    set -- $(/usr/bin/python3 - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
k = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - k, f)
PY
)
    passed=$((passed + $1))
    failed=$((failed + $2))
elif [ "$rc" -ne 0 ]; then
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
