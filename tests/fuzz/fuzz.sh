#!/bin/sh
# fuzz.sh - `make fuzz`: runs each harness named on the command line for
# FUZZ_SECONDS seconds (default 60) with libFuzzer.
#
# Each harness works on build/fuzz/corpus/<name>/ (created, kept between
# runs), seeded read-only from tests/fuzz/corpus/<name>/: libFuzzer writes
# new inputs only into the first corpus directory, so the committed seeds
# are never touched.  A crash, leak or timeout leaves its input in
# build/fuzz/<name>-crash-* (or -leak-, -timeout-, -oom-) and the log in
# build/fuzz/<name>.log.  Every harness runs; the status is 1 when any of
# them found something.  FUZZ_ARGS adds libFuzzer options.
set -u
cd "$(dirname "$0")/../.."
D=build/fuzz
secs=${FUZZ_SECONDS:-60}
bad=""

printf '%-12s %10s %8s %6s %7s %7s  %s\n' harness execs exec/s cov ft corpus result
for name in "$@"; do
    bin=$D/fuzz_$name
    work=$D/corpus/$name
    seeds=tests/fuzz/corpus/$name
    log=$D/$name.log
    mkdir -p "$work"
    [ -d "$seeds" ] || seeds=""
    dict=""
    [ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
    case $name in
        config|bounce) maxlen=16384 ;;
        passwd) maxlen=32768 ;;
        *) maxlen=4096 ;;
    esac
    # shellcheck disable=SC2086  # FUZZ_ARGS and dict are option lists
    "$bin" -max_total_time="$secs" -timeout=10 -max_len=$maxlen \
        -print_final_stats=1 -artifact_prefix="$D/$name-" $dict ${FUZZ_ARGS:-} \
        "$work" $seeds >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\) ft: \([0-9]*\) .*/\1 \2/p' "$log" | tail -1)
    units=$(find "$work" -type f | wc -l)
    result=ok
    [ "$rc" -eq 0 ] || result="FOUND (exit $rc)"
    # shellcheck disable=SC2086  # cov is "cov ft"
    printf '%-12s %10s %8s %6s %7s %7s  %s\n' "$name" "${execs:-?}" "${speed:-?}" \
        ${cov:-? ?} "$units" "$result"
    if [ "$rc" -ne 0 ]; then
        bad="$bad $name"
        grep -v '^#[0-9]' "$log" | tail -60
        sed -n 's/.*Test unit written to /  input: /p' "$log"
    fi
done
if [ -n "$bad" ]; then
    echo "fuzz: findings in:$bad (inputs and logs in $D/)"
    exit 1
fi
echo "fuzz: no findings"
