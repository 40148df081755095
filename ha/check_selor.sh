#!/bin/bash
# check_selor.sh - health check for load balancers and monitoring.
#   check_selor.sh [host] [port] [selor.conf]
# Exit 0 when the node greets with 220 (and, in a cluster, is not drained;
# with Metrics_port in selor.conf, when its GET /health answers 200);
# 1 otherwise, with the reason on standard output (Nagios style).
# Behind HAProxy the balancer itself asks each node through Agent_port
# (see haproxy.cfg.example): this script is for monitoring.
HOST=${1:-127.0.0.1}
PORT=${2:-25}
CONF=${3:-}
greeting=$(timeout 5 bash -c "exec 3<>/dev/tcp/$HOST/$PORT && IFS= read -r line <&3 && printf '%s\n' \"\$line\" && printf 'QUIT\r\n' >&3" 2>/dev/null | tr -d '\r' | head -1)
case "$greeting" in
220*) ;;
*) echo "CRITICAL: no 220 greeting from $HOST:$PORT (${greeting:-nothing})"; exit 1 ;;
esac
mport=""
[ -n "$CONF" ] && mport=$(sed -n 's/^Metrics_port *"\{0,1\}\([0-9]*\)"\{0,1\}.*/\1/p' "$CONF" | tail -1)
if [ -n "$mport" ] && [ "$mport" != 0 ]; then
    mhost=$(sed -n 's/^Bind_address *"\(.*\)".*/\1/p' "$CONF" | tail -1)
    case "$mhost" in ""|0.0.0.0|::) mhost=127.0.0.1 ;; esac
    health=$(timeout 5 bash -c "exec 3<>/dev/tcp/$mhost/$mport && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && cat <&3" 2>/dev/null | tr -d '\r')
    status=$(printf '%s\n' "$health" | head -1 | cut -d' ' -f2)
    reason=$(printf '%s\n' "$health" | tail -1)
    case "$status" in
    200) ;;
    503) echo "WARNING: node not ready: $reason"; exit 1 ;;
    *) echo "CRITICAL: no answer from http://$mhost:$mport/health"; exit 1 ;;
    esac
    echo "OK: $greeting (health: ok)"
    exit 0
fi
if [ -n "$CONF" ] && command -v selorctl >/dev/null 2>&1; then
    sid=$(sed -n 's/^Sid *"\(.*\)".*/\1/p' "$CONF")
    if [ -n "$sid" ] && selorctl -c "$CONF" nodes 2>/dev/null | grep -q "^$sid  *draining"; then
        echo "WARNING: node $sid is drained"; exit 1
    fi
fi
echo "OK: $greeting"
exit 0
