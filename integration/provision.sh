#!/usr/bin/env bash
# provision.sh: make this Debian 12 machine able to run ipmi-cuse's VM tests.
#
# It installs the Debian packages the testbed needs (QEMU, busybox, the IPMI
# client tools, and systemd, kmod and dpkg for the systemd-as-init guest)
# when they are missing, and unpacks two Debian kernels into a cache
# directory outside the repository ($IPMI_CUSE_CACHE, default
# /var/cache/ipmi-cuse-testbed), where they are reused across runs: the one
# linux-image-amd64 currently depends on (6.1, kernel/current) and the
# newest 6.12 one linux-image-6.12-amd64 depends on (kernel/6.12). Each gets
# depmod's output (for modprobe in the systemd guest) and uncompressed
# copies of the IPMI, FUSE and I2C modules under ko/ (busybox's insmod
# cannot read 6.12's .ko.xz). It is idempotent and takes well under a second
# when everything is already present; `apt-get update` runs only when
# something has to be installed or looked up. Must run as root.
set -euo pipefail

CACHE=${IPMI_CUSE_CACHE:-/var/cache/ipmi-cuse-testbed}
PACKAGES=(qemu-system-x86 busybox-static ipmitool freeipmi-tools freeipmi-bmc-watchdog cpio
	systemd libsystemd-shared kmod dpkg libc-bin tar xz-utils lintian)
# Other installers may hold the dpkg lock (CI, or several test runs at once).
APT=(apt-get -o DPkg::Lock::Timeout=600)

log() { echo "provision: $*" >&2; }

updated=0
apt_update() {
	if [ "$updated" = 0 ]; then
		log "apt-get update"
		DEBIAN_FRONTEND=noninteractive "${APT[@]}" update -qq
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
	DEBIAN_FRONTEND=noninteractive "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The kernels. A kernel already unpacked in the cache is reused as is (set
# IPMI_CUSE_KERNEL_REFRESH=1 to move to whatever the meta-package depends on
# now). The -cloud-amd64 flavour must not be used: it has no IPMI modules;
# nor -rt.
# Modules the guests load (with their dependencies, for modprobe): IPMI,
# FUSE/CUSE (fuse is built into 6.12) and the I2C ones SSIF needs.
GUEST_MODULES="drivers/char/ipmi/ipmi_msghandler drivers/char/ipmi/ipmi_devintf drivers/char/ipmi/ipmi_si
	drivers/char/ipmi/ipmi_watchdog drivers/char/ipmi/ipmi_ssif fs/fuse/fuse fs/fuse/cuse
	drivers/i2c/i2c-dev drivers/i2c/i2c-smbus drivers/i2c/busses/i2c-piix4"

# kpkg META prints the linux-image package META depends on.
kpkg() { apt-cache depends "$1" 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-amd64$/ { print $2; exit }'; }

# finish DIR: depmod output and uncompressed guest modules under DIR/ko.
# Idempotent; run on kernels unpacked by an older provision.sh too.
finish() {
	local d=$1 kver m f
	kver=$(basename "$(ls -d "$d"/lib/modules/*/ | head -n1)")
	if [ ! -e "$d/lib/modules/$kver/modules.dep" ]; then
		depmod -b "$d" "$kver"
	fi
	if [ ! -e "$d/ko/.complete" ]; then
		rm -rf "$d/ko" && mkdir -p "$d/ko"
		for m in $GUEST_MODULES; do
			for f in "$d/lib/modules/$kver/kernel/$m".ko*; do
				[ -e "$f" ] || continue
				case "$f" in
				*.ko.xz) xz -dc "$f" >"$d/ko/$(basename "$m").ko" ;;
				*.ko.zst) zstd -qdc "$f" >"$d/ko/$(basename "$m").ko" ;;
				*.ko) cp "$f" "$d/ko/" ;;
				esac
			done
		done
		touch "$d/ko/.complete"
	fi
}

# kernel META LINK [REQUIRED_MODULES]: unpack the kernel META depends on into
# $CACHE/kernel/<package> and point $CACHE/kernel/LINK at it.
kernel() {
	local meta=$1 link=$2 required=$3 pkg dir deb m
	if [ -e "$CACHE/kernel/$link/.complete" ] && [ "${IPMI_CUSE_KERNEL_REFRESH:-0}" != 1 ]; then
		finish "$CACHE/kernel/$link/"
		return 0
	fi
	pkg=$(kpkg "$meta" || true)
	if [ -z "$pkg" ]; then
		apt_update
		pkg=$(kpkg "$meta")
	fi
	if [ -z "$pkg" ]; then
		log "cannot find the kernel package $meta depends on"
		exit 1
	fi
	case "$pkg" in *cloud* | *-rt-*) log "refusing $pkg: the cloud and rt flavours are not the testbed's"; exit 1 ;; esac

	dir="$CACHE/kernel/$pkg"
	if [ ! -e "$dir/.complete" ]; then
		mkdir -p "$CACHE/debs"
		# apt-get download drops privileges to _apt when it can write the directory.
		chown _apt "$CACHE/debs" 2>/dev/null || true
		rm -rf "$dir" "$dir.tmp" "$CACHE/debs/$pkg"_*.deb
		log "downloading $pkg"
		(cd "$CACHE/debs" && apt-get download -qq "$pkg") || { apt_update; (cd "$CACHE/debs" && apt-get download -qq "$pkg"); }
		deb=$(ls "$CACHE/debs/$pkg"_*.deb | head -n1)
		log "unpacking $deb"
		mkdir -p "$dir.tmp"
		dpkg -x "$deb" "$dir.tmp"
		for m in $required; do
			if ! ls "$dir.tmp"/lib/modules/*/kernel/$m.ko* >/dev/null 2>&1; then
				log "$pkg lacks $m.ko"
				exit 1
			fi
		done
		# The kernel package itself is not needed once unpacked.
		rm -f "$deb"
		finish "$dir.tmp"
		touch "$dir.tmp/.complete"
		mv "$dir.tmp" "$dir"
	fi
	finish "$dir"
	ln -sfn "$pkg" "$CACHE/kernel/$link"
	log "kernel $pkg ready in $dir ($link)"
}

IPMI_MODULES="drivers/char/ipmi/ipmi_msghandler drivers/char/ipmi/ipmi_devintf drivers/char/ipmi/ipmi_si drivers/char/ipmi/ipmi_watchdog"
kernel linux-image-amd64 current "$IPMI_MODULES fs/fuse/fuse fs/fuse/cuse"
# 6.12 has fuse built in; only cuse is a module.
kernel linux-image-6.12-amd64 6.12 "$IPMI_MODULES fs/fuse/cuse"
