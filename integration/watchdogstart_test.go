package integration

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// The watchdog driver's start-up, kernel (ipmi_watchdog with module
// parameters) against ipmi-cuse (the equivalent flags), on the simulated
// BMC behind ipmi-bmc-extern, one boot per mode. Each case, in the same
// boot:
//
//	release  the previous case's driver goes (rmmod ipmi_watchdog; or
//	         ipmi-cuse restarted without a watchdog), so nothing touches the
//	         timer while the firmware state is set up
//	fw       the host puts the BMC's timer in the case's firmware state
//	         (simDriver: Cold Reset, then the firmware's Set/Reset), and
//	         the guest waits until Get Watchdog Timer shows it
//	start    insmod ipmi_watchdog PARAMS; or ipmi-cuse --watchdog-device
//	         with the equivalent flags
//	pat      busybox's watchdog applet opens /dev/watchdog and pats every
//	         second
//	stop     the applet gets SIGTERM: it writes the magic 'V' and closes
//
// and ipmitool mc watchdog get and bmc-watchdog --get run before the
// driver starts, after it starts, while the applet pats and after it
// stopped. Their output must be identical, with the countdown masked only
// where the timer runs.

// wdFirmware is a state the firmware leaves the BMC watchdog in.
type wdFirmware struct {
	name string
	msgs [][]byte // sent by the host after a Cold Reset
	// getPrefix is how ipmitool raw 0x06 0x25 starts once the state is
	// set (the guest waits for it).
	getPrefix string
	running   bool
}

// fwOSLoad is a BIOS "OS boot watchdog": timer use OS Load, hard reset,
// 300 s.
var fwOSLoad = []byte{bmcsim.NetFnApp << 2, bmcsim.CmdSetWatchdogTimer, 0x03, 0x01, 0x00, 0x00, 0xB8, 0x0B}

var (
	fwUntouched = wdFirmware{name: "untouched", getPrefix: " 00 00 00 00 00 00 00 00"}
	fwRunning   = wdFirmware{name: "armed_running", msgs: [][]byte{fwOSLoad, {bmcsim.NetFnApp << 2, bmcsim.CmdResetWatchdogTimer}},
		getPrefix: " 43 01 00 00 b8 0b", running: true}
	fwStopped = wdFirmware{name: "armed_stopped", msgs: [][]byte{fwOSLoad}, getPrefix: " 03 01 00 00 b8 0b b8 0b"}
)

// wdCase is one start of the driver.
type wdCase struct {
	name   string
	fw     wdFirmware
	params []string // ipmi_watchdog module parameters
	// patT is the timeout busybox's applet sets (WDIOC_SETTIMEOUT): the
	// module's timeout, so the applet changes nothing.
	patT int
	// runsAfterStart and runsAfterStop say where the countdown is masked.
	runsAfterStart, runsAfterStop bool
	// rawSet: while the applet pats, a client sends its own Set Watchdog
	// Timer through /dev/ipmi0 (OS Load, 300 s, stopped); the applet's next
	// pat restarts the client's countdown, under both drivers.
	rawSet bool
	// wdioc: after the start, ipmiprobe prints /dev/watchdog's answers to
	// the generic ioctls (identity, options, firmware version, status,
	// timeouts), then closes it with the magic 'V'.
	wdioc bool
	// giveData: instead of the applet, a shell opens the device, starts the
	// timer once and reads: the pretimeout (preop_give_data) makes one byte
	// readable; then it closes with the magic 'V'.
	giveData bool
}

// wdCases are the cases in boot order. The timer is never left running at
// a reset action between cases for longer than the next case's set-up (a
// Cold Reset), and never at the end.
var wdCases = []wdCase{
	{name: "default_untouched", fw: fwUntouched, patT: 10, wdioc: true, rawSet: true},
	{name: "default_running", fw: fwRunning, patT: 10},
	{name: "default_stopped", fw: fwStopped, patT: 10},
	{name: "startnow_untouched", fw: fwUntouched, params: []string{"start_now=1", "timeout=60"}, patT: 60, runsAfterStart: true},
	{name: "startnow_running", fw: fwRunning, params: []string{"start_now=1", "timeout=60"}, patT: 60, runsAfterStart: true},
	{name: "startnow_stopped", fw: fwStopped, params: []string{"start_now=1", "timeout=60", "pretimeout=20", "preaction=pre_int", "action=power_cycle"},
		patT: 60, runsAfterStart: true},
	{name: "nowayout_running", fw: fwRunning, params: []string{"nowayout=1", "timeout=60"}, patT: 60, runsAfterStop: true},
	{name: "givedata", fw: fwRunning, params: []string{"timeout=10", "pretimeout=8", "preaction=pre_int", "preop=preop_give_data"}, giveData: true},
}

// moduleParamFlags maps ipmi_watchdog module parameters to ipmi-cuse's
// flags: the mapping the README and --help document.
func moduleParamFlags(params []string) []string {
	var flags []string
	for _, p := range params {
		k, v, _ := strings.Cut(p, "=")
		switch k {
		case "start_now", "nowayout":
			if v == "1" {
				flags = append(flags, "--watchdog-"+strings.ReplaceAll(k, "_", "-"))
			}
		case "panic_wdt_timeout":
			flags = append(flags, "--watchdog-panic-timeout="+v)
		case "ifnum_to_use":
			flags = append(flags, "--watchdog-ifnum="+v)
		default: // timeout, pretimeout, action, preaction, preop
			flags = append(flags, "--watchdog-"+k+"="+v)
		}
	}
	return flags
}

// Guest-side helpers for the cases, defined once at the top of each
// command's shell (busybox sh).
const wdShellHelpers = `
untilget() { i=0; until ipmitool raw 0x06 0x25 2>/dev/null | grep -q "^ $1"; do i=$((i+1)); [ $i -gt 200 ] && { echo "Get Watchdog Timer never started with $1"; return 1; }; sleep 0.1; done; }
gone() { i=0; while pidof ipmi-cuse >/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; i=0; while [ -e /dev/ipmi0 -o -e /dev/watchdog ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; pidof ipmi-cuse >/dev/null && echo "ipmi-cuse did not stop"; }
waitc() { i=0; while [ ! -c "$1" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; [ -c "$1" ] || echo "$1 did not appear"; }
`

// wdCommands returns the guest commands of the cases for one mode and the
// entries that say how to check and compare them.
func wdCommands(mode testbed.Mode, daemonArgs []string) ([]testbed.Command, []corpusEntry) {
	var cmds []testbed.Command
	var entries []corpusEntry
	add := func(name, script string, wantOut string, masked bool) {
		var norm []string
		if masked {
			norm = []string{"watchdog-countdown"}
		}
		cmds = append(cmds, testbed.Command{Name: name, Timeout: 90, Args: []string{"sh", "-c", wdShellHelpers + script}})
		entries = append(entries, corpusEntry{name: name, wantOut: wantOut, norm: norm})
	}
	gets := func(p, phase string, masked bool, wantIPMItool, wantBMCWatchdog string) {
		add(p+"_"+phase+"_ipmitool", "ipmitool mc watchdog get", wantIPMItool, masked)
		add(p+"_"+phase+"_bmcwatchdog", "bmc-watchdog --get", wantBMCWatchdog, masked)
	}
	daemon := strings.Join(append([]string{testbed.GuestDaemon}, daemonArgs...), " ")
	for _, c := range wdCases {
		p := "wd_" + c.name
		if mode == testbed.KernelMode {
			add(p+"_release", "rmmod ipmi_watchdog 2>/dev/null; true", "", false)
		} else {
			add(p+"_release", fmt.Sprintf("kill $(pidof ipmi-cuse) 2>/dev/null; gone; %s >>%s 2>&1 </dev/null & waitc /dev/ipmi0",
				daemon, testbed.GuestDaemonLog), "", false)
		}
		add(p+"_fw", fmt.Sprintf("i=0; until ipmitool raw 0x06 0x25 2>/dev/null | grep -q '^%s'; do i=$((i+1)); [ $i -gt 100 ] && { echo 'firmware state not seen'; exit 1; }; sleep 0.1; done", c.fw.getPrefix), "", false)
		gets(p, "before", c.fw.running, "Watchdog Timer Use:", "Timer Use:")
		if mode == testbed.KernelMode {
			add(p+"_start", fmt.Sprintf("insmod /modules/ipmi_watchdog.ko %s && waitc /dev/watchdog", strings.Join(c.params, " ")), "", false)
		} else {
			add(p+"_start", fmt.Sprintf("kill $(pidof ipmi-cuse); gone; %s --watchdog-device=watchdog %s >>%s 2>&1 </dev/null & waitc /dev/watchdog; waitc /dev/ipmi0",
				daemon, strings.Join(moduleParamFlags(c.params), " "), testbed.GuestDaemonLog), "", false)
		}
		// After the start the timer is SMS/OS whatever the firmware left.
		gets(p, "started", c.runsAfterStart, "SMS/OS", "SMS/OS")
		if c.wdioc {
			// Its close's RELEASE reaches ipmi-cuse after close(2) returns
			// (FUSE sends it asynchronously): wait for the stop it sends.
			add(p+"_wdioc", probeGuestPath+" wdioc && untilget 04", `identity="IPMI"`, false)
		}
		if c.giveData {
			// Start the timer with one write, then read: the pretimeout
			// (2 s later) makes one byte 0 readable. Magic close after.
			add(p+"_read", "exec 3<>/dev/watchdog; printf x >&3; dd bs=1 count=1 <&3 2>/dev/null | od -An -tx1; printf V >&3; exec 3>&-; untilget 04", " 00", false)
			// The pretimeout also put a Watchdog 2 event in the event
			// buffer; both drivers hold it for the next file that asks for
			// events, which ipmitool does at open and reports as a stray
			// response at a time that depends on scheduling. One ipmitool
			// run takes it.
			add(p+"_drain_event", "ipmitool mc watchdog get >/dev/null 2>&1; true", "", false)
			gets(p, "stopped", false, "Stopped", "Stopped")
			continue
		}
		add(p+"_pat", fmt.Sprintf("watchdog -F -T %d -t 1 /dev/watchdog >/tmp/wdpat.log 2>&1 </dev/null & echo $! >/tmp/wdpat.pid; sleep 2.5", c.patT), "", false)
		gets(p, "patting", true, "Running", "Running")
		if c.rawSet {
			// The applet's next pat (a Reset) restarts the client's timer.
			add(p+"_rawset", "ipmitool raw 0x06 0x24 0x03 0x01 0x00 0x00 0xb8 0x0b && untilget 43", "", false)
			gets(p, "rawset", true, "OS Load (0x43)", "OS Load")
		}
		// After the applet exits, wait for the magic close's stop (its
		// RELEASE reaches ipmi-cuse asynchronously); under nowayout the
		// close pats instead, and the timer runs either way.
		settle := "untilget 04"
		want := "Stopped"
		if c.runsAfterStop {
			settle, want = "sleep 0.5", "Running"
		}
		add(p+"_stop", "kill -TERM $(cat /tmp/wdpat.pid); i=0; while kill -0 $(cat /tmp/wdpat.pid) 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "+settle+"; cat /tmp/wdpat.log", "", false)
		gets(p, "stopped", c.runsAfterStop, want, want)
	}
	return cmds, entries
}

// wdFirmwareActions sets each case's firmware state from the host when
// its fw command starts.
func init() {
	for _, c := range wdCases {
		fw := c.fw
		simActions["wd_"+c.name+"_fw"] = func(_ context.Context, b *bmcsim.BMC) string {
			// A Cold Reset puts the watchdog back to its power-on state; it
			// also clears the BMC Global Enables, which the firmware would
			// not touch and the drivers set only once (the kernel's ipmi_si
			// would lose its interrupt, and with it the pretimeout): put
			// them back.
			en := b.Handle([]byte{bmcsim.NetFnApp << 2, bmcsim.CmdGetBMCGlobalEnables}, nil)
			b.Handle([]byte{bmcsim.NetFnApp << 2, bmcsim.CmdColdReset}, nil)
			if len(en) != 4 || en[2] != 0 {
				return fmt.Sprintf("wd_%s_fw: Get BMC Global Enables answered % x", c.name, en)
			}
			if r := b.Handle([]byte{bmcsim.NetFnApp << 2, bmcsim.CmdSetBMCGlobalEnables, en[3]}, nil); len(r) < 3 || r[2] != 0 {
				return fmt.Sprintf("wd_%s_fw: Set BMC Global Enables answered % x", c.name, r)
			}
			for _, m := range fw.msgs {
				if r := b.Handle(m, nil); len(r) < 3 || r[2] != 0 {
					return fmt.Sprintf("wd_%s_fw: firmware request % x answered % x", c.name, m, r)
				}
			}
			return "wd_" + c.name + "_fw: " + fw.name
		}
	}
}

// TestWatchdogStartup compares the watchdog driver's start-up and life,
// kernel against ipmi-cuse, for each firmware state and parameter set of
// wdCases (one boot per mode).
func TestWatchdogStartup(t *testing.T) {
	env := testEnv(t)
	daemonPath, why := daemon(t)
	kcmds, entries := wdCommands(testbed.KernelMode, nil)
	bins := probeBins(t)
	kern := bootWith(t, env, simBMC, testbed.KernelMode, "", kcmds, bins)
	saveProbeOutput(t, "wdstart-kernel", kern)
	for _, n := range []string{"wd_default_running_before_ipmitool", "wd_default_running_started_ipmitool", "wd_default_untouched_wdioc"} {
		if r := kern.Command(n); r != nil {
			t.Logf("kernel, %s:\n%s", n, r.Stdout)
		}
	}
	t.Run("kernel", func(t *testing.T) { checkKernelEntries(t, kern, entries) })
	t.Run("shim", func(t *testing.T) {
		if daemonPath == "" {
			t.Skip(why)
		}
		scmds, _ := wdCommands(testbed.ShimMode, daemonArgs(simBMC))
		shim := bootWith(t, env, simBMC, testbed.ShimMode, daemonPath, scmds, bins)
		saveProbeOutput(t, "wdstart-shim", shim)
		if d := diff("host-side firmware set-up", kern.Files[simDriverFile], shim.Files[simDriverFile]); d != "" {
			t.Error(d)
		}
		ok := true
		for _, c := range entries {
			t.Run(c.name, func(t *testing.T) {
				k, s := kern.Command(c.name), shim.Command(c.name)
				if k == nil || s == nil {
					t.Fatalf("missing result: kernel %v, shim %v", k != nil, s != nil)
				}
				if k.Exit != s.Exit {
					t.Errorf("exit status: kernel %d, shim %d", k.Exit, s.Exit)
				}
				if d := diff("stdout", c.normalise(k.Stdout), c.normalise(s.Stdout)); d != "" {
					t.Error(d)
				}
				if d := diff("stderr", c.normalise(k.Stderr), c.normalise(s.Stderr)); d != "" {
					t.Error(d)
				}
				ok = ok && !t.Failed()
			})
		}
		if !ok || os.Getenv("IPMI_CUSE_VERBOSE") == "1" {
			t.Logf("ipmi-cuse's log:\n%s", shim.Files[testbed.GuestDaemonLog])
		}
	})
}

// TestWatchdogPreopPanic: with preop_panic the kernel's ipmi_watchdog
// panics the host at the pretimeout ("Watchdog pre-timeout"); ipmi-cuse
// crashes it through /proc/sysrq-trigger. One shim boot: a shell starts
// the timer (timeout 10 s, pretimeout 8 s, pre_int) and waits; the
// pretimeout must crash the guest kernel 2 s later, before the timeout,
// which ends the VM (panic=-1, -no-reboot) without the script finishing.
func TestWatchdogPreopPanic(t *testing.T) {
	env := testEnv(t)
	daemonPath, why := daemon(t)
	if daemonPath == "" {
		t.Skip(why)
	}
	sim, err := testbed.StartSimBMC(bmcsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sim.Close(); err != nil {
			t.Error(err)
		}
	}()
	args := append(daemonArgs(simBMC), "--watchdog-device=watchdog")
	args = append(args, moduleParamFlags([]string{"timeout=10", "pretimeout=8", "preaction=pre_int", "preop=preop_panic"})...)
	s := &testbed.Session{
		Env: env, Dir: t.TempDir(), Timeout: bootTimeout, Daemon: daemonPath, BMC: testbed.BMC{Extern: sim.Addr},
		Commands: []testbed.Command{{Name: "start_and_wait", Timeout: 60,
			Args: []string{"sh", "-c", "exec 3>/dev/watchdog; printf x >&3; sleep 30"}}},
		Script: testbed.ScriptOptions{Mode: testbed.ShimMode, DaemonArgs: args},
	}
	out, res, err := s.Run(context.Background())
	if res == nil {
		t.Fatalf("the VM did not run: %v", err)
	}
	t.Logf("VM ran %v", res.Elapsed)
	st := sim.BMC.Stats()
	switch {
	case err == nil || (out != nil && out.Done):
		t.Errorf("the guest ran its script to the end: no panic at the pretimeout")
	case !strings.Contains(string(res.Console), "sysrq triggered crash"):
		t.Errorf("the guest console shows no sysrq crash")
	case st.PretimeoutsFired == 0:
		t.Errorf("the BMC raised no pretimeout, yet the guest crashed")
	case !strings.Contains(string(res.Guest), "@@@CMD start_and_wait"):
		t.Errorf("the crash came before the command that starts the timer")
	case !strings.Contains(string(res.Console), "Comm: ipmi-cuse"):
		t.Errorf("the crash was not ipmi-cuse's doing")
	}
	if t.Failed() {
		t.Logf("guest console:\n%s\nguest output:\n%s\nsimulated BMC:\n%s", res.Console, res.Guest, sim.Log())
	}
}
