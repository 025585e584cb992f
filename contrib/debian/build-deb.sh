#!/usr/bin/env bash
# build-deb.sh BINARY VERSION REVISION OUTDIR: stage the Debian package's
# files from the repository (run from its top folder) and build
# OUTDIR/ipmi-cuse_VERSION_amd64.deb with dpkg-deb. `make deb` calls it.
set -euo pipefail
bin=$1 version=$2 revision=$3 out=$4
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
umask 022

install -D -m0755 "$bin" "$stage/usr/sbin/ipmi-cuse"
install -D -m0644 contrib/systemd/ipmi-cuse.service "$stage/lib/systemd/system/ipmi-cuse.service"
install -D -m0644 "contrib/systemd/modprobe@cuse.service.d/ipmi-cuse.conf" "$stage/lib/systemd/system/modprobe@cuse.service.d/ipmi-cuse.conf"
install -D -m0644 contrib/default/ipmi-cuse "$stage/etc/default/ipmi-cuse"
install -D -m0644 contrib/modprobe.d/ipmi-cuse.conf "$stage/etc/modprobe.d/ipmi-cuse.conf"
install -D -m0644 contrib/modules-load.d/ipmi-cuse.conf "$stage/etc/modules-load.d/ipmi-cuse.conf"
install -d -m0755 "$stage/usr/share/man/man8" "$stage/usr/share/doc/ipmi-cuse" "$stage/usr/share/lintian/overrides"
gzip -9nc contrib/man/ipmi-cuse.8 >"$stage/usr/share/man/man8/ipmi-cuse.8.gz"
install -m0644 contrib/debian/copyright "$stage/usr/share/doc/ipmi-cuse/copyright"
install -D -m0644 contrib/systemd/preop-panic.conf "$stage/usr/share/doc/ipmi-cuse/examples/preop-panic.conf"
install -m0644 contrib/debian/lintian-overrides "$stage/usr/share/lintian/overrides/ipmi-cuse"
# A native package's changelog: one entry for this build, dated by the
# commit so the package is reproducible.
date=$(git log -1 --format=%cD 2>/dev/null || date -R)
maint=$(sed -n 's/^Maintainer: //p' contrib/debian/control.in)
printf 'ipmi-cuse (%s) unstable; urgency=medium\n\n  * Built from revision %s.\n\n -- %s  %s\n' \
	"$version" "$revision" "$maint" "$date" | gzip -9n >"$stage/usr/share/doc/ipmi-cuse/changelog.gz"

install -d -m0755 "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" contrib/debian/control.in >"$stage/DEBIAN/control"
for s in postinst prerm postrm; do
	install -m0755 "contrib/debian/$s" "$stage/DEBIAN/$s"
done
(cd "$stage" && find etc -type f | sed 's|^|/|' | sort) >"$stage/DEBIAN/conffiles"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/ipmi-cuse_${version}_amd64.deb"
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s) \
	dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
