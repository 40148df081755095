#!/bin/sh
# mkdeb.sh - the Debian package, from a finished build (`make deb`).
#
#   sh pkg/deb/mkdeb.sh BUILD     BUILD: the build directory (build)
#
# Stages the package's tree in BUILD/deb/root and writes
# BUILD/deb/selor_VERSION_ARCH.deb.  Takes the modules of `make all` and
# the programs BUILD/pkg/selor and BUILD/pkg/selorctl (default
# configuration /etc/selor/selor.conf); compiles nothing.  The version is
# pkg/deb/changelog's, whose upstream part must be src/core/version.h's.
set -eu

umask 022
TOP=$(pwd)
B=${1:-build}
case $B in /*) ;; *) B=$TOP/$B ;; esac
P=pkg/deb
ROOT=$B/deb/root

die() { echo "mkdeb: $*" >&2; exit 1; }

VERSION=$(dpkg-parsechangelog -l $P/changelog -S Version)
UPSTREAM=$(sed -n 's/^#define SELOR_VERSION "\(.*\)"$/\1/p' src/core/version.h)
[ "${VERSION%-*}" = "$UPSTREAM" ] ||
    die "$P/changelog is at $VERSION, src/core/version.h at $UPSTREAM: add a changelog entry"
ARCH=$(dpkg --print-architecture)
DEB=$B/deb/selor_${VERSION}_$ARCH.deb
for f in $B/pkg/selor $B/pkg/selorctl $B/mod/selor_passwd.so; do
    [ -f "$f" ] || die "$f is missing: run make deb"
done

rm -rf "$ROOT"
mkdir -p "$ROOT/DEBIAN"

# Programs and modules, stripped (the build keeps its debugging symbols).
install -D -m 0755 $B/pkg/selor "$ROOT/usr/sbin/selor"
install -D -m 0755 $B/pkg/selorctl "$ROOT/usr/sbin/selorctl"
for m in $B/mod/*.so; do
    install -D -m 0644 "$m" "$ROOT/usr/lib/selor/$(basename "$m")"
done
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$ROOT"/usr/sbin/* "$ROOT"/usr/lib/selor/*.so

# Configuration (the conffiles) and the service.  accounts.passwd ships
# with comments only; postinst makes it root:selor 0640.
install -D -m 0644 $P/selor.conf "$ROOT/etc/selor/selor.conf"
install -D -m 0644 $P/accounts.passwd "$ROOT/etc/selor/accounts.passwd"
install -D -m 0644 conf/error_report.txt "$ROOT/etc/selor/error_report.txt"
install -D -m 0644 $P/logrotate "$ROOT/etc/logrotate.d/selor"
install -D -m 0644 ha/selor.service "$ROOT/lib/systemd/system/selor.service"

# Manual pages.  selor.8.md is one already; selor.conf.md and selorctl.md
# get a NAME section in place of their title, their sections one level up,
# and the packaged default configuration.
DATE=$(date -u -d "$(dpkg-parsechangelog -l $P/changelog -S Date)" +%Y-%m-%d)
man_page() {  # SOURCE SECTION NAME DESCRIPTION
    out="$ROOT/usr/share/man/man$2/$3.$2"
    mkdir -p "$(dirname "$out")"
    lvl=-1
    [ -n "$4" ] || lvl=0
    if [ -z "$4" ]; then
        cat "$1"
    else
        printf '## NAME\n\n%s - %s\n\n## DESCRIPTION\n\n' "$3" "$4"
        tail -n +2 "$1" | sed 's#/usr/local/selor/selor\.conf#/etc/selor/selor.conf#g'
    fi | pandoc -s -f markdown -t man --shift-heading-level-by=$lvl \
             -M title="$(echo "$3" | tr a-z A-Z)" -M section="$2" \
             -M header="Selor manual" -M footer="selor $UPSTREAM" -M date="$DATE" \
             -o "$out"
    gzip -9n "$out"
}
man_page docs/selor.8.md 8 selor ""
man_page docs/selorctl.md 8 selorctl "list and change the queue of a Selor node"
man_page docs/selor.conf.md 5 selor.conf "the configuration of a Selor node"

# Documentation.
D=$ROOT/usr/share/doc/selor
install -D -m 0644 $P/copyright "$D/copyright"
gzip -9n -c $P/changelog > "$D/changelog.Debian.gz"
install -D -m 0644 $P/lintian-overrides "$ROOT/usr/share/lintian/overrides/selor"
for r in conf/rules/*.rules; do
    install -D -m 0644 "$r" "$D/examples/rules/$(basename "$r")"
done

# Control files.  The dependencies are the libraries the programs and
# modules are linked with (dpkg-shlibdeps wants a debian/control to read).
W=$B/deb/shlibs
rm -rf "$W" && mkdir -p "$W/debian"
printf 'Source: selor\n\nPackage: selor\nArchitecture: any\n' > "$W/debian/control"
LIBDEPS=$(cd "$W" && dpkg-shlibdeps -O -e"$ROOT/usr/sbin/selor" \
              -e"$ROOT/usr/sbin/selorctl" \
              $(for m in "$ROOT"/usr/lib/selor/*.so; do printf -- '-e%s ' "$m"; done) \
              2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$LIBDEPS" ] || die "dpkg-shlibdeps found no dependencies"
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" \
    -e "s/@DEPENDS@/adduser, $LIBDEPS/" $P/control.in > "$ROOT/DEBIAN/control"
install -m 0644 $P/conffiles "$ROOT/DEBIAN/conffiles"
for s in postinst prerm postrm; do
    install -m 0755 $P/$s "$ROOT/DEBIAN/$s"
done
(cd "$ROOT" && find . -type f ! -path './DEBIAN/*' -printf '%P\n' | LC_ALL=C sort |
     xargs -d '\n' md5sum) > "$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/md5sums"

rm -f "$DEB"
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
echo "  DEB   $DEB"
