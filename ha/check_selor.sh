#!/bin/bash
# check_selor.sh - health check for load balancers and monitoring.
#   check_selor.sh [host] [port] [selor.conf]
# Exit 0 when the node greets with 220 (and, in a cluster, is not drained);
# 1 otherwise, with the reason on standard output (Nagios style).
HOST=${1:-127.0.0.1}
PORT=${2:-25}
CONF=${3:-}
greeting=$(timeout 5 sh -c "exec 3<>/dev/tcp/$HOST/$PORT && head -c 200 <&3 && printf 'QUIT\r\n' >&3" 2>/dev/null | head -1)
case "$greeting" in
220*) ;;
*) echo "CRITICAL: no 220 greeting from $HOST:$PORT (${greeting:-nothing})"; exit 1 ;;
esac
if [ -n "$CONF" ] && command -v selorctl >/dev/null 2>&1; then
    sid=$(sed -n 's/^Sid *"\(.*\)".*/\1/p' "$CONF")
    if [ -n "$sid" ] && selorctl -c "$CONF" nodes 2>/dev/null | grep -q "^$sid  *draining"; then
        echo "WARNING: node $sid is drained"; exit 1
    fi
fi
echo "OK: $greeting"
exit 0
