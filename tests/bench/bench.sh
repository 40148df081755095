#!/bin/sh
# bench.sh - Selor against Postfix, in the same run (`make bench`).
#
# Six measurements, each on free loopback ports in a private directory
# under /tmp, with Postfix's smtp-source as the client (20 parallel
# sessions, 1 KB messages, one message per connection):
#
# 1. accept: one Selor node (passwd module, a real local mailbox, nothing
#    delivered) and a private Postfix instance (every transport = discard)
#    get the same load; messages/s for each.  Both queues are durable:
#    Selor fsyncs content, envelope and spool directory before its 250,
#    Postfix fsyncs its queue file before its 250.
# 2. end-to-end: the same load relayed to Postfix's smtp-sink, timed from
#    the first message sent until the sink has received the last: one Selor
#    node (an alias forwards the mailbox to a remote address, Relay_host is
#    the sink, Immed_delivery 2) against a private Postfix relaying to the
#    sink (relayhost).
# 3. cluster (when redis-server is installed): accept rate of three nodes
#    on one shared spool and one Redis (three smtp-source, one per node)
#    against one node with Redis (the same three smtp-source, all to it);
#    and Redis round trips per message, accepted (Immed_delivery 0) and
#    delivered (selorctl flush on each node, until the spool is empty).
# 4. accept with STARTTLS: the accept load of 1., each message on its own
#    connection with STARTTLS (a Python ssl client: smtp-source has no TLS),
#    against one Selor node (selor_tls.so) and a private Postfix
#    (smtpd_tls_security_level = may), the same certificate and key; and the
#    memory of a node holding 5,000 idle sessions that did STARTTLS.
# 5. pgsql (selor_pgsql.so, a private PostgreSQL 15 started by the script):
#    RCPT lookups per second through the pgsql module (20 sessions of
#    pipelined RCPTs to random addresses among 1000 mailboxes; each RCPT
#    is a DOMAIN and a MAILBOX lookup) with Pgsql_cache_ttl 30 and 0; and
#    the accept rate of 1. with the pgsql module (cache on and off) against
#    the same node with the passwd module, in the same run.
# 6. rules: the accept load of 1. (passwd module) against one node with 50
#    rules (an ISP's Event.from, Event.rcpt and Event.data files, written
#    in the work directory: Ip? addresses, networks and prefixes, From? and
#    To? patterns, Size?, Itest? on the score; a few of them add hits for
#    the bench's client, sender and recipient, none refuses or logs) and
#    against the same node without rules, both up, in the same run:
#    --rules-rounds rounds, alternating (without, with; with, without;
#    without, with; ...); the medians.
# 7. milter (when python3-milter is installed): the accept load of 1.
#    against one node calling an accept-everything milter
#    (tests/system/testmilter.py: libmilter through python3-milter, CONTINUE
#    at every step, ACCEPT at the end of the message, one milter connection
#    per session) and against the same node without it, both up, in the
#    same run: --milter-rounds rounds alternating as in 6.; the medians.
#    Short runs: the Python milter, not Selor, sets the pace.
#
# Usage: sh tests/bench/bench.sh [options]
#   --msgs N       messages in each measured accept run (default: sized from
#                  the warm-up so that a run takes about --seconds)
#   --seconds S    target length of a measured accept run (default 20)
#   --warmup N     messages in the warm-up before each accept measurement
#                  (2000)
#   --rounds K     measure accepting K times, alternating Selor and Postfix
#                  (default 1)
#   --e2e-msgs N   messages in each measured end-to-end run (default 10000;
#                  each server first gets a warm-up of 1000)
#   --cluster-msgs N  messages in each measured cluster accept run, a
#                  multiple of 3 (default 9000)
#   --fsync        also measure the raw ceiling of write+fsync+rename of 1 KB
#                  files in the same directory, with 1 and 8 writers
#   --no-postfix   measure Selor only
#   --no-accept    skip the accept measurement
#   --no-e2e       skip the end-to-end measurement
#   --no-cluster   skip the cluster measurements
#   --no-tls       skip the STARTTLS measurements
#   --tls-msgs N   messages in each measured STARTTLS run (default 4000)
#   --no-pgsql     skip the pgsql measurements
#   --pgsql-msgs N messages in each pgsql/passwd accept run (default 10000)
#   --pgsql-seconds S  length of each RCPT lookup run (default 10)
#   --no-rules     skip the rules measurement
#   --rules-msgs N messages in each rules/no-rules accept run (default 10000;
#                  each node first gets a warm-up of 1000)
#   --rules-rounds K  rounds of the rules measurement (default 3; more on a
#                  busy machine: the ratio of two identical nodes varies
#                  by 10-15% from run to run when other work competes)
#   --no-milter    skip the milter measurement
#   --milter-msgs N   messages in each milter/no-milter accept run (default
#                  2000; each node first gets a warm-up of 200)
#   --milter-rounds K rounds of the milter measurement (default 2)
#   --keep         keep the work directory (its path is printed)
#
# Environment: BENCH_OPTS (options read before the command line's, e.g.
# BENCH_OPTS="--fsync --rounds 3" make bench), SELOR_BIN (default
# build/selor), SELORCTL_BIN (default build/selorctl), SELOR_MODULE
# (default build/mod/selor_passwd.so), SELOR_EXTRA_CONF (lines added to
every node's selor.conf, e.g. 'Spool_flush "fsync"'), SMTP_SOURCE (default
# /usr/sbin/smtp-source), SMTP_SINK (default /usr/sbin/smtp-sink).
#
# The last line is the accept result, e.g.
#   accept: selor 1834 msg/s, postfix 362 msg/s, ratio 5.07x
# and the lines before it the others, e.g.
#   rules: 50 rules 1712 msg/s, no rules 1790 msg/s, ratio 0.96
#   milter: accept-all milter 820 msg/s, no milter 1790 msg/s, ratio 0.46
#   end-to-end: selor 969 msg/s, postfix 814 msg/s, ratio 1.19x;
#     connections per 1000 messages: selor 2, postfix 3      (one line)
#   cluster: redis round trips per message: accept 2.16, delivery 5.89 (3.57
#     of them the flushes); commands run by Redis, the scripts' included:
#     accept 7.65, delivery 36.17      (one line)
#   cluster: 3 nodes 2170 msg/s, 1 node 2644 msg/s, ratio 0.82
# Exit status: 0 when the run completed (no target is enforced); 1 when
# Selor failed under the load (errors from smtp-source, queue files missing
# or left over, a message not delivered or delivered twice, a crash or a
# warning in its logs); 2 on a usage or set-up error.

# Word splitting of $(...) and of rate lists is deliberate; functions run
# from the traps look unreachable to shellcheck.
# shellcheck disable=SC2046,SC2086,SC2317
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
LIB="$ROOT/tests/bench/benchlib.py"
SELOR="${SELOR_BIN:-$ROOT/build/selor}"
SELORCTL="${SELORCTL_BIN:-$ROOT/build/selorctl}"
MODULE="${SELOR_MODULE:-$ROOT/build/mod/selor_passwd.so}"
SMTP_SOURCE="${SMTP_SOURCE:-/usr/sbin/smtp-source}"
SMTP_SINK="${SMTP_SINK:-/usr/sbin/smtp-sink}"

SESSIONS=20
SIZE=1024
SENDER=sender@bench.test
RCPT=bench@bench.test
# the mailbox of the accept run, and the alias of the delivering runs
MAILBOX='bench@bench.test:{PLAIN}x::::::'
# the sender's mailbox, in every node's passwd file: a sender of one of the
# node's domains must exist (From_level_check 0 checks it with the modules)
SENDER_BOX='sender@bench.test:{PLAIN}x::::::'
FORWARD='bench@bench.test:{ALIAS}bench@remote.bench'
MSGS=""
SECONDS_TARGET=20
WARMUP=2000
ROUNDS=1
E2E_MSGS=10000
E2E_WARMUP=1000
CLUSTER_MSGS=9000
CLUSTER_WARMUP=1500
CLUSTER_RT_MSGS=3000
LEASE=5
DO_FSYNC=0
DO_POSTFIX=1
DO_ACCEPT=1
DO_E2E=1
DO_CLUSTER=1
DO_TLS=1
TLS_MSGS=4000
DO_PGSQL=1
PG_MSGS=10000
PG_SECONDS=10
PG_KEYS=1000
DO_RULES=1
RULES_MSGS=10000
RULES_ROUNDS=3
RULES_WARMUP=1000
RULES_N=50
DO_MILTER=1
MILTER_MSGS=2000
MILTER_ROUNDS=2
MILTER_WARMUP=200
MILTER_PID=""
PGD=""
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
    --e2e-msgs) E2E_MSGS=$2; shift 2 ;;
    --cluster-msgs) CLUSTER_MSGS=$2; shift 2 ;;
    --fsync) DO_FSYNC=1; shift ;;
    --no-postfix) DO_POSTFIX=0; shift ;;
    --no-accept) DO_ACCEPT=0; shift ;;
    --no-e2e) DO_E2E=0; shift ;;
    --no-cluster) DO_CLUSTER=0; shift ;;
    --no-tls) DO_TLS=0; shift ;;
    --tls-msgs) TLS_MSGS=$2; shift 2 ;;
    --no-pgsql) DO_PGSQL=0; shift ;;
    --pgsql-msgs) PG_MSGS=$2; shift 2 ;;
    --pgsql-seconds) PG_SECONDS=$2; shift 2 ;;
    --no-rules) DO_RULES=0; shift ;;
    --rules-msgs) RULES_MSGS=$2; shift 2 ;;
    --rules-rounds) RULES_ROUNDS=$2; shift 2 ;;
    --no-milter) DO_MILTER=0; shift ;;
    --milter-msgs) MILTER_MSGS=$2; shift 2 ;;
    --milter-rounds) MILTER_ROUNDS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage ;;
    *) echo "bench: unknown option $1" >&2; usage ;;
    esac
done
for v in "$E2E_MSGS" "$CLUSTER_MSGS" "$RULES_MSGS" "$RULES_ROUNDS" "$MILTER_MSGS" \
         "$MILTER_ROUNDS"; do
    case "$v" in
    ''|*[!0-9]*) echo "bench: $v is not a number" >&2; exit 2 ;;
    esac
done
if [ "$RULES_MSGS" -lt 1 ] || [ "$RULES_ROUNDS" -lt 1 ]; then
    echo "bench: --rules-msgs and --rules-rounds must be at least 1" >&2
    exit 2
fi
if [ "$MILTER_MSGS" -lt 1 ] || [ "$MILTER_ROUNDS" -lt 1 ]; then
    echo "bench: --milter-msgs and --milter-rounds must be at least 1" >&2
    exit 2
fi
if [ "$CLUSTER_MSGS" -lt 3 ] || [ $((CLUSTER_MSGS % 3)) -ne 0 ]; then
    echo "bench: --cluster-msgs must be a multiple of 3" >&2
    exit 2
fi

say() { echo "bench: $*"; }
# calc FORMAT EXPR: floating-point arithmetic through awk
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

for f in "$SELOR" "$SELORCTL" "$MODULE" "$SMTP_SOURCE" "$PY"; do
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
LOAD_PID=""
WAIT_PID=""
MON_PID=""
SINK_PID=""
REDIS_PID=""
PF_CONF=""
PF_STARTED=0

# ---------------------------------------------------------------- nodes
#
# A node lives in a directory ND of its own: selor.conf, passwd, port, pid
# (of the master), tree (its processes after the start), log/ and the
# line counts of its logs when a run began.  $W/nodes lists every node
# started, for the clean-up.

# node_conf ND SID SPOOL PASSWD_LINE: writes ND/selor.conf, with the extra
# lines read from standard input; the passwd file has PASSWD_LINE and the
# sender's mailbox
node_conf() {
    mkdir -p "$1"
    chmod 755 "$1"
    "$PY" "$LIB" freeport > "$1/port"
    printf '%s\n%s\n' "$4" "$SENDER_BOX" > "$1/passwd"
    chmod 644 "$1/passwd"
    {
        echo "# written by tests/bench/bench.sh"
        echo "Port $(cat "$1/port")"
        echo "Bind_address \"127.0.0.1\""
        echo "Server_name \"mx$2.bench.test\""
        echo "Sid \"$2\""
        if [ "$(id -u)" -eq 0 ]; then
            echo "User \"selor\""
            echo "Group \"selor\""
        fi
        echo "Queue_path \"$3\""
        echo "Temp_path \"$3/tmp\""
        echo "Cp_errors_path \"$3/errors\""
        echo "Pid_file \"$1/run/selor.pid\""
        echo "Central_log \"$1/log/selor.log\""
        echo "Summary_log \"$1/log/summary.log\""
        echo "Warning_log \"$1/log/warning.log\""
        echo "Refused_log \"$1/log/refused.log\""
        echo "Module \"$MODULE\""
        echo "Passwd_file \"$1/passwd\""
        echo "Resolve_all 0"
        echo "From_level_check 0"
        cat
        [ -z "${SELOR_EXTRA_CONF:-}" ] || printf '%s\n' "$SELOR_EXTRA_CONF"
    } > "$1/selor.conf"
}

port() { cat "$1/port"; }
npid() { cat "$1/pid" 2>/dev/null; }

# node_start ND LABEL: starts the node and waits for its greeting
node_start() {
    if ! "$SELOR" -t -c "$1/selor.conf" > "$1/check.out" 2>&1; then
        say "selor -t -c $1/selor.conf failed:"
        cat "$1/check.out"
        exit 2
    fi
    say "$2: starting $SELOR on 127.0.0.1:$(port "$1")"
    setsid "$SELOR" -f -c "$1/selor.conf" > "$1/stderr.log" 2>&1 &
    echo $! > "$1/pid"
    echo "$1" >> "$W/nodes"
    if ! "$PY" "$LIB" wait-smtp "$(port "$1")" 30; then
        say "$2 did not start; its standard error:"
        cat "$1/stderr.log"
        exit 2
    fi
    sleep 0.5
    "$PY" "$LIB" tree "$(npid "$1")" | sort | tr '\n' ' ' > "$1/tree"
}

# node_probe ND LABEL: one message, which must be accepted before anything
# is timed
node_probe() {
    if ! "$SMTP_SOURCE" -m 1 -l "$SIZE" -f "$SENDER" -t "$RCPT" "127.0.0.1:$(port "$1")" \
            > "$1/probe.out" 2>&1; then
        say "$2 refused the probe message:"
        cat "$1/probe.out"
        tail -n 20 "$1/log/selor.log" "$1/log/refused.log" 2>/dev/null
        KEEP=1
        exit 1
    fi
}

# Lines written so far: a run is judged by what it adds.  Warnings from the
# start-up are shown once, and are not a failure under load.
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
# new_lines FILE BASE: the lines FILE gained since it had BASE lines
new_lines() { tail -n "+$(($2 + 1))" "$1" 2>/dev/null; }

# node_mark ND LABEL: from now on, a warning in the node's logs is a failure
node_mark() {
    lines "$1/log/warning.log" > "$1/warn_base"
    lines "$1/stderr.log" > "$1/err_base"
    if grep -Eq 'warning:|fatal:|panic:' "$1/log/warning.log" 2>/dev/null; then
        say "$2: warnings at start-up (not counted as a failure):"
        grep -E 'warning:|fatal:|panic:' "$1/log/warning.log" | sed 's/^/    /'
    fi
}

# node_health ND LABEL: the node is alive with the same processes, and
# wrote no warning, no standard error and no refusal since node_mark
node_health() {
    nh_ok=1
    nh_p=$(npid "$1")
    if ! kill -0 "$nh_p" 2>/dev/null; then
        say "$2: the master process $nh_p is gone"
        nh_ok=0
    fi
    nh_tree=$("$PY" "$LIB" tree "$nh_p" | sort | tr '\n' ' ')
    if [ "$nh_tree" != "$(cat "$1/tree")" ]; then
        say "$2: processes changed from [$(cat "$1/tree")] to [$nh_tree] (a child died and was restarted?)"
        nh_ok=0
    fi
    if new_lines "$1/log/warning.log" "$(cat "$1/warn_base")" | grep -Eq 'warning:|fatal:|panic:'; then
        say "$2: warning log:"
        new_lines "$1/log/warning.log" "$(cat "$1/warn_base")" |
            grep -E 'warning:|fatal:|panic:' | tail -n 20 | sed 's/^/    /'
        nh_ok=0
    fi
    if new_lines "$1/stderr.log" "$(cat "$1/err_base")" | grep -Evq ' info: '; then
        say "$2: standard error:"
        new_lines "$1/stderr.log" "$(cat "$1/err_base")" | grep -Ev ' info: ' |
            tail -n 20 | sed 's/^/    /'
        nh_ok=0
    fi
    if [ -s "$1/log/refused.log" ]; then
        say "$2: refused log:"
        tail -n 10 "$1/log/refused.log" | sed 's/^/    /'
        nh_ok=0
    fi
    [ $nh_ok = 1 ]
}

# node_stop ND: SIGTERM, then whatever is left of its process group
node_stop() {
    p=$(npid "$1")
    [ -n "$p" ] || return 0
    eb=$(lines "$1/stderr.log")
    if kill -0 "$p" 2>/dev/null; then
        kill -TERM "$p" 2>/dev/null
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 400 ]; do
            sleep 0.1; i=$((i + 1))
        done
        if kill -0 "$p" 2>/dev/null; then
            say "selor $p did not stop on SIGTERM within 40 s; killing its process group"
        fi
    fi
    # the node runs in its own session (setsid): whatever is left of its
    # process group after the master is gone is a straggler
    if pgrep -g "$p" >/dev/null 2>&1; then
        kill -KILL -- "-$p" 2>/dev/null
    fi
    wait "$p" 2>/dev/null
    rm -f "$1/pid"
    if new_lines "$1/stderr.log" "$eb" | grep -Evq ' info: '; then
        say "selor in $1: standard error while stopping:"
        new_lines "$1/stderr.log" "$eb" | grep -Ev ' info: ' | tail -n 20 | sed 's/^/    /'
    fi
}

# ---------------------------------------------------------------- cleanup

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

# stop_pid PID: SIGTERM to a helper process of ours, and reap it
stop_pid() {
    [ -n "$1" ] || return 0
    kill -TERM "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

cleanup() {
    stop_pid "$LOAD_PID"
    stop_pid "$WAIT_PID"
    stop_pid "$MON_PID"
    if [ -f "$W/nodes" ]; then
        while read -r nd; do
            node_stop "$nd"
        done < "$W/nodes"
    fi
    stop_postfix
    stop_pid "$SINK_PID"
    stop_pid "$REDIS_PID"
    # libmilter takes seconds to end on SIGTERM, and nothing of it is kept
    if [ -n "$MILTER_PID" ]; then
        kill -KILL "$MILTER_PID" 2>/dev/null
        wait "$MILTER_PID" 2>/dev/null
    fi
    [ -z "$PGD" ] || "$PY" "$LIB" pg-stop "$PGD"
    if [ "$KEEP" = 1 ]; then
        say "work directory kept: $W"
    else
        rm -rf "$W"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# fail MESSAGE: Selor failed under the load; the work directory is kept
fail() {
    say "selor FAILED: $*"
    KEEP=1
    exit 1
}

# ---------------------------------------------------------------- load

# timefile FILE: "<wall s> <CPU s> <start>" written by benchlib.py run
timefile() {
    t=$(cat "$1" 2>/dev/null)
    echo "${t:-0 0 0}"
}

# run_load PORT N OUTFILE: sends N messages; sets LOAD_RC, ELAPSED (wall
# clock of smtp-source, s), LOAD_T0 (CLOCK_MONOTONIC at its start),
# CLIENT_CPU (its CPU, s), MACH_CPU (busy CPU seconds of the whole machine
# meanwhile) and IOWAIT (% of the CPU time).  With PORT a list "P1 P2 P3",
# one smtp-source per port runs in parallel, each sending N / 3.
run_load() {
    s0=$("$PY" "$LIB" stat)
    set -- "$1" "$2" "$3" $1
    if [ $# -eq 4 ]; then
        set -- "$1" "$2" "$3" "$SMTP_SOURCE" -s "$SESSIONS" -l "$SIZE" -m "$2" \
            -f "$SENDER" -t "$RCPT" "127.0.0.1:$1"
    else
        p1=$4; p2=$5; p3=$6; n3=$(($2 / 3))
        set -- "$1" "$2" "$3"
        sep=""
        for p in $p1 $p2 $p3; do
            set -- "$@" $sep "$SMTP_SOURCE" -s "$SESSIONS" -l "$SIZE" -m "$n3" \
                -f "$SENDER" -t "$RCPT" "127.0.0.1:$p"
            sep=---
        done
    fi
    out=$3
    shift 3
    # in the background, so that a signal reaches the trap at once
    "$PY" "$LIB" run "$out.time" "$@" > "$out" 2>&1 &
    LOAD_PID=$!
    wait "$LOAD_PID"
    LOAD_RC=$?
    LOAD_PID=""
    set -- $(timefile "$out.time") $s0 $("$PY" "$LIB" stat)
    ELAPSED=$(calc %.3f "$1")
    CLIENT_CPU=$2
    LOAD_T0=$3
    MACH_CPU=$(calc %.2f "$7 - $4")
    IOWAIT=$(calc %.0f "100 * ($9 - $6) / ($7 - $4 + $8 - $5 + $9 - $6 + 0.01)")
}

# cpu_report SERVER_CPU N [REDIS_CPU]: where the CPU went during the last
# run.  "rest" is kernel threads (writeback, ...) and whatever else runs on
# the machine.
cpu_report() {
    rcpu=${3:-0}
    rest=$(calc %.2f "($MACH_CPU - $1 - $CLIENT_CPU - $rcpu) / $ELAPSED")
    note=""
    if awk -v r="$rest" 'BEGIN { exit !(r > 0.4) }'; then
        note=" (other work on the machine may have slowed this run)"
    fi
    rtext=""
    if [ $# -ge 3 ]; then
        rtext=" redis-server $(calc %.2f "$rcpu / $ELAPSED") cores, $(calc %.0f "$rcpu * 1000000 / $2") us/msg;"
    fi
    echo "CPU: server $(calc %.1f "$1") s = $(calc %.2f "$1 / $ELAPSED") cores," \
         "$(calc %.0f "$1 * 1000000 / $2") us/msg;$rtext smtp-source $(calc %.2f "$CLIENT_CPU / $ELAPSED") cores;" \
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

cpu() { "$PY" "$LIB" cpu "$1"; }

# median of a list of numbers
median() { echo "$@" | tr ' ' '\n' | sed '/^$/d' | sort -n |
           awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2];
                 else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# count_queue SPOOL: "<l files> <c files>"
count_queue() { "$PY" "$LIB" count-queue "$1"; }

# summary_count PATTERN ND...: lines matching PATTERN in the nodes' summary logs
summary_count() {
    pat=$1
    shift
    n=0
    for nd in "$@"; do
        c=$(grep -c -- "$pat" "$nd/log/summary.log" 2>/dev/null)
        n=$((n + ${c:-0}))
    done
    echo $n
}

# load_errors LABEL OUTFILE: smtp-source failed or said something
load_errors() {
    if [ "$LOAD_RC" -ne 0 ] || [ -s "$2" ]; then
        say "$1: smtp-source exited $LOAD_RC; its output:"
        sed 's/^/    /' "$2" | head -n 20
        return 0
    fi
    return 1
}

say "work directory $W; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------- Postfix

PF_REASON=""
PF=""
PF_QUEUE=""
PF_LOG=""
PF_SENT=""

# postfix_setup MODE: a private instance on a free port; MODE "discard"
# (every transport discards: accepting only) or "relay" (everything goes to
# the sink, relayhost = [127.0.0.1]:SINK_PORT).  Sets PF_REASON on failure.
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
    PF=$(mkdir_rand "postfix-$1")
    PF_CONF="$PF/conf"
    PF_QUEUE="$PF/queue"
    PF_LOG="$PF/maillog"
    mkdir -p "$PF_CONF" "$PF_QUEUE" "$PF/data"
    chmod 755 "$PF_CONF" "$PF_QUEUE"
    chown postfix "$PF/data"
    if [ "$1" = relay ]; then
        # The sink is a numeric relayhost in brackets: no MX and no address
        # lookup; DNS is off anyway, and so is TLS.  Concurrency, connection
        # caching and the rest keep their defaults.
        transports="default_transport = smtp
relay_transport = smtp
local_transport = discard
virtual_transport = discard
relayhost = [127.0.0.1]:$SINK_PORT
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtp_tls_security_level = none"
        PF_SENT='postfix/smtp\[.*status=sent'
    else
        transports="default_transport = discard
relay_transport = discard
local_transport = discard
virtual_transport = discard"
        PF_SENT='postfix/discard\[.*status=sent'
    fi
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
$transports
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
local_recipient_maps =
biff = no
${PF_EXTRA:-}
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
smtp      unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
EOF
    say "postfix: starting a private instance ($1) on 127.0.0.1:$PPORT ($PF_CONF)"
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
    PF_EXPECT=0
    PF_BAD=""
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
# postfix_check LABEL OUTFILE: verifies that Postfix took all and sent
# (discarded or relayed) all.
postfix_check() {
    if [ "$LOAD_RC" -ne 0 ] || [ -s "$2" ]; then
        PF_BAD="$1: smtp-source exited $LOAD_RC: $(head -n 3 "$2")"
    fi
    if ! postfix_drain; then
        PF_BAD="$PF_BAD $1: the queue did not drain in 300 s"
    fi
    i=0   # postlogd may write the last lines a moment later
    while sent=$(grep -c "$PF_SENT" "$PF_LOG") &&
          [ "$sent" -lt "$PF_EXPECT" ] && [ $i -lt 50 ]; do
        sleep 0.2; i=$((i + 1))
    done
    if [ "$sent" -ne "$PF_EXPECT" ]; then
        PF_BAD="$PF_BAD $1: $sent messages sent on, expected $PF_EXPECT"
    fi
    if [ -n "$PF_BAD" ]; then
        say "postfix: $PF_BAD"
        return 1
    fi
    return 0
}

# ================================================================ 1. accept

SELOR_RATES=""
PF_RATES=""
PF_OK=0

if [ "$DO_ACCEPT" = 1 ]; then

SD=$(mkdir_rand selor)
SPOOL="$SD/spool"
# accept only: delivery is left to the queue process, which does not scan
# during the run (Qsleep_time), so every message stays in the spool
node_conf "$SD" 1 "$SPOOL" "$MAILBOX" <<EOF
Qsleep_time 3600
Immed_delivery 0
EOF
node_start "$SD" selor
say "selor: processes $(cat "$SD/tree")"
node_probe "$SD" selor
SELOR_EXPECT=1
node_mark "$SD" selor

# node_check ND LABEL OUTFILE EXPECTED: verifies node ND after a run: no
# load errors in OUTFILE, EXPECTED l and c files and accepted lines, the
# node healthy
node_check() {
    nc_ok=0
    load_errors "$2" "$3" && nc_ok=1
    set -- "$1" "$2" "$3" "$4" $(count_queue "$1/spool")
    if [ "$5" -ne "$4" ] || [ "$6" -ne "$4" ]; then
        say "$2: expected $4 l and c files in $1/spool, found $5 l and $6 c files"
        nc_ok=1
    fi
    acc=$(summary_count ' accepted from=' "$1")
    if [ "$acc" -ne "$4" ]; then
        say "$2: the summary log has $acc accepted lines, expected $4"
        nc_ok=1
    fi
    node_health "$1" "$2" || nc_ok=1
    return $nc_ok
}

# selor_check LABEL OUTFILE: verifies the node after a run
selor_check() {
    node_check "$SD" "selor $1" "$2" "$SELOR_EXPECT"
}

if postfix_setup discard; then
    PF_OK=1
else
    say "postfix: not measured: $PF_REASON"
fi

# selor_run LABEL N: one run against Selor, verified; sets RATE.  Exits 1
# (keeping the work directory) when Selor failed under the load.
selor_run() {
    c0=$(cpu "$(npid "$SD")")
    run_load "$(port "$SD")" "$2" "$SD/$1.out"
    c1=$(cpu "$(npid "$SD")")
    SELOR_EXPECT=$((SELOR_EXPECT + $2))
    if ! selor_check "$1" "$SD/$1.out"; then
        fail "in accept $1: $SMTP_SOURCE -s $SESSIONS -l $SIZE -m $2 -f $SENDER -t $RCPT 127.0.0.1:$(port "$SD")"
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

SRATE=$(median $SELOR_RATES)
node_stop "$SD"
stop_postfix

fi   # DO_ACCEPT

# ---------------------------------------------------------------- the sink

# One smtp-sink takes everything the delivering runs send on: it answers
# at once and throws the message away; -c keeps a running count
# ("... mesg=N") in $SINK_OUT.  Counts only grow: a run waits for its base
# plus the messages it sent.
SINK_PORT=""
SINK_OUT="$W/sink.out"
sink_start() {
    [ -n "$SINK_PID" ] && return 0
    if [ ! -x "$SMTP_SINK" ]; then
        SINK_REASON="$SMTP_SINK not found (make deps)"
        return 1
    fi
    if [ "$(id -u)" -ne 0 ]; then
        set -- "$SMTP_SINK" -c
    else
        set -- "$SMTP_SINK" -c -u nobody
    fi
    SINK_PORT=$("$PY" "$LIB" freeport)
    setsid "$@" "127.0.0.1:$SINK_PORT" 256 > "$SINK_OUT" 2>&1 &
    SINK_PID=$!
    if ! "$PY" "$LIB" wait-smtp "$SINK_PORT" 10; then
        SINK_REASON="smtp-sink did not start: $(tr '\r' '\n' < "$SINK_OUT" | tail -n 3)"
        stop_pid "$SINK_PID"
        SINK_PID=""
        return 1
    fi
    say "sink: $* 127.0.0.1:$SINK_PORT 256"
    return 0
}
sink_count() { "$PY" "$LIB" sink-count "$SINK_OUT"; }

# sink_load PORTS N OUTFILE: run_load, and waits until the sink has all N;
# sets E2E (s from the first message sent until the sink had the last),
# SINK_RC (0, or 1 when the sink stopped receiving for 60 s: SINK_GOT says
# how many it got), E2E_MACH (busy CPU seconds of the machine meanwhile) and
# SINK_CPU (the sink's CPU seconds)
sink_load() {
    sent=$2
    target=$(($(sink_count) + sent))
    st0=$("$PY" "$LIB" stat)
    k0=$(cpu "$SINK_PID")
    "$PY" "$LIB" sink-wait "$SINK_OUT" "$target" 60 > "$3.sink" &
    WAIT_PID=$!
    run_load "$1" "$2" "$3"
    wait "$WAIT_PID"
    SINK_RC=$?
    WAIT_PID=""
    set -- $(cat "$3.sink") 0 0
    SINK_GOT=$(($2 - target + sent))
    E2E=$(calc %.3f "$1 - $LOAD_T0")
    SINK_CPU=$(calc %.2f "$(cpu "$SINK_PID") - $k0")
    set -- $st0 $("$PY" "$LIB" stat)
    E2E_MACH=$(calc %.2f "$4 - $1")
}

# wait_empty SPOOL SECONDS: until no l or c file is left
wait_empty() {
    i=0
    while [ $i -lt $(($2 * 10)) ]; do
        [ "$(count_queue "$1")" = "0 0" ] && return 0
        sleep 0.1; i=$((i + 1))
    done
    return 1
}

# delivery_check LABEL SPOOL EXPECT ND...: every message accepted so far
# was delivered once, none deferred, failed or reported, the spool is
# empty and the nodes are healthy
delivery_check() {
    lbl=$1 sp=$2 exp=$3
    shift 3
    dc_ok=1
    if ! wait_empty "$sp" 60; then
        say "$lbl: 60 s after the sink had every message, $sp still holds $(count_queue "$sp") l and c files"
        find "$sp" -maxdepth 1 -name '[cl]*' | head -n 10 | sed 's/^/    /'
        dc_ok=0
    fi
    acc=$(summary_count ' accepted from=' "$@")
    del=$(summary_count ' delivered to=' "$@")
    if [ "$acc" -ne "$exp" ] || [ "$del" -ne "$exp" ]; then
        say "$lbl: the summary logs have $acc accepted and $del delivered lines, expected $exp"
        dc_ok=0
    fi
    for what in ' deferred to=' ' failed to=' ' report '; do
        n=$(summary_count "$what" "$@")
        if [ "$n" -ne 0 ]; then
            say "$lbl: $n '$what' lines in the summary logs:"
            for nd in "$@"; do grep -- "$what" "$nd/log/summary.log"; done |
                head -n 10 | sed 's/^/    /'
            dc_ok=0
        fi
    done
    for nd in "$@"; do
        node_health "$nd" "$lbl ($(basename "$nd"))" || dc_ok=0
    done
    [ $dc_ok = 1 ]
}

# ================================================================ 2. end-to-end

E2E_LINE=""
if [ "$DO_E2E" = 1 ]; then
    if ! sink_start; then
        E2E_LINE="end-to-end: not measured: $SINK_REASON"
    fi
fi
if [ "$DO_E2E" = 1 ] && [ -z "$E2E_LINE" ]; then
    ED=$(mkdir_rand e2e-selor)
    # The alias sends the local mailbox on to a remote address: every
    # message is relayed to Relay_host (the sink), at once after its 250.
    node_conf "$ED" 1 "$ED/spool" "$FORWARD" <<EOF
Immed_delivery 2
Relay_host "127.0.0.1:$SINK_PORT"
EOF
    node_start "$ED" "e2e selor"
    base=$(sink_count)
    node_probe "$ED" "e2e selor"
    if ! "$PY" "$LIB" sink-wait "$SINK_OUT" $((base + 1)) 30 > /dev/null ||
       ! wait_empty "$ED/spool" 30; then
        say "e2e selor: the probe message was not delivered to the sink in 30 s:"
        tail -n 5 "$ED/log/summary.log" "$ED/log/warning.log" | sed 's/^/    /'
        fail "end-to-end probe"
    fi
    node_mark "$ED" "e2e selor"
    E2E_EXPECT=1
    E2E_CONN=0

    # e2e_selor LABEL N
    e2e_selor() {
        c0=$(cpu "$(npid "$ED")")
        sink_load "$(port "$ED")" "$2" "$ED/$1.out"
        c1=$(cpu "$(npid "$ED")")
        E2E_EXPECT=$((E2E_EXPECT + $2))
        e_ok=1
        load_errors "e2e selor $1" "$ED/$1.out" && e_ok=0
        if [ "$SINK_RC" -ne 0 ]; then
            say "e2e selor $1: the sink stopped at $SINK_GOT of $2 messages for 60 s"
            e_ok=0
        fi
        delivery_check "e2e selor $1" "$ED/spool" "$E2E_EXPECT" "$ED" || e_ok=0
        [ $e_ok = 1 ] || fail "in end-to-end $1"
        RATE=$(calc %.0f "$2 / $E2E")
        say "e2e selor $1: $2 messages in $E2E s = $RATE msg/s (accepted in $ELAPSED s)"
        e2e_cpu "$(calc %.2f "$c1 - $c0")" "$2"
        # one summary line a recipient; conn=new: its message opened a connection
        cn=$(summary_count ' conn=new ' "$ED")
        CONN_K=$(calc %.0f "($cn - $E2E_CONN) * 1000 / $2")
        say "    outbound SMTP connections: $((cn - E2E_CONN)) for $2 messages" \
            "= $CONN_K per 1000 (Smtp_reuse_*, Smtp_dest_conns)"
        E2E_CONN=$cn
    }
    # e2e_cpu SERVER_CPU N: CPU from the first message until the sink had the last
    e2e_cpu() {
        say "    CPU: server $(calc %.1f "$1") s = $(calc %.2f "$1 / $E2E") cores," \
            "$(calc %.0f "$1 * 1000000 / $2") us/msg; smtp-source $(calc %.2f "$CLIENT_CPU / $E2E") cores;" \
            "smtp-sink $(calc %.2f "$SINK_CPU / $E2E") cores; machine $(calc %.2f "$E2E_MACH / $E2E") of $(nproc) cores busy"
    }

    say "e2e selor: warm-up, $E2E_WARMUP messages"
    e2e_selor warmup "$E2E_WARMUP"
    e2e_selor run "$E2E_MSGS"
    E2E_SELOR=$RATE
    E2E_SELOR_CONN=$CONN_K
    node_stop "$ED"

    E2E_PF=""
    if postfix_setup relay; then
        # e2e_postfix LABEL N: sets RATE, or clears it and sets PF_REASON
        e2e_postfix() {
            c0=$(cpu "$PF_MASTER")
            sink_load "$PPORT" "$2" "$PF/$1.out"
            c1=$(cpu "$PF_MASTER")
            PF_EXPECT=$((PF_EXPECT + $2))
            RATE=$(calc %.0f "$2 / $E2E")
            pe2e=$E2E pel=$ELAPSED
            if [ "$SINK_RC" -ne 0 ]; then
                PF_BAD="$1: the sink stopped at $SINK_GOT of $2 messages for 60 s"
            fi
            if postfix_check "e2e $1" "$PF/$1.out"; then
                say "e2e postfix $1: $2 messages in $pe2e s = $RATE msg/s (accepted in $pel s)"
                e2e_cpu "$(calc %.2f "$c1 - $c0")" "$2"
                # one smtp status=sent line a recipient; conn_use=N (the
                # Nth use) on a reused connection, none on a new one
                cn=$(grep "$PF_SENT" "$PF_LOG" | grep -vc ' conn_use=')
                CONN_K=$(calc %.0f "($cn - $PF_CONN) * 1000 / $2")
                say "    outbound SMTP connections: $((cn - PF_CONN)) for $2 messages" \
                    "= $CONN_K per 1000 (smtp status=sent lines without conn_use=)"
                PF_CONN=$cn
            else
                PF_REASON="end-to-end $1 failed: $PF_BAD"
                RATE=""
            fi
        }
        PF_CONN=0
        say "e2e postfix: warm-up, $E2E_WARMUP messages"
        e2e_postfix warmup "$E2E_WARMUP"
        [ -n "$RATE" ] && e2e_postfix run "$E2E_MSGS"
        E2E_PF=$RATE
        E2E_PF_CONN=$CONN_K
        stop_postfix
    fi
    if [ -n "$E2E_PF" ]; then
        E2E_LINE="end-to-end: selor $E2E_SELOR msg/s, postfix $E2E_PF msg/s, ratio $(calc %.2f "$E2E_SELOR / $E2E_PF")x; connections per 1000 messages: selor $E2E_SELOR_CONN, postfix $E2E_PF_CONN"
    else
        E2E_LINE="end-to-end: selor $E2E_SELOR msg/s (postfix not measured: $PF_REASON); connections per 1000 messages: selor $E2E_SELOR_CONN"
    fi
fi

# ================================================================ 3. cluster

CLUSTER_LINES=""
redis() { redis-cli -p "$RPORT" "$@"; }

# cluster_accept LABEL N SPOOL ND...: one accept run of N messages, three
# smtp-source in parallel, to the nodes (round robin over them); verified;
# sets RATE
cluster_accept() {
    lbl=$1 n=$2 sp=$3
    shift 3
    ports=""
    i=0
    while [ $i -lt 3 ]; do
        eval "nd=\${$((i % $# + 1))}"
        ports="$ports $(port "$nd")"
        i=$((i + 1))
    done
    c0=0
    for nd in "$@"; do c0=$(calc %.2f "$c0 + $(cpu "$(npid "$nd")")"); done
    r0=$(cpu "$REDIS_PID")
    run_load "$ports" "$n" "$W/cluster-$lbl.out"
    c1=0
    for nd in "$@"; do c1=$(calc %.2f "$c1 + $(cpu "$(npid "$nd")")"); done
    r1=$(cpu "$REDIS_PID")
    CL_EXPECT=$((CL_EXPECT + n))
    ca_ok=1
    load_errors "cluster $lbl" "$W/cluster-$lbl.out" && ca_ok=0
    q=$(count_queue "$sp")
    ql=${q% *} qc=${q#* }
    if [ "$ql" -ne "$CL_EXPECT" ] || [ "$qc" -ne "$CL_EXPECT" ]; then
        say "cluster $lbl: expected $CL_EXPECT l and c files in $sp, found $ql l and $qc c files"
        ca_ok=0
    fi
    acc=$(summary_count ' accepted from=' "$@")
    if [ "$acc" -ne "$CL_EXPECT" ]; then
        say "cluster $lbl: the summary logs have $acc accepted lines, expected $CL_EXPECT"
        ca_ok=0
    fi
    for nd in "$@"; do
        node_health "$nd" "cluster $lbl ($(basename "$nd"))" || ca_ok=0
    done
    [ $ca_ok = 1 ] || fail "in cluster $lbl: three $SMTP_SOURCE -s $SESSIONS -l $SIZE -m $((n / 3)) in parallel, to ports$ports"
    RATE=$(calc %.0f "$n / $ELAPSED")
    say "cluster $lbl: $n messages in $ELAPSED s = $RATE msg/s"
    say "    $(cpu_report "$(calc %.2f "$c1 - $c0")" "$n" "$(calc %.2f "$r1 - $r0")")"
}

# cluster_node ND SID SPOOL PREFIX: writes the configuration of a node of
# the cluster: accepting only, until a flush (Qsleep_time), delivering to
# the sink
cluster_node() {
    node_conf "$1" "$2" "$3" "$FORWARD" <<EOF
Redis_server "127.0.0.1:$RPORT"
Redis_prefix "$4"
Lock_lease $LEASE
Immed_delivery 0
Qsleep_time 3600
Relay_host "127.0.0.1:$SINK_PORT"
EOF
}

# settle: once connected to Redis, the queue process of a node scans the
# spool (at its next 1 s tick) and announces every file it finds as due now
# unless the index has it already.  A message committed while that scan
# runs can be announced by the scan before its SMTP worker announces it
# (due in Qsleep_time): it is then delivered at once, which an accepting
# phase must not see.  So nothing is sent until the scan is over.
settle() { sleep 2; }

if [ "$DO_CLUSTER" = 1 ]; then
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        CLUSTER_LINES="cluster: not measured: redis-server or redis-cli is not installed"
    elif ! sink_start; then
        CLUSTER_LINES="cluster: not measured: $SINK_REASON"
    fi
fi
if [ "$DO_CLUSTER" = 1 ] && [ -z "$CLUSTER_LINES" ]; then
    RD=$(mkdir_rand redis)
    RPORT=$("$PY" "$LIB" freeport)
    # no persistence, as in the system tests
    setsid redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no \
        --dir "$RD" --logfile "$RD/redis.log" > /dev/null 2>&1 &
    REDIS_PID=$!
    i=0
    while [ "$(redis PING 2>/dev/null)" != PONG ] && [ $i -lt 100 ]; do
        sleep 0.1; i=$((i + 1))
    done
    if [ "$(redis PING 2>/dev/null)" != PONG ]; then
        say "redis-server did not start on 127.0.0.1:$RPORT: $(tail -n 3 "$RD/redis.log")"
        exit 2
    fi
    say "redis: $(redis-server --version | cut -d' ' -f1-3) on 127.0.0.1:$RPORT"

    # --- one node with Redis (a spool and a key prefix of its own)
    C1=$(mkdir_rand cluster1)
    cluster_node "$C1/solo" 1 "$C1/spool" "solo:"
    node_start "$C1/solo" "cluster solo"
    settle
    node_probe "$C1/solo" "cluster solo"
    node_mark "$C1/solo" "cluster solo"
    CL_EXPECT=1
    say "cluster solo: warm-up, $CLUSTER_WARMUP messages"
    cluster_accept solo-warmup "$CLUSTER_WARMUP" "$C1/spool" "$C1/solo"
    cluster_accept solo "$CLUSTER_MSGS" "$C1/spool" "$C1/solo"
    RATE1=$RATE
    node_stop "$C1/solo"

    # --- three nodes on one spool
    C3=$(mkdir_rand cluster3)
    CL_NODES=""
    for k in 1 2 3; do
        cluster_node "$C3/mx$k" "$k" "$C3/spool" "selor:"
        node_start "$C3/mx$k" "cluster mx$k"
        CL_NODES="$CL_NODES $C3/mx$k"
    done
    settle
    for nd in $CL_NODES; do node_probe "$nd" "cluster $(basename "$nd")"; done
    for nd in $CL_NODES; do node_mark "$nd" "cluster $(basename "$nd")"; done
    CL_EXPECT=3
    say "cluster 3 nodes: warm-up, $CLUSTER_WARMUP messages"
    cluster_accept 3-warmup "$CLUSTER_WARMUP" "$C3/spool" $CL_NODES
    cluster_accept 3-nodes "$CLUSTER_MSGS" "$C3/spool" $CL_NODES
    RATE3=$RATE

    # --- Redis round trips: MONITOR counts what the nodes send (an
    # EVALSHA is one round trip, whatever its script runs inside Redis);
    # INFO commandstats counts every command Redis ran, the scripts'
    # included.  Both include the nodes' idle work (heartbeats, about two
    # claims a second per node).
    "$PY" "$LIB" monitor "$RPORT" "$W/monitor.json" &
    MON_PID=$!
    sleep 0.5
    redis INFO commandstats > "$W/stats.0"
    redis ECHO bench-phase:accept > /dev/null
    cluster_accept 3-roundtrips "$CLUSTER_RT_MSGS" "$C3/spool" $CL_NODES
    redis ECHO bench-phase:between > /dev/null
    redis INFO commandstats > "$W/stats.1"

    # Redis started empty: no node claims before the epoch key is a lease
    # old (the start-up pause), flushes included
    i=0
    while :; do
        set -- $(redis GET selor:epoch) $(redis TIME)
        if [ $# -ge 3 ] && [ $(($2 * 1000 + $3 / 1000)) -gt $(($1 + LEASE * 1000 + 500)) ]; then
            break
        fi
        [ $i -lt 300 ] || fail "the start-up pause did not end (selor:epoch $(redis GET selor:epoch))"
        sleep 0.1; i=$((i + 1))
    done

    DELIVER=$CL_EXPECT
    target=$(($(sink_count) + DELIVER))
    redis INFO commandstats > "$W/stats.2"
    redis ECHO bench-phase:delivery > /dev/null
    st0=$("$PY" "$LIB" stat)
    c0=0
    for nd in $CL_NODES; do c0=$(calc %.2f "$c0 + $(cpu "$(npid "$nd")")"); done
    r0=$(cpu "$REDIS_PID")
    t0=$(date +%s.%N)
    fl=""
    for nd in $CL_NODES; do
        "$SELORCTL" -c "$nd/selor.conf" flush > "$nd/flush.out" 2>&1 &
        fl="$fl $!"
    done
    "$PY" "$LIB" sink-wait "$SINK_OUT" "$target" 60 > "$W/cluster-delivery.sink" &
    WAIT_PID=$!
    wait "$WAIT_PID"
    SINK_RC=$?
    WAIT_PID=""
    for p in $fl; do wait "$p"; done
    wait_empty "$C3/spool" 60
    t1=$(date +%s.%N)
    redis ECHO bench-phase:END > /dev/null
    redis INFO commandstats > "$W/stats.3"
    c1=0
    for nd in $CL_NODES; do c1=$(calc %.2f "$c1 + $(cpu "$(npid "$nd")")"); done
    r1=$(cpu "$REDIS_PID")
    st1=$("$PY" "$LIB" stat)
    wait "$MON_PID"
    MON_PID=""

    ok=1
    set -- $(cat "$W/cluster-delivery.sink") 0 0
    if [ "$SINK_RC" -ne 0 ]; then
        say "cluster delivery: the sink stopped at $(($2 - target + DELIVER)) of $DELIVER messages for 60 s"
        ok=0
    fi
    for nd in $CL_NODES; do
        say "cluster delivery: selorctl flush on $(basename "$nd"): $(tr '\n' ' ' < "$nd/flush.out")"
    done
    delivery_check "cluster delivery" "$C3/spool" "$DELIVER" $CL_NODES || ok=0
    sleep 0.5
    extra=$(($(sink_count) - target))
    if [ "$extra" -gt 0 ]; then
        say "cluster delivery: the sink received $extra messages more than were accepted (delivered twice)"
        ok=0
    fi
    [ $ok = 1 ] || fail "in the cluster delivery"
    el=$(calc %.3f "$t1 - $t0")
    set -- $st0 $st1
    say "cluster delivery: $DELIVER messages flushed and delivered in $el s = $(calc %.0f "$DELIVER / $el") msg/s (with MONITOR on)"
    say "    CPU: nodes $(calc %.1f "$c1 - $c0") s, $(calc %.0f "($c1 - $c0) * 1000000 / $DELIVER") us/msg; redis $(calc %.0f "($r1 - $r0) * 1000000 / $DELIVER") us/msg; machine $(calc %.2f "($4 - $1) / $el") of $(nproc) cores busy"
    for k in 1 2 3; do
        say "    mx$k delivered $(summary_count ' delivered to=' "$C3/mx$k")"
    done

    set -- $("$PY" "$LIB" monitor-report "$W/monitor.json" accept "$CLUSTER_RT_MSGS")
    RT_ACC=$1
    shift 2
    say "cluster round trips per message accepted: $RT_ACC = $*"
    set -- $("$PY" "$LIB" monitor-report "$W/monitor.json" delivery "$DELIVER")
    RT_DEL=$1 RT_FLUSH=$2
    shift 2
    say "cluster round trips per message delivered: $RT_DEL = $*"
    set -- $("$PY" "$LIB" cmdstats-diff "$W/stats.0" "$W/stats.1" "$CLUSTER_RT_MSGS")
    CS_ACC=$1
    shift
    say "cluster commandstats per message accepted: $CS_ACC calls ($*)"
    set -- $("$PY" "$LIB" cmdstats-diff "$W/stats.2" "$W/stats.3" "$DELIVER")
    CS_DEL=$1
    shift
    say "cluster commandstats per message delivered: $CS_DEL calls ($*)"

    for nd in $CL_NODES; do node_stop "$nd"; done
    stop_pid "$REDIS_PID"
    REDIS_PID=""
    CLUSTER_LINES="cluster: redis round trips per message: accept $RT_ACC, delivery $RT_DEL ($RT_FLUSH of them the flushes); commands run by Redis, the scripts' included: accept $CS_ACC, delivery $CS_DEL
cluster: 3 nodes $RATE3 msg/s, 1 node $RATE1 msg/s, ratio $(calc %.2f "$RATE3 / $RATE1")"
fi

# ================================================================ 4. STARTTLS

TLS_LINE=""
if [ "$DO_TLS" = 1 ]; then
    TD=$(mkdir_rand selor-tls)
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$TD.key" -out "$TD.pem" -days 2 -subj /CN=bench.test > /dev/null 2>&1
    node_conf "$TD" 1 "$TD/spool" "$MAILBOX" <<EOF
Qsleep_time 3600
Immed_delivery 0
Tls_module "$(dirname "$MODULE")/selor_tls.so"
Tls_enable 1
Tls_pubkey "$TD.pem"
Tls_privkey "$TD.key"
EOF
    node_start "$TD" "selor tls"
    # tls_run PORT N: sets TLS_RATE (msg/s) and TLS_ERR
    tls_run() {
        set -- $("$PY" "$LIB" tls-load "$1" "$2" "$SESSIONS" "$SIZE" "$SENDER" "$RCPT")
        TLS_RATE=$(calc %.0f "$TLS_N / $1")
        TLS_ERR=$2
    }
    TLS_N=300; tls_run "$(port "$TD")" 300
    TLS_N=$TLS_MSGS; tls_run "$(port "$TD")" "$TLS_MSGS"
    STLS=$TLS_RATE
    acc=$(summary_count ' accepted from=' "$TD")
    say "selor STARTTLS: $TLS_MSGS messages, $STLS msg/s, client errors $TLS_ERR, $acc accepted in all"
    if [ "$TLS_ERR" -ne 0 ] || [ "$acc" -ne $((TLS_MSGS + 300)) ]; then
        fail "in the STARTTLS accept run"
    fi
    node_stop "$TD"
    PF_EXTRA="smtpd_tls_security_level = may
smtpd_tls_cert_file = $TD.pem
smtpd_tls_key_file = $TD.key"
    if postfix_setup discard; then
        TLS_N=300; tls_run "$PPORT" 300
        TLS_N=$TLS_MSGS; tls_run "$PPORT" "$TLS_MSGS"
        PTLS=$TLS_RATE
        say "postfix STARTTLS: $TLS_MSGS messages, $PTLS msg/s, client errors $TLS_ERR"
        stop_postfix
        TLS_LINE="accept with STARTTLS: selor $STLS msg/s, postfix $PTLS msg/s, ratio $(calc %.2f "$STLS / $PTLS")x (Python ssl client, $SESSIONS sessions)"
    else
        TLS_LINE="accept with STARTTLS: selor $STLS msg/s; postfix not measured: $PF_REASON"
    fi
    PF_EXTRA=""
    IDLE_TLS_LINE=$("$PY" "$ROOT/tests/bench/idle.py" 5000 --tls 2>&1 | tail -1)
fi

# ================================================================ 5. pgsql

PGSQL_LINES=""
if [ "$DO_PGSQL" = 1 ]; then
    PGMOD="$(dirname "$MODULE")/selor_pgsql.so"
    PGD=$(mkdir_rand pgsql)
    if ! PGPORT=$("$PY" "$LIB" pg-start "$PGD" "$PG_KEYS" bench.test 2> "$PGD/start.err"); then
        say "pgsql: PostgreSQL did not start: $(tail -n 3 "$PGD/start.err")"
        PGD=""
        PGSQL_LINES="pgsql: not measured (PostgreSQL did not start)"
    fi
fi
if [ "$DO_PGSQL" = 1 ] && [ -n "$PGD" ]; then
    # pg_node ND TTL: a node that asks pgsql (only) for domains and mailboxes
    pg_node() {
        node_conf "$1" 1 "$1/spool" "$MAILBOX" <<EOF
Qsleep_time 3600
Immed_delivery 0
Module "$PGMOD"
Pgsql_conninfo "hostaddr=127.0.0.1 port=$PGPORT user=postgres dbname=postgres"
Pgsql_query_domain "SELECT 1 FROM domains WHERE domain = \$1"
Pgsql_query_mailbox "SELECT address AS \\"user\\", home, uid, gid, dlocal, quota FROM mailboxes WHERE address = \$1"
Pgsql_cache_ttl $2
Modseq_domain "pgsql"
Modseq_mail "pgsql"
Modseq_alias "pgsql"
EOF
    }
    # pg_accept ND LABEL: accept rate of the node (after a warm-up); sets RATE
    pg_accept() {
        run_load "$(port "$1")" 1000 "$1/warm.out"
        run_load "$(port "$1")" "$PG_MSGS" "$1/accept.out"
        load_errors "$2" "$1/accept.out" && fail "in the $2 accept run"
        acc=$(summary_count ' accepted from=' "$1")
        [ "$acc" -eq $((PG_MSGS + 1001)) ] || fail "$2: $acc accepted, expected $((PG_MSGS + 1001))"
        RATE=$(calc %.0f "$PG_MSGS / $ELAPSED")
        say "$2 accept: $PG_MSGS messages in $ELAPSED s = $RATE msg/s"
    }
    # pg_rcpts ND LABEL: RCPT lookups per second; sets RRATE
    pg_rcpts() {
        "$PY" "$LIB" rcpt-load "$(port "$1")" 2 "$SESSIONS" "$PG_KEYS" bench.test > /dev/null
        set -- "$1" "$2" $("$PY" "$LIB" rcpt-load "$(port "$1")" "$PG_SECONDS" "$SESSIONS" \
            "$PG_KEYS" bench.test)
        [ "${6:-1}" = 0 ] || fail "$2: ${6:-?} of ${3:-?} RCPTs not answered 250"
        RRATE=$5
        say "$2 RCPT: $3 RCPTs in $4 s = $5 RCPT/s (each a DOMAIN and a MAILBOX lookup)"
    }
    for ttl in 30 0; do
        PN=$(mkdir_rand "selor-pgsql$ttl")
        pg_node "$PN" "$ttl"
        node_start "$PN" "selor pgsql cache $ttl"
        node_probe "$PN" "selor pgsql cache $ttl"
        pg_rcpts "$PN" "selor pgsql cache $ttl"
        eval "PG_RCPT_$ttl=\$RRATE"
        pg_accept "$PN" "selor pgsql cache $ttl"
        eval "PG_ACC_$ttl=\$RATE"
        node_stop "$PN"
    done
    PWN=$(mkdir_rand selor-passwd)
    node_conf "$PWN" 1 "$PWN/spool" "$MAILBOX" <<EOF
Qsleep_time 3600
Immed_delivery 0
EOF
    node_start "$PWN" "selor passwd"
    node_probe "$PWN" "selor passwd"
    pg_accept "$PWN" "selor passwd"
    PW_ACC=$RATE
    node_stop "$PWN"
    PGSQL_LINES="pgsql: RCPT lookups $PG_RCPT_30 RCPT/s with Pgsql_cache_ttl 30, $PG_RCPT_0 RCPT/s with 0 (a DOMAIN and a MAILBOX query each, $SESSIONS sessions)
pgsql: accept $PG_ACC_30 msg/s (cache 30 s), $PG_ACC_0 msg/s (cache off), passwd $PW_ACC msg/s"
fi

# ab_accept ND LABEL N CHECK: one accept run of N messages against ND for
# the measurements that compare two nodes (6. rules, 7. milter), verified:
# no load errors, N more l and c files and summary lines, the node healthy,
# and CHECK ND LABEL EXPECTED (what the variant adds); sets RATE and USMSG
# (the node's CPU microseconds per message)
ab_accept() {
    # what earlier runs left dirty is written out before, not during the
    # run, whichever node it came from
    sync
    c0=$(cpu "$(npid "$1")")
    run_load "$(port "$1")" "$3" "$1/$2.out"
    c1=$(cpu "$(npid "$1")")
    exp=$(($(cat "$1/expect") + $3))
    echo "$exp" > "$1/expect"
    ab_ok=1
    node_check "$1" "$2" "$1/$2.out" "$exp" || ab_ok=0
    "$4" "$1" "$2" "$exp" || ab_ok=0
    [ $ab_ok = 1 ] || fail "in $2: $SMTP_SOURCE -s $SESSIONS -l $SIZE -m $3 -f $SENDER -t $RCPT 127.0.0.1:$(port "$1")"
    RATE=$(calc %.0f "$3 / $ELAPSED")
    USMSG=$(calc %.0f "($c1 - $c0) * 1000000 / $3")
    say "$2: $3 messages in $ELAPSED s = $RATE msg/s"
    say "    $(cpu_report "$(calc %.2f "$c1 - $c0")" "$3")"
}

# ================================================================ 6. rules

RULES_LINE=""
if [ "$DO_RULES" = 1 ]; then
    RUD=$(mkdir_rand rules)
    # What an ISP's MX checks: clients refused by address, network and
    # prefix, scores by network, senders by address, domain and pattern,
    # recipients that are internal, closed or traps, sizes, and a refusal
    # once the score is too high.  For the bench's mail (client 127.0.0.1,
    # sender@bench.test to bench@bench.test, 1 KB) every rule is evaluated,
    # three of them match and add a hit each (hits=3 a message), none logs
    # (a Log! would be a warning, which fails the bench) and none refuses.
    cat > "$RUD/Event.from" <<'EOF'
# Event.from: the sender, at each MAIL FROM (written by tests/bench/bench.sh)
# clients refused outright: listed abusers, networks, an old prefix
Ip? "203.0.113.7" Reply! "554 5.7.1 Not from you" Deny!
Ip? "203.0.113.66" Reply! "554 5.7.1 Not from you" Deny!
Ip? "198.51.100.0/24" Log! "blocked network: %I as %f" Reply! "554 5.7.1 Network blocked" Deny!
Ip? "200.200.200." Reply! "554 5.7.1 Network blocked" Deny!
Ip? "185.220.0.0/16" Reply! "554 5.7.1 Network blocked" Deny!
# scores by network: dial-up pools, our customers, IPv6 tunnels
Ip? "192.0.2.128/25" Add_hits! "3"
Ip? "100.64.0.0/10" Add_hits! "2"
Ip? "10.20.0.0/16" Add_hits! "-2"
Ip? "172.16.0.0/12" Add_hits! "-2"
Ip? "2001:db8::/32" Add_hits! "2"
# senders
From? "spammer@bad.example" Reply! "550 5.7.1 Sender refused here" Deny!
From? "@spam.example" Reply! "550 5.7.1 Domain refused here" Deny!
From? "@phish.example" Log! "phishing sender %f from %I" Reply! "550 5.7.1 Domain refused here" Deny!
From? "*@*.dyn.example" Add_hits! "2"
From? "newsletter-*@lists.example" Add_hits! "1"
From? "@bulk.example" Add_hits! "3"
From? "<>" Ip? "198.18.0.0/15" Reply! "550 5.7.1 No bounces from this network" Deny!
From? "*@localhost" !Ip? "127.0.0.0/8" Reply! "550 5.7.1 Forged sender" Deny!
# local clients: one point (matches the bench's client)
Ip? "127.0.0.0/8" Add_hits! "1"
Itest? "%H>5" Reply! "550 5.7.1 Score too high" Deny!
EOF
    cat > "$RUD/Event.rcpt" <<'EOF'
# Event.rcpt: each RCPT TO (written by tests/bench/bench.sh)
# role addresses are always taken
To? "postmaster@*" Accept!
To? "abuse@*" Accept!
# internal addresses, refused from outside
To? "all@bench.test" !Ip? "10.20.0.0/16" Reply! "550 5.7.1 This list is internal" Deny!
To? "@internal.bench.test" !Ip? "10.20.0.0/16" Reply! "550 5.7.1 Internal address" Deny!
To? "@corp.bench.test" Ip? "203.0.113.0/24" Reply! "550 5.7.1 Not from you" Deny!
# closed and moved mailboxes
To? "old-sales@bench.test" Reply! "550 5.1.6 Mailbox moved to sales@bench.test" Deny!
To? "noreply@bench.test" Reply! "550 5.1.1 This address takes no mail" Deny!
To? "*+spam@bench.test" Reply! "550 5.7.1 Refused by the user" Deny!
From? "<>" To? "*@lists.bench.test" Reply! "550 5.7.1 No bounces to list addresses" Deny!
# scores
From? "@bulk.example" To? "*@bench.test" Add_hits! "2"
From? "*@*.dyn.example" Ip? "100.64.0.0/10" Add_hits! "2"
Ip? "192.0.2.128/25" To? "*@bench.test" Add_hits! "1"
To? "spamtrap@bench.test" Log! "spamtrap hit by %I (%f)" Add_hits! "10"
To? "trap-*@bench.test" Add_hits! "10"
# our domain: one point (matches the bench's recipient)
To? "@bench.test" Add_hits! "1"
Itest? "%H>5" Reply! "550 5.7.1 Score too high" Deny!
EOF
    cat > "$RUD/Event.data" <<'EOF'
# Event.data: the content has arrived (written by tests/bench/bench.sh)
# sizes
Size? "52428800" Reply! "552 5.3.4 Message too big for this service" Deny!
From? "@bulk.example" Size? "1048576" Reply! "552 5.3.4 Message too big for a mailing" Deny!
Ip? "100.64.0.0/10" Size? "10485760" Reply! "552 5.3.4 Message too big for a dial-up client" Deny!
Size? "20971520" Log! "large message %Q from %I (%f)"
Size? "5242880" Add_hits! "1"
# senders and clients seen at the end of DATA
From? "@bulk.example" Itest? "%H>3" Reply! "550 5.7.1 Mailing refused (score %H)" Deny!
From? "*@*.dyn.example" Size? "102400" Add_hits! "2"
Ip? "192.0.2.128/25" Itest? "%H>=4" Reply! "451 4.7.1 Try again later" Deny!
Ip? "198.18.0.0/15" Log! "content from a test network %I" Add_hits! "2"
Ip? "2001:db8::/32" Size? "1048576" Add_hits! "1"
To? "spamtrap@bench.test" Reply! "550 5.7.1 Spam trap" Deny!
Itest? "%H>=4" Log! "score %H for %Q from %I (%f)"
# local clients of our domain: one point (matches the bench's mail)
Ip? "127.0.0.0/8" From? "@bench.test" Add_hits! "1"
Itest? "%H>5" Reply! "550 5.7.1 Score too high" Deny!
EOF
    chmod 644 "$RUD"/Event.*
    n=$(cat "$RUD"/Event.* | grep -cv '^[[:space:]]*\(#\|$\)')
    if [ "$n" -ne "$RULES_N" ]; then
        say "rules: $n rules written, expected $RULES_N"
        exit 2
    fi
    # ru_node ND RULES: a node of 1. (accepting only); RULES 1 with the
    # three files, 0 without
    ru_node() {
        node_conf "$1" 1 "$1/spool" "$MAILBOX" <<EOF
Qsleep_time 3600
Immed_delivery 0
$(if [ "$2" = 1 ]; then
    for e in from rcpt data; do echo "Event.$e \"$RUD/Event.$e\""; done
  fi)
EOF
        echo 1 > "$1/expect"      # the probe
        if [ "$2" = 1 ]; then : > "$1/with-rules"; fi
    }
    # ru_hits ND LABEL EXPECTED: with rules, every message must have
    # collected its 3 hits
    ru_hits() {
        [ -f "$1/with-rules" ] || return 0
        hits=$(summary_count ' hits=3 client=' "$1")
        [ "$hits" -eq "$3" ] && return 0
        say "$2: $hits messages with hits=3 in the summary log, expected $3 (did the rules run?)"
        return 1
    }
    ru_accept() { ab_accept "$1" "$2" "$3" ru_hits; }
    RN0=$(mkdir_rand selor-norules)
    RN1=$(mkdir_rand selor-rules)
    ru_node "$RN0" 0
    ru_node "$RN1" 1
    node_start "$RN0" "selor no rules"
    node_start "$RN1" "selor $RULES_N rules"
    say "selor $RULES_N rules: $(cat "$RN1/check.out")"
    node_probe "$RN0" "selor no rules"
    node_probe "$RN1" "selor $RULES_N rules"
    node_mark "$RN0" "selor no rules"
    node_mark "$RN1" "selor $RULES_N rules"
    ru_accept "$RN0" "selor no rules warm-up" "$RULES_WARMUP"
    ru_accept "$RN1" "selor $RULES_N rules warm-up" "$RULES_WARMUP"
    # Both nodes stay up (the idle one costs nothing) and take turns, in
    # the order without, with; with, without; without, with; ...: neither
    # always runs first or on the fuller spool, and the medians drop odd
    # runs (the first after the warm-ups is often slower, whichever node
    # it is; other work on the machine comes and goes)
    RU_RATES0="" RU_RATES1="" RU_US0="" RU_US1=""
    r=1
    while [ $r -le "$RULES_ROUNDS" ]; do
        if [ $((r % 2)) = 1 ]; then order="0 1"; else order="1 0"; fi
        r=$((r + 1))
        for k in $order; do
            if [ "$k" = 1 ]; then
                ru_accept "$RN1" "selor $RULES_N rules" "$RULES_MSGS"
                RU_RATES1="$RU_RATES1 $RATE" RU_US1="$RU_US1 $USMSG"
            else
                ru_accept "$RN0" "selor no rules" "$RULES_MSGS"
                RU_RATES0="$RU_RATES0 $RATE" RU_US0="$RU_US0 $USMSG"
            fi
        done
    done
    node_stop "$RN0"
    node_stop "$RN1"
    RU_RATE0=$(median $RU_RATES0)
    RU_RATE1=$(median $RU_RATES1)
    say "rules: runs with $RULES_N rules:$RU_RATES1 msg/s ($(median $RU_US1) us/msg of server CPU); without:$RU_RATES0 msg/s ($(median $RU_US0) us/msg)"
    RULES_LINE="rules: $RULES_N rules $RU_RATE1 msg/s, no rules $RU_RATE0 msg/s, ratio $(calc %.2f "$RU_RATE1 / $RU_RATE0")"
fi

# ================================================================ 7. milter

MILTER_LINE=""
if [ "$DO_MILTER" = 1 ] && ! "$PY" -c "import Milter" 2>/dev/null; then
    MILTER_LINE="milter: not measured: python3-milter (import Milter) is not installed"
elif [ "$DO_MILTER" = 1 ]; then
    MID=$(mkdir_rand milter)
    MI_PORT=$("$PY" "$LIB" freeport)
    # the milter logs one short line per message it accepted: the check
    # that every message of the node with the milter went through it
    "$PY" "$ROOT/tests/system/testmilter.py" lib --port "$MI_PORT" \
        --log "$MID/milter.log" --spec '{"accept_all": true, "log": "eom"}' \
        > "$MID/milter.out" 2> "$MID/milter.err" &
    MILTER_PID=$!
    i=0
    while ! grep -q '^READY' "$MID/milter.out" 2>/dev/null && [ $i -lt 100 ]; do
        sleep 0.1; i=$((i + 1))
    done
    if ! grep -q '^READY' "$MID/milter.out"; then
        say "milter: the test milter did not start:"
        sed 's/^/    /' "$MID/milter.err"
        exit 2
    fi
    # mi_node ND MILTER: a node of 1. (accepting only); MILTER 1 calls the
    # milter, 0 does not
    mi_node() {
        node_conf "$1" 1 "$1/spool" "$MAILBOX" <<EOF
Qsleep_time 3600
Immed_delivery 0
$(if [ "$2" = 1 ]; then echo "Milters \"inet:127.0.0.1:$MI_PORT\""; fi)
EOF
        echo 1 > "$1/expect"      # the probe
        if [ "$2" = 1 ]; then : > "$1/with-milter"; fi
    }
    # mi_seen ND LABEL EXPECTED: with the milter, the milter must have
    # accepted every message the node accepted
    mi_seen() {
        [ -f "$1/with-milter" ] || return 0
        seen=$(lines "$MID/milter.log")
        [ "$seen" -eq "$3" ] && return 0
        say "$2: the milter accepted $seen messages, expected $3 (was it called?)"
        return 1
    }
    # mi_accept ND LABEL N: ab_accept, and MUSMSG (the milter's CPU
    # microseconds per message)
    mi_accept() {
        m0=$(cpu "$MILTER_PID")
        ab_accept "$1" "$2" "$3" mi_seen
        m1=$(cpu "$MILTER_PID")
        MUSMSG=$(calc %.0f "($m1 - $m0) * 1000000 / $3")
    }
    MN0=$(mkdir_rand selor-nomilter)
    MN1=$(mkdir_rand selor-milter)
    mi_node "$MN0" 0
    mi_node "$MN1" 1
    node_start "$MN0" "selor no milter"
    node_start "$MN1" "selor milter"
    node_probe "$MN0" "selor no milter"
    node_probe "$MN1" "selor milter"
    node_mark "$MN0" "selor no milter"
    node_mark "$MN1" "selor milter"
    mi_accept "$MN0" "selor no milter warm-up" "$MILTER_WARMUP"
    mi_accept "$MN1" "selor milter warm-up" "$MILTER_WARMUP"
    # the order alternates as in 6.: without, with; with, without; ...
    MI_RATES0="" MI_RATES1="" MI_US0="" MI_US1="" MI_MUS=""
    r=1
    while [ $r -le "$MILTER_ROUNDS" ]; do
        if [ $((r % 2)) = 1 ]; then order="0 1"; else order="1 0"; fi
        r=$((r + 1))
        for k in $order; do
            if [ "$k" = 1 ]; then
                mi_accept "$MN1" "selor milter" "$MILTER_MSGS"
                MI_RATES1="$MI_RATES1 $RATE" MI_US1="$MI_US1 $USMSG" MI_MUS="$MI_MUS $MUSMSG"
            else
                mi_accept "$MN0" "selor no milter" "$MILTER_MSGS"
                MI_RATES0="$MI_RATES0 $RATE" MI_US0="$MI_US0 $USMSG"
            fi
        done
    done
    node_stop "$MN0"
    node_stop "$MN1"
    kill -KILL "$MILTER_PID" 2>/dev/null
    wait "$MILTER_PID" 2>/dev/null
    MILTER_PID=""
    MI_RATE0=$(median $MI_RATES0)
    MI_RATE1=$(median $MI_RATES1)
    say "milter: runs with the milter:$MI_RATES1 msg/s ($(median $MI_US1) us/msg of server CPU, $(median $MI_MUS) us/msg in the milter); without:$MI_RATES0 msg/s ($(median $MI_US0) us/msg)"
    MILTER_LINE="milter: accept-all milter $MI_RATE1 msg/s, no milter $MI_RATE0 msg/s, ratio $(calc %.2f "$MI_RATE1 / $MI_RATE0")"
fi

# ================================================================ results

FSYNC_LINE=""
if [ "$DO_FSYNC" = 1 ]; then
    # each in a directory of its own, in a group nobody deleted from
    set -- $("$PY" "$LIB" fsync "$(mkdir_rand fsync1)" 1 5)
    f1=$3
    set -- $("$PY" "$LIB" fsync "$(mkdir_rand fsync8)" 8 5)
    f8=$3
    FSYNC_LINE="fsync ceiling (write+fsync+rename of 1 KB files, 5 s each): 1 writer $f1 files/s, 8 writers $f8 files/s"
    [ "$DO_ACCEPT" = 1 ] && FSYNC_LINE="$FSYNC_LINE; selor = $(calc %.2f "$SRATE / $f8") of the 8-writer ceiling"
fi

# Memory of a node holding 10,000 idle connections (the design brief's target).
IDLE_LINE=$("$PY" "$ROOT/tests/bench/idle.py" 10000 2>&1 | tail -1)

say "finished in $(( $(date +%s) - START )) s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$ROUNDS" -gt 1 ] && [ "$DO_ACCEPT" = 1 ] && say "selor runs:$SELOR_RATES msg/s; postfix runs:${PF_RATES:- none} msg/s (medians below)"
[ -n "$FSYNC_LINE" ] && echo "$FSYNC_LINE"
[ -n "$IDLE_LINE" ] && echo "$IDLE_LINE"
[ -n "${IDLE_TLS_LINE:-}" ] && echo "$IDLE_TLS_LINE"
[ -n "$TLS_LINE" ] && echo "$TLS_LINE"
[ -n "$PGSQL_LINES" ] && echo "$PGSQL_LINES"
[ -n "$RULES_LINE" ] && echo "$RULES_LINE"
[ -n "$MILTER_LINE" ] && echo "$MILTER_LINE"
[ -n "$E2E_LINE" ] && echo "$E2E_LINE"
[ -n "$CLUSTER_LINES" ] && echo "$CLUSTER_LINES"
if [ "$DO_ACCEPT" = 0 ]; then
    echo "accept: not measured (--no-accept)"
elif [ "$PF_OK" = 1 ] && [ -n "$PF_RATES" ]; then
    PRATE=$(median $PF_RATES)
    echo "accept: selor $SRATE msg/s, postfix $PRATE msg/s, ratio $(calc %.2f "$SRATE / $PRATE")x"
else
    echo "postfix not measured: $PF_REASON"
    echo "accept: selor $SRATE msg/s"
fi
exit 0
