#!/bin/sh
# replay.sh - runs every committed corpus, tests/fuzz/corpus/<name>/, through
# its harness build/fuzz/fuzz_<name> (no fuzzing: each input once), and
# prints one line per harness in the format tests/run.sh counts:
#
#     fuzz_<name>: N passed, M failed
#
# N inputs ran without a finding; a harness that crashes (an invariant, a
# sanitizer, a leak) counts its failing inputs as failed and its output is
# printed.  Exit status 1 when anything failed.  The harnesses are built
# first (make fuzz-bins, quick when up to date) unless FUZZ_NO_BUILD is set.
set -u
cd "$(dirname "$0")/../.."
D=build/fuzz

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    if ! out=$(${MAKE:-make} --no-print-directory -s -f Makefile \
                   -f tests/fuzz/fuzz.mk fuzz-bins 2>&1); then
        printf '%s\n' "$out"
        echo "fuzz_build: 0 passed, 1 failed"
        exit 1
    fi
fi

status=0
for dir in tests/fuzz/corpus/*/; do
    name=$(basename "$dir")
    bin=$D/fuzz_$name
    set -- "$dir"*
    [ -e "$1" ] || set --
    total=$#
    passed=0
    failed=0
    if [ "$total" -eq 0 ]; then
        :
    elif [ ! -x "$bin" ]; then
        echo "$bin: not built"
        failed=$total
    elif out=$("$bin" "$@" 2>&1); then
        passed=$total
    else
        # Something failed: find out which inputs, one run each.
        for f in "$@"; do
            if one=$("$bin" "$f" 2>&1); then
                passed=$((passed + 1))
            else
                failed=$((failed + 1))
                printf '%s\n' "$one" | grep -v '^INFO: ' | head -80
            fi
        done
        if [ "$failed" -eq 0 ]; then  # only together: report it as one
            printf '%s\n' "$out" | grep -v '^INFO: ' | head -80
            failed=1
            passed=$((total - 1))
        fi
    fi
    echo "fuzz_$name: $passed passed, $failed failed"
    [ "$failed" -eq 0 ] || status=1
done
exit $status
