package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

// watchdogParams are the flags that give the kernel's ipmi_watchdog module
// parameters their equivalents, beyond the older --watchdog-timeout,
// --watchdog-pretimeout, --watchdog-action, --watchdog-preaction and
// --watchdog-nowayout (which are timeout, pretimeout, action, preaction
// and nowayout).
type watchdogParams struct {
	startNow     bool
	preOp        watchdog.PreOp
	panicTimeout time.Duration
	ifnum        int
	genericAPI   bool
}

// watchdogUsage follows the flag list in --help.
const watchdogUsage = `
ipmi_watchdog module parameters and their flags (same defaults):
  timeout=10            --watchdog-timeout 10 (seconds, or a duration: 10s)
  pretimeout=0          --watchdog-pretimeout 0
  action=reset          --watchdog-action reset (none, power_off, power_cycle)
  preaction=pre_none    --watchdog-preaction pre_none (pre_smi, pre_nmi, pre_int)
  preop=preop_none      --watchdog-preop preop_none (preop_panic, preop_give_data)
  start_now=0           --watchdog-start-now
  nowayout=0            --watchdog-nowayout
  panic_wdt_timeout=255 --watchdog-panic-timeout 255
  ifnum_to_use=-1       --watchdog-ifnum -1 (ipmi-cuse's watchdog drives the first interface: -1 or 0)

At start, with --watchdog or --watchdog-device, ipmi-cuse does what
ipmi_watchdog does when it registers: it stops the BMC timer with its own
settings (timer use SMS/OS, action none, the timeout), so a timer the
firmware left armed cannot reset the host; with --watchdog-start-now it
starts the timer instead, and a watchdog daemon must open the device and
pat it within the timeout. Differences that come from running in
userspace:
  preop_give_data  a pretimeout is readable and polls POLLIN on the device,
                   but no SIGIO is sent: CUSE has no fasync.
  preop_panic      ipmi-cuse crashes the kernel through /proc/sysrq-trigger
                   ('c'), once. The file is opened at start; under
                   ipmi-cuse.service, whose sandbox hides it, install the
                   drop-in /usr/share/doc/ipmi-cuse/examples/preop-panic.conf.
  pre_nmi          the NMI goes to the kernel, which has no ipmi_watchdog
                   handler for it (it logs an unknown NMI, or panics with
                   unknown_nmi_panic); the kernel's NMI self-test at
                   registration is not done.
  panic_wdt_timeout at a kernel panic no userspace runs, so ipmi-cuse cannot
                   lengthen the timer then: the BMC acts when the countdown
                   the last pat started expires (at most the timeout). The
                   flag is used when ipmi-cuse itself stops while the timer
                   runs (nowayout, or an opener without magic close): the
                   timer is re-armed with this timeout and no pretimeout.
                   To give a crash kernel (kdump) time, arm a longer timeout
                   from its initramfs (bmc-watchdog -s -i SECONDS), or use a
                   timeout that covers it.
--watchdog-generic-api makes /dev/watchdog answer as the generic Linux
watchdog API (options, GETSTATUS bits, GETTIMELEFT, GETBOOTSTATUS) instead
of as ipmi_watchdog does.
`

// seconds is a duration flag that also takes a bare number of seconds,
// the unit of the kernel's module parameters.
type seconds struct{ d *time.Duration }

// String prints the duration.
func (s seconds) String() string {
	if s.d == nil {
		return ""
	}
	return s.d.String()
}

// Set parses "30" (seconds) or "30s".
func (s seconds) Set(v string) error {
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(n) || math.IsInf(n, 0) || math.Abs(n) > float64(math.MaxInt64/int64(time.Second)) {
			return fmt.Errorf("%q is not a number of seconds", v)
		}
		*s.d = time.Duration(n * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is neither seconds nor a duration", v)
	}
	*s.d = d
	return nil
}

// addWatchdogParamFlags defines the module-parameter flags on fs; the
// returned function checks them after fs.Parse.
func addWatchdogParamFlags(fs *flag.FlagSet, p *watchdogParams) func() error {
	fs.BoolVar(&p.startNow, "watchdog-start-now", false, "start the BMC timer at start-up (ipmi_watchdog's start_now=1) instead of stopping it; a watchdog daemon must then pat it within the timeout")
	preop := fs.String("watchdog-preop", "none", "what a pretimeout does on the watchdog device: `none`, give-data (readable, POLLIN; no SIGIO) or panic (crash the kernel via sysrq) (ipmi_watchdog's preop)")
	p.panicTimeout = watchdog.DefaultPanicTimeout
	fs.Var(seconds{&p.panicTimeout}, "watchdog-panic-timeout", "countdown armed when ipmi-cuse stops while the BMC timer runs; 0 leaves it (ipmi_watchdog's panic_wdt_timeout; see below)")
	fs.IntVar(&p.ifnum, "watchdog-ifnum", -1, "IPMI interface number for the watchdog (ipmi_watchdog's ifnum_to_use); -1 is the first, and ipmi-cuse's watchdog drives the first, number 0")
	fs.BoolVar(&p.genericAPI, "watchdog-generic-api", false, "answer /dev/watchdog ioctls as the generic Linux watchdog API instead of as ipmi_watchdog")
	return func() (err error) {
		if p.preOp, err = watchdog.ParsePreOp(*preop); err != nil {
			return fmt.Errorf("--watchdog-preop: %w", err)
		}
		if p.panicTimeout < 0 || p.panicTimeout > watchdog.MaxTimeout {
			return fmt.Errorf("--watchdog-panic-timeout %v outside [0, %v]", p.panicTimeout, watchdog.MaxTimeout)
		}
		if p.ifnum != -1 && p.ifnum != 0 {
			return fmt.Errorf("--watchdog-ifnum %d: ipmi-cuse's watchdog drives the first IPMI interface, number 0 (use -1 or 0)", p.ifnum)
		}
		return nil
	}
}

// sysrqTrigger is the file preop panic writes 'c' to.
const sysrqTrigger = "/proc/sysrq-trigger"

// sysrqHint says what to do when sysrqTrigger cannot be opened for
// writing because a sandbox hides it or made it read-only, as the shipped
// unit's ProcSubset=pid and ProtectKernelTunables=yes do.
func sysrqHint(err error) string {
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.EROFS) && !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	return "; under ipmi-cuse.service, whose sandbox hides the file and makes it read-only, " +
		"install the drop-in /usr/share/doc/ipmi-cuse/examples/preop-panic.conf " +
		"(ProcSubset=all, ProtectKernelTunables=no with its paths read-only again but for /proc/sysrq-trigger) in /etc/systemd/system/ipmi-cuse.service.d/"
}

// openSysrqPanic returns what preop panic calls: a write of 'c' to
// /proc/sysrq-trigger, which crashes the kernel as ipmi_watchdog's
// preop_panic panics it (root may write it whatever kernel.sysrq says).
// With preop panic the file is opened now, so a missing file is found at
// start and the descriptor outlives a later drop of privileges; otherwise
// the function only logs that there is nothing to do.
func openSysrqPanic(preOp watchdog.PreOp, log *slog.Logger) (func(), func(), error) {
	if preOp != watchdog.PreOpPanic {
		return func() { log.Error("watchdog: preop panic without /proc/sysrq-trigger") }, func() {}, nil
	}
	f, err := os.OpenFile(sysrqTrigger, os.O_WRONLY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("--watchdog-preop panic crashes the kernel through %s: %w%s", sysrqTrigger, err, sysrqHint(err))
	}
	crash := func() {
		if _, err := f.Write([]byte("c")); err != nil {
			log.Error("watchdog: preop panic: crashing the kernel through /proc/sysrq-trigger failed", "err", err)
		}
	}
	return crash, func() { f.Close() }, nil
}
