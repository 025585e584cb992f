# The one test command is `make test`: static checks, unit tests with the
# race detector, and the VM tests (which provision QEMU, a Debian kernel and
# the client tools on first use). .ci/run calls exactly it.

GO ?= go
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: test lint unit staticcheck provision vm demo bench-vm bench-watchdog bench-watchdog-ssif bench-restart bench-restart-profile build deb

# The revision and version `ipmi-cuse --version` prints and the metrics'
# build_info carries. They are stamped with -ldflags -X because Go's own VCS
# stamping is off where GOFLAGS has -buildvcs=false and in git worktrees.
REVISION ?= $(shell r=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD -- 2>/dev/null && echo $$r || echo $$r-dirty; } || echo unknown)
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
GO_LDFLAGS := -X github.com/ipmi-cuse/ipmi-cuse/internal/buildinfo.stampVersion=$(VERSION) \
	-X github.com/ipmi-cuse/ipmi-cuse/internal/buildinfo.stampRevision=$(REVISION)

# A static ipmi-cuse in the top folder, stamped with its revision.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(GO_LDFLAGS)" -o ipmi-cuse ./cmd/ipmi-cuse

# The Debian package, dist/ipmi-cuse_$(DEB_VERSION)_amd64.deb: the static
# binary in /usr/sbin, the hardened unit, /etc/default/ipmi-cuse, the
# modprobe blacklist, cuse in modules-load.d and ipmi-cuse(8). Needs only
# Go and dpkg-deb (no Debian toolchain); `lintian dist/*.deb` checks it.
DEB_VERSION ?= $(shell v=$$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S 2>/dev/null) && echo 0.1.0~git$$v.$$(git rev-parse --short=12 HEAD) || echo 0.1.0)
deb:
	mkdir -p dist
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(GO_LDFLAGS)" -o dist/ipmi-cuse ./cmd/ipmi-cuse
	bash contrib/debian/build-deb.sh dist/ipmi-cuse "$(DEB_VERSION)" "$(REVISION)" dist

test: lint unit vm

lint: staticcheck
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed on:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...

staticcheck:
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

unit:
	$(GO) test -race ./...

# The VM tests (integration/) boot Debian's kernel in QEMU; they skip unless
# IPMI_CUSE_VM=1, so `unit` above stays host-only and fast.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The VM suite has grown (BT, SSIF, two interfaces, systemd guests on two
# kernels, upgrades): 75m leaves room on a slow machine inside CI's 90 minutes.
VM_TIMEOUT ?= 75m

# Installs QEMU, busybox and the IPMI clients from Debian when missing and
# caches the kernel in $${IPMI_CUSE_CACHE:-/var/cache/ipmi-cuse-testbed}.
provision:
	$(SUDO) env IPMI_CUSE_CACHE="$(IPMI_CUSE_CACHE)" bash integration/provision.sh

# Prints the VM timings and every failure, not the passing subtests.
vm: provision
	@log=$$(mktemp); IPMI_CUSE_VM=1 $(GO) test -count=1 -timeout $(VM_TIMEOUT) -v ./integration/... >$$log 2>&1; rc=$$?; \
	grep -v -e '^=== ' -e '^        --- PASS' $$log; rm -f $$log; exit $$rc

# Get Device ID round trips on QEMU's BMC, two boots: the kernel driver;
# then the reference C CUSE server, ipmi-cuse --bmc sim and ipmi-cuse on the
# emulated KCS, interleaved; each with a C and a Go client at depth 1 and 8,
# as a markdown table with the servers' system calls, context switches and
# CUSE requests per round trip (needs gcc and libc6-dev on the host). Not
# part of `make test`. IPMI_CUSE_BENCH_N=N sets the requests per row
# (default 1000), IPMI_CUSE_BENCH_ROUNDS the interleaved rounds (3), and
# IPMI_CUSE_BENCH_QUICK=1 measures only the CUSE servers, C client, depth 1.
# The table gives each server's CPU time per round trip (its threads'
# schedstat) and the guest's idle time. IPMI_CUSE_BENCH_PERF=1 puts the
# host's perf (linux-perf) in the guest: the servers' system calls per
# round trip (perf stat) and a CPU profile of each (perf record -g);
# IPMI_CUSE_BENCH_ALT=PATH measures another ipmi-cuse build in the same
# rounds (IPMI_CUSE_BENCH_ALT_ENV: its environment).
bench-vm: provision
	IPMI_CUSE_VM=1 IPMI_CUSE_BENCH=1 $(GO) test -count=1 -timeout $(VM_TIMEOUT) -run '^TestBenchVM$$' -v ./integration/

# The slow-BMC watchdog scenario at full length (60 s at 200 ms/message,
# 30 s silent, then a BMC reboot) with 8 flooding clients, five boots: the
# kernel driver (/dev/ipmi0 patter; ipmi_watchdog), ipmi-cuse (/dev/ipmi0
# patter; /dev/watchdog) and ipmi-cuse without the priority lane, as a
# markdown table; then two more boots with 29 clients × 4 (every file the
# device allows), ipmi-cuse with and without the priority lane: round-robin's
# worst case (pat gap ~8.2 s of the 10 s window, against ~2.2 s with the
# lane; see TestBenchWatchdogManyClients). Not part of `make test`
# (TestSlowBMCWatchdog asserts a shorter version there).
# IPMI_CUSE_WATCHDOG_SCALE=ci runs the short one.
bench-watchdog: provision
	IPMI_CUSE_VM=1 IPMI_CUSE_BENCH=1 $(GO) test -count=1 -timeout $(VM_TIMEOUT) -run '^TestBenchWatchdog(ManyClients)?$$' -v ./integration/

# The slow-BMC watchdog scenario on SSIF (QEMU's smbus-ipmi, bmcsim behind
# ipmi-bmc-extern): the kernel's ipmi_ssif against ipmi-cuse, the same five
# variants as bench-watchdog. Not part of `make test`.
# IPMI_CUSE_WATCHDOG_SCALE=ci runs the short timeline.
bench-watchdog-ssif: provision
	IPMI_CUSE_VM=1 IPMI_CUSE_BENCH=1 $(GO) test -count=1 -timeout $(VM_TIMEOUT) -run '^TestBenchWatchdogSSIF$$' -v ./integration/

# Upgrades and crashes under systemd on 6.1 and 6.12 at full length: ten
# reloads alternating two binaries, and the 2 s bound on a restart after a
# kill (make test runs four reloads and only requires a restart).
# One kernel: make bench-restart KERNEL=6.12
bench-restart: provision
	IPMI_CUSE_VM=1 IPMI_CUSE_BENCH=1 $(GO) test -count=1 -timeout $(VM_TIMEOUT) -run '^TestSystemdRestarts$$/$(if $(KERNEL),^$(KERNEL)$$)' -v ./integration/

# Where a crash restart's time goes (issue 9): eight kills under the
# bench's clients alternating the shipped unit with the restart settings
# it had before (or IPMI_CUSE_RESTART_DROPIN), phase by phase, and the CPU
# systemd's set-up of the unit's sandbox costs, directive group by group.
# KERNEL=6.1 profiles the restarts on 6.1 (default 6.12).
bench-restart-profile: provision
	IPMI_CUSE_VM=1 IPMI_CUSE_BENCH=1 IPMI_CUSE_KERNEL=$(KERNEL) $(GO) test -count=1 -timeout $(VM_TIMEOUT) -run '^(TestSystemdRestartProfile|TestSystemdSandboxCost)$$' -v ./integration/

# Boots the VM, serves /dev/ipmi0 with ipmi-cuse and runs a few clients.
demo: provision
	$(GO) run ./integration/cmd/demo
