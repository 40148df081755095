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
postgresql openssl procps iproute2 util-linux
clang libclang-rt-14-dev llvm fuse3 python3-pyfuse3 faketime libfaketime
postsrsd haproxy python3-prometheus-client redis-sentinel
pandoc lintian dpkg-dev man-db"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if [ -n "$missing" ]; then
    echo "make deps: installing:$missing"
    # Postfix is only used for its tools (smtp-source, smtp-sink) and as the
    # benchmark peer, started by the scripts with their own configuration.
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    case " $missing " in
    *" postsrsd "*)
        # Only the SRS interoperability test uses it, as its own process on
        # free ports; the package's service (ports 10001/10002, a secret in
        # /etc) is not wanted on a build machine.
        if [ -d /run/systemd/system ]; then
            $SUDO systemctl disable --now postsrsd >/dev/null 2>&1 || true
        else
            $SUDO service postsrsd stop >/dev/null 2>&1 || true
            $SUDO update-rc.d postsrsd disable >/dev/null 2>&1 || true
        fi
        ;;
    esac
    case " $missing " in
    *" redis-sentinel "*)
        # tests/system/test_sentinel.py starts its own sentinels on free
        # ports: the package's service (port 26379) is not wanted.
        if [ -d /run/systemd/system ]; then
            $SUDO systemctl disable --now redis-sentinel >/dev/null 2>&1 || true
        else
            $SUDO service redis-sentinel stop >/dev/null 2>&1 || true
            $SUDO update-rc.d redis-sentinel disable >/dev/null 2>&1 || true
        fi
        ;;
    esac
    case " $missing " in
    *" haproxy "*)
        # Only tests/system/test_proxy.py uses it, started by the test on
        # free loopback ports with its own configuration: no service.
        if [ -d /run/systemd/system ]; then
            $SUDO systemctl disable --now haproxy >/dev/null 2>&1 || true
        else
            $SUDO service haproxy stop >/dev/null 2>&1 || true
            $SUDO update-rc.d haproxy disable >/dev/null 2>&1 || true
        fi
        ;;
    esac
fi

if [ "$(id -u)" -eq 0 ]; then
    getent group selor >/dev/null || groupadd --system selor
    getent passwd selor >/dev/null || \
        useradd --system --gid selor --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin selor
fi
exit 0
