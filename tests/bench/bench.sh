#!/bin/sh
# bench.sh - accept throughput of one Selor node against Postfix (`make bench`).
#
# Starts one Selor node (build/selor, passwd module, a real local mailbox)
# and a private Postfix instance (every transport = discard) on free
# loopback ports in a private directory under /tmp, sends the same load to
# both with Postfix's smtp-source (20 parallel sessions, 1 KB messages, one
# message per connection), and reports messages/s for each.  Both queues
# are durable: Selor fsyncs content, envelope and spool directory before
# its 250, Postfix fsyncs its queue file before its 250.
#
# Usage: sh tests/bench/bench.sh [options]
#   --msgs N       messages in each measured run (default: sized from the
#                  warm-up so that a run takes about --seconds)
#   --seconds S    target length of a measured run (default 20)
#   --warmup N     messages in the warm-up run before each measurement (2000)
#   --rounds K     measure K times, alternating Selor and Postfix (default 1)
#   --fsync        also measure the raw ceiling of write+fsync+rename of 1 KB
#                  files in the same directory, with 1 and 8 writers
#   --no-postfix   measure Selor only
#   --keep         keep the work directory (its path is printed)
#
# Environment: BENCH_OPTS (options read before the command line's, e.g.
# BENCH_OPTS="--fsync --rounds 3" make bench), SELOR_BIN (default build/selor), SELOR_MODULE (default
# build/mod/selor_passwd.so), SMTP_SOURCE (default /usr/sbin/smtp-source).
#
# The last line is the result, e.g.
#   accept: selor 1834 msg/s, postfix 362 msg/s, ratio 5.07x
# Exit status: 0 when the run completed (the ratio target is reported, not
# enforced); 1 when Selor failed under the load (errors from smtp-source,
# fewer queue files than messages sent, a crash or a warning in its logs);
# 2 on a usage or set-up error.

# Word splitting of $(...) and of rate lists is deliberate; functions run
# from the traps look unreachable to shellcheck.
# shellcheck disable=SC2046,SC2086,SC2317
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
LIB="$ROOT/tests/bench/benchlib.py"
SELOR="${SELOR_BIN:-$ROOT/build/selor}"
MODULE="${SELOR_MODULE:-$ROOT/build/mod/selor_passwd.so}"
SMTP_SOURCE="${SMTP_SOURCE:-/usr/sbin/smtp-source}"

SESSIONS=20
SIZE=1024
SENDER=sender@bench.test
RCPT=bench@bench.test
MSGS=""
SECONDS_TARGET=20
WARMUP=2000
ROUNDS=1
DO_FSYNC=0
DO_POSTFIX=1
KEEP=0

usage() {
    sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

# options from the environment first (make bench passes none of its own)
set -- ${BENCH_OPTS:-} "$@"
while [ $# -gt 0 ]; do
    case "$1" in
    --msgs) MSGS=$2; shift 2 ;;
    --seconds) SECONDS_TARGET=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --fsync) DO_FSYNC=1; shift ;;
    --no-postfix) DO_POSTFIX=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage ;;
    *) echo "bench: unknown option $1" >&2; usage ;;
    esac
done

say() { echo "bench: $*"; }
# calc FORMAT EXPR: floating-point arithmetic through awk
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

for f in "$SELOR" "$MODULE" "$SMTP_SOURCE" "$PY"; do
    if [ ! -e "$f" ]; then
        echo "bench: $f not found (run make first)" >&2
        exit 2
    fi
done

START=$(date +%s)
W=$(mktemp -d /tmp/selor-bench.XXXXXX) || exit 2
chmod 755 "$W"
# ext4 without a journal (as on the machine this was written on) makes a
# new inode skip every inode of its block group deleted in the last minute
# or more, and a new directory goes to its parent's group: right after an
# earlier run's clean-up (or anybody's rm -rf under /tmp) file creation is
# several times slower.  Under a +T directory, a new directory goes to the
# emptiest group found from a hash of its name, so the directories made in
# here get random names (mkdir_rand): a fixed name would land in the group
# the previous run has just emptied.
chattr +T "$W" 2>/dev/null || true
# mkdir_rand PREFIX: a new world-readable directory $W/PREFIX.XXXXXX
mkdir_rand() {
    d=$(mktemp -d "$W/$1.XXXXXX") || exit 2
    chmod 755 "$d"
    echo "$d"
}
SELOR_PID=""
LOAD_PID=""
PF_CONF=""
PF_STARTED=0

# ---------------------------------------------------------------- cleanup

stop_selor() {
    [ -n "$SELOR_PID" ] || return 0
    if kill -0 "$SELOR_PID" 2>/dev/null; then
        kill -TERM "$SELOR_PID" 2>/dev/null
        i=0
        while kill -0 "$SELOR_PID" 2>/dev/null && [ $i -lt 400 ]; do
            sleep 0.1; i=$((i + 1))
        done
        if kill -0 "$SELOR_PID" 2>/dev/null; then
            say "selor did not stop on SIGTERM within 40 s; killing its process group"
        fi
    fi
    # the node runs in its own session (setsid): whatever is left of its
    # process group after the master is gone is a straggler
    if pgrep -g "$SELOR_PID" >/dev/null 2>&1; then
        kill -KILL -- "-$SELOR_PID" 2>/dev/null
    fi
    wait "$SELOR_PID" 2>/dev/null
    SELOR_PID=""
}

stop_postfix() {
    [ "$PF_STARTED" = 1 ] || return 0
    pid=$(tr -d ' ' < "$PF_QUEUE/pid/master.pid" 2>/dev/null)
    postfix -c "$PF_CONF" stop >/dev/null 2>&1
    i=0
    while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do
        sleep 0.1; i=$((i + 1))
    done
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        postfix -c "$PF_CONF" abort >/dev/null 2>&1
    fi
    PF_STARTED=0
}

cleanup() {
    if [ -n "$LOAD_PID" ]; then
        kill -TERM "$LOAD_PID" 2>/dev/null
        wait "$LOAD_PID" 2>/dev/null
    fi
    stop_selor
    stop_postfix
    if [ "$KEEP" = 1 ]; then
        say "work directory kept: $W"
    else
        rm -rf "$W"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------- load

# run_load PORT N OUTFILE: sends N messages; sets LOAD_RC, ELAPSED (wall
# clock of smtp-source, s), CLIENT_CPU (its CPU, s), MACH_CPU (busy CPU
# seconds of the whole machine meanwhile) and IOWAIT (% of the CPU time).
run_load() {
    s0=$("$PY" "$LIB" stat)
    # in the background, so that a signal reaches the trap at once
    "$PY" "$LIB" run "$3.time" "$SMTP_SOURCE" -s "$SESSIONS" -l "$SIZE" -m "$2" \
        -f "$SENDER" -t "$RCPT" "127.0.0.1:$1" > "$3" 2>&1 &
    LOAD_PID=$!
    wait "$LOAD_PID"
    LOAD_RC=$?
    LOAD_PID=""
    set -- $(cat "$3.time" 2>/dev/null || echo 0 0) $s0 $("$PY" "$LIB" stat)
    ELAPSED=$(calc %.3f "$1")
    CLIENT_CPU=$2
    MACH_CPU=$(calc %.2f "$6 - $3")
    IOWAIT=$(calc %.0f "100 * ($8 - $5) / ($6 - $3 + $7 - $4 + $8 - $5 + 0.01)")
}

# cpu_report SERVER_CPU N: where the CPU went during the last run.  "rest"
# is kernel threads (writeback, ...) and whatever else runs on the machine.
cpu_report() {
    rest=$(calc %.2f "($MACH_CPU - $1 - $CLIENT_CPU) / $ELAPSED")
    note=""
    if awk -v r="$rest" 'BEGIN { exit !(r > 0.4) }'; then
        note=" (other work on the machine may have slowed this run)"
    fi
    echo "CPU: server $(calc %.1f "$1") s = $(calc %.2f "$1 / $ELAPSED") cores," \
         "$(calc %.0f "$1 * 1000000 / $2") us/msg; smtp-source $(calc %.2f "$CLIENT_CPU / $ELAPSED") cores;" \
         "rest $rest cores; iowait $IOWAIT%$note"
}

# size_run N ELAPSED: messages for a measured run of about SECONDS_TARGET s,
# from a run of N messages that took ELAPSED s
size_run() {
    if [ -n "$MSGS" ]; then
        echo "$MSGS"
        return
    fi
    awk -v w="$1" -v e="$2" -v s="$SECONDS_TARGET" 'BEGIN {
        n = int(w / e * s / 1000 + 0.5) * 1000
        if (n < 10000) n = 10000
        if (n > 200000) n = 200000
        print n }'
}

# ---------------------------------------------------------------- Selor

SD=$(mkdir_rand selor)
SPOOL="$SD/spool"
SLOG="$SD/log"
SPORT=$("$PY" "$LIB" freeport)
printf 'bench@bench.test:{PLAIN}x::::::\n' > "$SD/passwd"
chmod 644 "$SD/passwd"
{
    echo "# written by tests/bench/bench.sh"
    echo "Port $SPORT"
    echo "Bind_address \"127.0.0.1\""
    echo "Server_name \"mx.bench.test\""
    echo "Sid \"1\""
    if [ "$(id -u)" -eq 0 ]; then
        echo "User \"selor\""
        echo "Group \"selor\""
    fi
    echo "Queue_path \"$SPOOL\""
    echo "Temp_path \"$SPOOL/tmp\""
    echo "Cp_errors_path \"$SPOOL/errors\""
    echo "Pid_file \"$SD/run/selor.pid\""
    echo "Central_log \"$SLOG/selor.log\""
    echo "Summary_log \"$SLOG/summary.log\""
    echo "Warning_log \"$SLOG/warning.log\""
    echo "Refused_log \"$SLOG/refused.log\""
    echo "Module \"$MODULE\""
    echo "Passwd_file \"$SD/passwd\""
    echo "Resolve_all 0"
    echo "From_level_check 0"
    echo "Qsleep_time 3600"
    # accept only: delivery is left to the queue process, which does not
    # scan during the run (Qsleep_time), so every message stays in the spool
    echo "Immed_delivery 0"
} > "$SD/selor.conf"

if ! "$SELOR" -t -c "$SD/selor.conf" > "$SD/check.out" 2>&1; then
    say "selor -t -c $SD/selor.conf failed:"
    cat "$SD/check.out"
    exit 2
fi

say "work directory $W; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
say "selor: starting $SELOR on 127.0.0.1:$SPORT"
setsid "$SELOR" -f -c "$SD/selor.conf" > "$SD/stderr.log" 2>&1 &
SELOR_PID=$!
if ! "$PY" "$LIB" wait-smtp "$SPORT" 30; then
    say "selor did not start; its standard error:"
    cat "$SD/stderr.log"
    exit 2
fi
sleep 0.5
SELOR_TREE=$("$PY" "$LIB" tree "$SELOR_PID" | sort | tr '\n' ' ')
say "selor: processes $SELOR_TREE"

# A message to the mailbox must be accepted before anything is timed.
if ! "$SMTP_SOURCE" -m 1 -l "$SIZE" -f "$SENDER" -t "$RCPT" "127.0.0.1:$SPORT" \
        > "$SD/probe.out" 2>&1; then
    say "selor refused the probe message:"
    cat "$SD/probe.out"
    tail -n 20 "$SLOG/selor.log" "$SLOG/refused.log" 2>/dev/null
    exit 1
fi
SELOR_EXPECT=1

# Lines written so far: a run is judged by what it adds.  Warnings from the
# start-up are shown once, and are not a failure under load.
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
WARN_BASE=$(lines "$SLOG/warning.log")
ERR_BASE=$(lines "$SD/stderr.log")
if grep -Eq 'warning:|fatal:|panic:' "$SLOG/warning.log" 2>/dev/null; then
    say "selor: warnings at start-up (not counted as a failure):"
    grep -E 'warning:|fatal:|panic:' "$SLOG/warning.log" | sed 's/^/    /'
fi
# new_lines FILE BASE: the lines FILE gained since it had BASE lines
new_lines() { tail -n "+$(($2 + 1))" "$1" 2>/dev/null; }

# selor_check LABEL OUTFILE N: verifies the node after a run of N messages.
selor_check() {
    ok=1
    if [ "$LOAD_RC" -ne 0 ] || [ -s "$2" ]; then
        say "selor $1: smtp-source exited $LOAD_RC; its output:"
        sed 's/^/    /' "$2" | head -n 20
        ok=0
    fi
    set -- "$1" "$2" "$3" $("$PY" "$LIB" count-queue "$SPOOL")
    if [ "$4" -ne "$SELOR_EXPECT" ] || [ "$5" -ne "$SELOR_EXPECT" ]; then
        say "selor $1: expected $SELOR_EXPECT l and c files in $SPOOL, found $4 l and $5 c files"
        ok=0
    fi
    acc=$(grep -c ' accepted from=' "$SLOG/summary.log" 2>/dev/null)
    if [ "${acc:-0}" -ne "$SELOR_EXPECT" ]; then
        say "selor $1: summary log has ${acc:-0} accepted lines, expected $SELOR_EXPECT"
        ok=0
    fi
    if ! kill -0 "$SELOR_PID" 2>/dev/null; then
        say "selor $1: the master process $SELOR_PID is gone"
        ok=0
    fi
    tree=$("$PY" "$LIB" tree "$SELOR_PID" | sort | tr '\n' ' ')
    if [ "$tree" != "$SELOR_TREE" ]; then
        say "selor $1: processes changed from [$SELOR_TREE] to [$tree] (a child died and was restarted?)"
        ok=0
    fi
    if new_lines "$SLOG/warning.log" "$WARN_BASE" | grep -Eq 'warning:|fatal:|panic:'; then
        say "selor $1: warning log:"
        new_lines "$SLOG/warning.log" "$WARN_BASE" | grep -E 'warning:|fatal:|panic:' |
            tail -n 20 | sed 's/^/    /'
        ok=0
    fi
    if new_lines "$SD/stderr.log" "$ERR_BASE" | grep -Evq ' info: '; then
        say "selor $1: standard error:"
        new_lines "$SD/stderr.log" "$ERR_BASE" | grep -Ev ' info: ' | tail -n 20 | sed 's/^/    /'
        ok=0
    fi
    if [ -s "$SLOG/refused.log" ]; then
        say "selor $1: refused log:"
        tail -n 10 "$SLOG/refused.log" | sed 's/^/    /'
        ok=0
    fi
    [ $ok = 1 ]
}

# ---------------------------------------------------------------- Postfix

PF_REASON=""
PF=""
PF_CONF=""
PF_QUEUE=""
PF_LOG=""

postfix_setup() {
    if [ "$DO_POSTFIX" = 0 ]; then
        PF_REASON="--no-postfix given"; return 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        PF_REASON="a private Postfix needs root to start"; return 1
    fi
    if ! command -v postfix >/dev/null 2>&1; then
        PF_REASON="postfix is not installed (make deps)"; return 1
    fi
    if ! getent passwd postfix >/dev/null || ! getent group postdrop >/dev/null; then
        PF_REASON="the postfix user or the postdrop group is missing"; return 1
    fi
    PPORT=$("$PY" "$LIB" freeport)
    PF=$(mkdir_rand postfix)
    PF_CONF="$PF/conf"
    PF_QUEUE="$PF/queue"
    PF_LOG="$PF/maillog"
    mkdir -p "$PF_CONF" "$PF_QUEUE" "$PF/data"
    chmod 755 "$PF_CONF" "$PF_QUEUE"
    chown postfix "$PF/data"
    # Defaults everywhere else: the queue file is fsynced before the 250.
    cat > "$PF_CONF/main.cf" <<EOF
# written by tests/bench/bench.sh
compatibility_level = 3.6
queue_directory = $PF_QUEUE
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = bench.test
default_transport = discard
relay_transport = discard
local_transport = discard
virtual_transport = discard
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
local_recipient_maps =
biff = no
maillog_file = $PF_LOG
maillog_file_prefixes = $W
EOF
    # Only an smtpd on 127.0.0.1:PPORT listens; nothing is chrooted.
    cat > "$PF_CONF/master.cf" <<EOF
# written by tests/bench/bench.sh
127.0.0.1:$PPORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
    say "postfix: starting a private instance on 127.0.0.1:$PPORT ($PF_CONF)"
    # Postfix commands write their errors to standard error only when it is
    # a terminal (else to the log): give them one when script(1) is there.
    if command -v script >/dev/null 2>&1; then
        set -- script -qec "postfix -c '$PF_CONF' start" /dev/null
    else
        set -- postfix -c "$PF_CONF" start
    fi
    if ! "$@" > "$PF/start.out" 2>&1 < /dev/null; then
        PF_STARTED=1   # a master may be half up: stop_postfix cleans up
        PF_REASON="postfix -c $PF_CONF start failed: $(cat "$PF/start.out" 2>/dev/null; grep -E 'fatal|error' "$PF_LOG" 2>/dev/null | tail -n 3)"
        return 1
    fi
    PF_STARTED=1
    if ! "$PY" "$LIB" wait-smtp "$PPORT" 30; then
        PF_REASON="postfix did not greet on 127.0.0.1:$PPORT: $(tail -n 5 "$PF_LOG" 2>/dev/null)"
        return 1
    fi
    PF_MASTER=$(tr -d ' ' < "$PF_QUEUE/pid/master.pid")
    return 0
}

# postfix_drain: waits until the private queue is empty (not timed).
postfix_drain() {
    i=0
    while [ $i -lt 600 ]; do
        if postqueue -c "$PF_CONF" -p 2>/dev/null | grep -q '^Mail queue is empty'; then
            return 0
        fi
        sleep 0.5; i=$((i + 1))
    done
    return 1
}

PF_EXPECT=0
PF_BAD=""
# postfix_check LABEL OUTFILE: verifies that Postfix took and discarded all.
postfix_check() {
    if [ "$LOAD_RC" -ne 0 ] || [ -s "$2" ]; then
        PF_BAD="$1: smtp-source exited $LOAD_RC: $(head -n 3 "$2")"
    fi
    if ! postfix_drain; then
        PF_BAD="$PF_BAD $1: the queue did not drain in 300 s"
    fi
    i=0   # postlogd may write the last lines a moment later
    while sent=$(grep -c 'postfix/discard\[.*status=sent' "$PF_LOG") &&
          [ "$sent" -lt "$PF_EXPECT" ] && [ $i -lt 50 ]; do
        sleep 0.2; i=$((i + 1))
    done
    if [ "$sent" -ne "$PF_EXPECT" ]; then
        PF_BAD="$PF_BAD $1: $sent messages discarded, expected $PF_EXPECT"
    fi
    if [ -n "$PF_BAD" ]; then
        say "postfix: $PF_BAD"
        return 1
    fi
    return 0
}

PF_OK=0
if postfix_setup; then
    PF_OK=1
else
    say "postfix: not measured: $PF_REASON"
fi

# ---------------------------------------------------------------- runs

cpu() { "$PY" "$LIB" cpu "$1"; }

# selor_run LABEL N: one run against Selor, verified; sets RATE.  Exits 1
# (keeping the work directory) when Selor failed under the load.
selor_run() {
    c0=$(cpu "$SELOR_PID")
    run_load "$SPORT" "$2" "$SD/$1.out"
    c1=$(cpu "$SELOR_PID")
    SELOR_EXPECT=$((SELOR_EXPECT + $2))
    if ! selor_check "$1" "$SD/$1.out" "$2"; then
        say "selor FAILED in $1: $SMTP_SOURCE -s $SESSIONS -l $SIZE -m $2 -f $SENDER -t $RCPT 127.0.0.1:$SPORT"
        KEEP=1
        exit 1
    fi
    RATE=$(calc %.0f "$2 / $ELAPSED")
    say "selor $1: $2 messages in $ELAPSED s = $RATE msg/s"
    say "    $(cpu_report "$(calc %.2f "$c1 - $c0")" "$2")"
}

# postfix_run LABEL N: one run against Postfix, verified; sets RATE, or
# clears PF_OK when Postfix did not take every message.
postfix_run() {
    c0=$(cpu "$PF_MASTER")
    run_load "$PPORT" "$2" "$PF/$1.out"
    c1=$(cpu "$PF_MASTER")
    PF_EXPECT=$((PF_EXPECT + $2))
    RATE=$(calc %.0f "$2 / $ELAPSED")
    # CPU up to the end of smtp-source: delivery that continues afterwards
    # (the queue is drained before the next run, untimed) is not counted
    pel=$ELAPSED
    pcpu=$(cpu_report "$(calc %.2f "$c1 - $c0")" "$2")
    if postfix_check "$1" "$PF/$1.out"; then
        say "postfix $1: $2 messages in $pel s = $RATE msg/s"
        say "    $pcpu"
    else
        PF_OK=0
        PF_REASON="$1 failed: $PF_BAD"
        RATE=""
    fi
}

# short ELAPSED: true when a measured run was too short to count, in which
# case it is taken as a further warm-up and N is sized again from it.
short() {
    [ -z "$MSGS" ] && awk -v e="$1" -v s="$SECONDS_TARGET" 'BEGIN { exit !(e < s / 2) }'
}

SELOR_RATES=""
PF_RATES=""
SN=""
PN=""

# Each round: Selor, then Postfix; the first round of each starts with a
# warm-up that also sizes the measured runs.  Selor goes first because
# Postfix deletes every file it delivered, and on ext4 without a journal
# (as here) new inodes avoid recently deleted ones for a minute or more,
# which slows whoever creates files next.
r=1
while [ $r -le "$ROUNDS" ]; do
    if [ -z "$SN" ]; then
        say "selor: warm-up, $WARMUP messages"
        selor_run warmup "$WARMUP"
        SN=$(size_run "$WARMUP" "$ELAPSED")
        say "selor: measured runs send $SN messages"
    fi
    selor_run "run$r" "$SN"
    if short "$ELAPSED"; then
        SN=$(size_run "$SN" "$ELAPSED")
        say "selor run$r took under $(calc %g "$SECONDS_TARGET / 2") s: not counted; measured runs now send $SN messages"
        selor_run "run$r" "$SN"
    fi
    SELOR_RATES="$SELOR_RATES $RATE"

    if [ "$PF_OK" = 1 ] && [ -z "$PN" ]; then
        say "postfix: warm-up, $WARMUP messages"
        postfix_run warmup "$WARMUP"
        if [ "$PF_OK" = 1 ]; then
            PN=$(size_run "$WARMUP" "$ELAPSED")
            say "postfix: measured runs send $PN messages"
        fi
    fi
    if [ "$PF_OK" = 1 ]; then
        postfix_run "run$r" "$PN"
        if [ "$PF_OK" = 1 ] && short "$pel"; then
            PN=$(size_run "$PN" "$pel")
            say "postfix run$r took under $(calc %g "$SECONDS_TARGET / 2") s: not counted; measured runs now send $PN messages"
            postfix_run "run$r" "$PN"
        fi
        [ "$PF_OK" = 1 ] && PF_RATES="$PF_RATES $RATE"
    fi
    r=$((r + 1))
done

# median of a list of numbers
median() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -n |
           awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2];
                 else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

SRATE=$(median $SELOR_RATES)
ERR_BASE=$(lines "$SD/stderr.log")
stop_selor
if new_lines "$SD/stderr.log" "$ERR_BASE" | grep -Evq ' info: '; then
    say "selor: standard error while stopping:"
    new_lines "$SD/stderr.log" "$ERR_BASE" | grep -Ev ' info: ' | tail -n 20 | sed 's/^/    /'
fi
stop_postfix

FSYNC_LINE=""
if [ "$DO_FSYNC" = 1 ]; then
    # each in a directory of its own, in a group nobody deleted from
    set -- $("$PY" "$LIB" fsync "$(mkdir_rand fsync1)" 1 5)
    f1=$3
    set -- $("$PY" "$LIB" fsync "$(mkdir_rand fsync8)" 8 5)
    f8=$3
    FSYNC_LINE="fsync ceiling (write+fsync+rename of 1 KB files, 5 s each): 1 writer $f1 files/s, 8 writers $f8 files/s; selor = $(calc %.2f "$SRATE / $f8") of the 8-writer ceiling"
fi

say "finished in $(( $(date +%s) - START )) s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$ROUNDS" -gt 1 ] && say "selor runs:$SELOR_RATES msg/s; postfix runs:${PF_RATES:- none} msg/s (medians below)"
[ -n "$FSYNC_LINE" ] && echo "$FSYNC_LINE"
if [ "$PF_OK" = 1 ] && [ -n "$PF_RATES" ]; then
    PRATE=$(median $PF_RATES)
    echo "accept: selor $SRATE msg/s, postfix $PRATE msg/s, ratio $(calc %.2f "$SRATE / $PRATE")x"
else
    echo "postfix not measured: $PF_REASON"
    echo "accept: selor $SRATE msg/s"
fi
exit 0
