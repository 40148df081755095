#!/bin/sh
# run-dev.sh - `make run`: one Selor node in the foreground, from
# conf/selor.dev.conf (port 2525, spool and logs under ./var, no Redis).
# SELOR_DEV_PORT=N listens on N instead (a second checkout, the tests).
set -eu
conf=conf/selor.dev.conf
port=${SELOR_DEV_PORT:-2525}
mkdir -p var
if [ "$port" != 2525 ]; then
    sed -e "s/^Port .*/Port $port/" "$conf" > var/selor.dev.port.conf
    conf=var/selor.dev.port.conf
fi

# As root, Selor drops to the user "selor", which must be able to reach
# ./var.  A checkout under a private directory (/root) is out of its reach:
# then run as root, with a warning, rather than fail.
if [ "$(id -u)" -eq 0 ] && ! su -s /bin/sh selor -c "test -x '$PWD/var'" 2>/dev/null; then
    echo "make run: user selor cannot reach $PWD; this dev node runs as root" >&2
    sed -e 's/^User .*/User "root"/' -e 's/^Group .*/Group "root"/' "$conf" > var/selor.dev.root.conf
    conf=var/selor.dev.root.conf
fi

# The demo mailbox: a Maildir and maildrop's filter file, owned by the user
# the node runs as (maildrop refuses a filter others could change).
owner=$(id -un)
[ "$(id -u)" -eq 0 ] && [ "$conf" != var/selor.dev.root.conf ] && owner=selor
mkdir -p var/mail/demo/Maildir/cur var/mail/demo/Maildir/new var/mail/demo/Maildir/tmp
printf 'to "$1"\n' > var/mail/mailfilter
chmod 600 var/mail/mailfilter
chown -R "$owner" var/mail 2>/dev/null || true

cat <<MSG
Selor dev node: 127.0.0.1:$port, spool var/spool, logs var/log.
Demo mailbox: demo@selor.test (password "demo"), delivered into
var/mail/demo/Maildir. Try:
    swaks --server 127.0.0.1:$port --to demo@selor.test
Stop with Ctrl-C.
MSG
exec ./build/selor -f -c "$conf"
