package main

import (
	"bytes"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

// TestWatchdogModuleParams: every ipmi_watchdog module parameter has a
// flag, with the kernel's default, and takes the kernel's spellings.
func TestWatchdogModuleParams(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	p := o.watchdogParams
	// timeout=10 pretimeout=0 action=reset preaction=pre_none preop=preop_none
	// start_now=0 nowayout=0 (Debian: CONFIG_WATCHDOG_NOWAYOUT unset)
	// panic_wdt_timeout=255 ifnum_to_use=-1.
	if o.watchdogTimeout != 10*time.Second || o.watchdogPretimeout != 0 || o.watchdogAction != watchdog.ActionReset ||
		o.watchdogPreAction != watchdog.PreNone || p.preOp != watchdog.PreOpNone || p.startNow || o.watchdogNoWayOut ||
		p.panicTimeout != 255*time.Second || p.ifnum != -1 || p.genericAPI {
		t.Fatalf("defaults %+v", o)
	}

	o, err = parseFlags([]string{"--watchdog-device", "watchdog", "--watchdog-timeout", "30", "--watchdog-pretimeout", "5",
		"--watchdog-action", "power_off", "--watchdog-preaction", "pre_int", "--watchdog-preop", "preop_give_data",
		"--watchdog-start-now", "--watchdog-nowayout", "--watchdog-panic-timeout", "120", "--watchdog-ifnum", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	p = o.watchdogParams
	if o.watchdogTimeout != 30*time.Second || o.watchdogPretimeout != 5*time.Second || o.watchdogAction != watchdog.ActionPowerOff ||
		o.watchdogPreAction != watchdog.PreMsgInt || p.preOp != watchdog.PreOpGiveData || !p.startNow || !o.watchdogNoWayOut ||
		p.panicTimeout != 120*time.Second || p.ifnum != 0 {
		t.Fatalf("kernel spellings parsed as %+v", o)
	}

	for _, args := range [][]string{
		{"--watchdog-preop", "preop_reboot"},
		{"--watchdog-ifnum", "1"},
		{"--watchdog-panic-timeout", "-1"},
		{"--watchdog-panic-timeout", "7000"},
		{"--watchdog-timeout", "NaN"},
		{"--watchdog-timeout", "ten"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

// TestHelpListsModuleParams: --help maps every module parameter.
func TestHelpListsModuleParams(t *testing.T) {
	var b bytes.Buffer
	_, _ = parseFlags([]string{"--help"}, &b)
	for _, param := range []string{"timeout=", "pretimeout=", "action=", "preaction=", "preop=", "start_now=", "nowayout=",
		"panic_wdt_timeout=", "ifnum_to_use="} {
		if !strings.Contains(b.String(), "\n  "+param) {
			t.Errorf("--help does not map %s", param)
		}
	}
}

// TestOpenSysrqPanic: without preop panic nothing is opened; with it the
// trigger file is opened at start (here it may be refused: not root, or no
// /proc/sysrq-trigger), and a refusal is an error that names the flag.
func TestOpenSysrqPanic(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	crash, closeFn, err := openSysrqPanic(watchdog.PreOpNone, log)
	if err != nil || crash == nil || closeFn == nil {
		t.Fatalf("preop none: %v", err)
	}
	closeFn()
	_, closeFn, err = openSysrqPanic(watchdog.PreOpPanic, log)
	if err != nil {
		if !strings.Contains(err.Error(), "--watchdog-preop panic") {
			t.Fatalf("error %q does not name the flag", err)
		}
		return
	}
	closeFn() // opened (root): never written here
}

// TestSysrqHint: a sandbox's refusals (hidden, read-only, denied) point at
// the drop-in; other errors get no hint.
func TestSysrqHint(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		hint bool
	}{
		{"hidden by ProcSubset=pid", &fs.PathError{Op: "open", Path: sysrqTrigger, Err: syscall.ENOENT}, true},
		{"read-only by ProtectKernelTunables", &fs.PathError{Op: "open", Path: sysrqTrigger, Err: syscall.EROFS}, true},
		{"not root", &fs.PathError{Op: "open", Path: sysrqTrigger, Err: syscall.EACCES}, true},
		{"other", &fs.PathError{Op: "open", Path: sysrqTrigger, Err: syscall.EIO}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := sysrqHint(tc.err)
			if got := strings.Contains(h, "preop-panic.conf"); got != tc.hint {
				t.Errorf("sysrqHint(%v) = %q, want hint %t", tc.err, h, tc.hint)
			}
		})
	}
}
