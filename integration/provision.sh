#!/usr/bin/env bash
# provision.sh: make this Debian 12 machine able to run ipmi-cuse's VM tests.
#
# It installs the Debian packages the testbed needs (QEMU, busybox, the IPMI
# client tools) when they are missing, and unpacks the Debian kernel that
# linux-image-amd64 currently depends on into a cache directory outside the
# repository ($IPMI_CUSE_CACHE, default /var/cache/ipmi-cuse-testbed), where
# it is reused across runs. It is idempotent and takes well under a second
# when everything is already present; `apt-get update` runs only when
# something has to be installed or looked up. Must run as root.
set -euo pipefail

CACHE=${IPMI_CUSE_CACHE:-/var/cache/ipmi-cuse-testbed}
PACKAGES=(qemu-system-x86 busybox-static ipmitool freeipmi-tools freeipmi-bmc-watchdog cpio)

log() { echo "provision: $*" >&2; }

updated=0
apt_update() {
	if [ "$updated" = 0 ]; then
		log "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		updated=1
	fi
}

if [ "$(id -u)" != 0 ]; then
	log "must run as root (it installs Debian packages and writes $CACHE)"
	exit 1
fi

# 1. Debian packages.
missing=()
for p in "${PACKAGES[@]}"; do
	if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -gt 0 ]; then
	apt_update
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The kernel. A kernel already unpacked in the cache is reused as is (set
# IPMI_CUSE_KERNEL_REFRESH=1 to move to whatever linux-image-amd64 depends on
# now). The -cloud-amd64 flavour must not be used: it has no IPMI modules.
if [ -e "$CACHE/kernel/current/.complete" ] && [ "${IPMI_CUSE_KERNEL_REFRESH:-0}" != 1 ]; then
	exit 0
fi
kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-amd64$/ { print $2; exit }'; }
pkg=$(kpkg || true)
if [ -z "$pkg" ]; then
	apt_update
	pkg=$(kpkg)
fi
if [ -z "$pkg" ]; then
	log "cannot find the kernel package linux-image-amd64 depends on"
	exit 1
fi
case "$pkg" in *cloud*) log "refusing $pkg: the cloud flavour has no IPMI modules"; exit 1 ;; esac

dir="$CACHE/kernel/$pkg"
if [ ! -e "$dir/.complete" ]; then
	mkdir -p "$CACHE/debs"
	# apt-get download drops privileges to _apt when it can write the directory.
	chown _apt "$CACHE/debs" 2>/dev/null || true
	rm -rf "$dir" "$CACHE/debs/$pkg"_*.deb
	log "downloading $pkg"
	(cd "$CACHE/debs" && apt-get download -qq "$pkg") || { apt_update; (cd "$CACHE/debs" && apt-get download -qq "$pkg"); }
	deb=$(ls "$CACHE/debs/$pkg"_*.deb | head -n1)
	log "unpacking $deb"
	mkdir -p "$dir.tmp"
	dpkg -x "$deb" "$dir.tmp"
	for m in drivers/char/ipmi/ipmi_msghandler drivers/char/ipmi/ipmi_devintf drivers/char/ipmi/ipmi_si \
		drivers/char/ipmi/ipmi_watchdog fs/fuse/fuse fs/fuse/cuse; do
		if ! ls "$dir.tmp"/lib/modules/*/kernel/$m.ko* >/dev/null 2>&1; then
			log "$pkg lacks $m.ko"
			exit 1
		fi
	done
	# The kernel package itself is not needed once unpacked.
	rm -f "$deb"
	touch "$dir.tmp/.complete"
	mv "$dir.tmp" "$dir"
fi
ln -sfn "$pkg" "$CACHE/kernel/current"
log "kernel $pkg ready in $dir"
