#!/bin/sh
# install-deps.sh - install what Selor's build and tests need (`make deps`).
#
# Idempotent and quick when everything is present: one dpkg-query, and
# apt-get only for what is missing.  Also creates the system user and group
# "selor" (the default User/Group) when run as root.
set -eu

PKGS="build-essential pkg-config
libuv1-dev libhiredis-dev libc-ares-dev libpq-dev uuid-dev libssl-dev
libcrypt-dev libcmocka-dev
python3-pytest swaks libnet-ssleay-perl libio-socket-ssl-perl redis-server dnsmasq-base maildrop postfix
postgresql openssl procps iproute2 util-linux strace
clang libclang-rt-14-dev llvm fuse3 python3-pyfuse3 faketime libfaketime
postsrsd haproxy python3-prometheus-client redis-sentinel
pandoc lintian dpkg-dev man-db
rspamd opendkim opendkim-tools python3-dkim python3-milter
clamav-daemon clamav-freshclam clamav-milter"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# A service the package started and enabled: stopped and disabled.
no_service() {
    if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$1" >/dev/null 2>&1 || true
    else
        $SUDO service "$1" stop >/dev/null 2>&1 || true
        $SUDO update-rc.d "$1" disable >/dev/null 2>&1 || true
    fi
}

if [ -n "$missing" ]; then
    echo "make deps: installing:$missing"
    # Postfix is only used for its tools (smtp-source, smtp-sink) and as the
    # benchmark peer, started by the scripts with their own configuration.
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    # Packages whose service the tests do not want: each test starts its own
    # process on free loopback ports with its own configuration.  postsrsd
    # (the SRS interoperability test; its service holds ports 10001/10002
    # and a secret in /etc), redis-sentinel (test_sentinel.py; port 26379),
    # haproxy (test_proxy.py, test_haproxy_cluster.py), rspamd, opendkim
    # and ClamAV (the milter tests run their own, on loopback ports;
    # freshclam would download the virus databases: the test has its own).
    for svc in postsrsd redis-sentinel haproxy rspamd opendkim \
               clamav-daemon clamav-freshclam clamav-milter; do
        case " $missing " in *" $svc "*) no_service "$svc" ;; esac
    done
fi

if [ "$(id -u)" -eq 0 ]; then
    getent group selor >/dev/null || groupadd --system selor
    getent passwd selor >/dev/null || \
        useradd --system --gid selor --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin selor
fi
exit 0
