package integration

import (
	"regexp"

	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// corpusEntry is one client command of the differential corpus. The corpus
// runs in order in one boot per mode, against a fresh BMC each time, so
// commands that change the BMC's state (watchdog, SEL) are placed where the
// later commands expect them.
type corpusEntry struct {
	name string
	args []string
	// wantExit is the exit status expected in kernel mode: 0, -1 for "any
	// non-zero" (error paths, whose stderr is compared too), or anyExit.
	wantExit int
	// wantOut must appear in the kernel-mode stdout (or stderr for errors):
	// it proves the command really talked to the BMC, so a broken testbed
	// cannot pass by making both modes fail the same way.
	wantOut string
	// exitVaries, when set, says why this command's exit status is not
	// compared: it differs between two boots with the kernel driver.
	exitVaries string
	// norm names the normalisations applied to this command's output in both
	// modes before comparing (see normalisations).
	norm []string
}

// addSELEntry is a 16-byte SEL record for Add SEL Entry: record ID 0 (the
// BMC assigns one), type 02h (system event, the BMC stamps the time),
// generator 20h, EvM rev 04h, sensor type 23h (watchdog 2) #0, sensor-specific
// event 6Fh, offset 0 (timer expired).
var addSELEntry = []string{"0x00", "0x00", "0x02", "0x00", "0x00", "0x00", "0x00", "0x20", "0x00", "0x04", "0x23", "0x00", "0x6f", "0x00", "0xff", "0xff"}

// anyExit as wantExit accepts any exit status in the kernel-mode check (the
// differential still requires kernel and shim to agree).
const anyExit = -2

var corpus = []corpusEntry{
	// Management controller.
	{name: "mc_info", args: []string{"ipmitool", "mc", "info"}, wantOut: "IPMI Version              : 2.0"},
	// QEMU's BMC implements neither Get System GUID nor Get Self Test
	// Results: both exercise the completion-code (0xC1) path of the clients.
	{name: "mc_guid", args: []string{"ipmitool", "mc", "guid"}, wantExit: -1, wantOut: "Invalid command"},
	{name: "mc_selftest", args: []string{"ipmitool", "mc", "selftest"}, wantExit: -1, wantOut: "Invalid command"},
	{name: "raw_get_device_id", args: []string{"ipmitool", "raw", "0x06", "0x01"}, wantOut: " 20 00 00"},
	// Completion-code path: Get Device ID's netfn with an unassigned command.
	{name: "raw_invalid_cmd", args: []string{"ipmitool", "raw", "0x06", "0xf0"}, wantExit: -1, wantOut: "rsp=0xc1"},
	{name: "raw_invalid_netfn", args: []string{"ipmitool", "raw", "0x30", "0x01"}, wantExit: -1, wantOut: "rsp=0xc1"},
	{name: "bmc_info", args: []string{"bmc-info"}, wantOut: "IPMI Version", norm: []string{"bmc-info-channels"}},
	{name: "bmc_info_device_id", args: []string{"bmc-info", "--get-device-id"}, wantOut: "IPMI Version          : 2.0"},
	{name: "ipmi_raw_get_device_id", args: []string{"ipmi-raw", "0", "6", "1"}, wantOut: "rcvd: 01 00 20"},
	{name: "ipmi_raw_invalid_cmd", args: []string{"ipmi-raw", "0", "6", "f0"}, wantOut: "rcvd: F0 C1"},
	{name: "bmc_device_acpi", args: []string{"bmc-device", "--get-acpi-power-state"}, wantOut: "ACPI"},

	// Watchdog: stopped, reset before it is set up (error path), set up,
	// started, read while running, stopped. The action must not be "none":
	// QEMU's BMC does not run a timer whose action is none. The 600 s
	// countdown cannot expire during the corpus, and it is switched off.
	// QEMU's Get Watchdog Timer never sets the "running" bit, so the running
	// timer still reads "Stopped"; its countdown (normalised) shows it runs.
	{name: "mc_watchdog_get_initial", args: []string{"ipmitool", "mc", "watchdog", "get"}, wantOut: "Watchdog Timer Is:      Stopped"},
	{name: "bmc_watchdog_get_initial", args: []string{"bmc-watchdog", "-g"}, wantOut: "Timer Use"},
	{name: "mc_watchdog_reset_unset", args: []string{"ipmitool", "mc", "watchdog", "reset"}, wantExit: -1, wantOut: "Watchdog"},
	{name: "bmc_watchdog_set", args: []string{"bmc-watchdog", "-s", "-u", "4", "-a", "1", "-i", "600"}},
	{name: "mc_watchdog_reset", args: []string{"ipmitool", "mc", "watchdog", "reset"}, wantOut: "Watchdog Timer Reset"},
	{name: "mc_watchdog_get_running", args: []string{"ipmitool", "mc", "watchdog", "get"}, wantOut: "Hard Reset (0x01)", norm: []string{"watchdog-countdown"}},
	{name: "bmc_watchdog_get_running", args: []string{"bmc-watchdog", "-g"}, wantOut: "Hard Reset", norm: []string{"watchdog-countdown"}},
	{name: "mc_watchdog_off", args: []string{"ipmitool", "mc", "watchdog", "off"}, wantOut: "Watchdog Timer Shutoff"},
	{name: "mc_watchdog_get_off", args: []string{"ipmitool", "mc", "watchdog", "get"}, wantOut: "Stopped", norm: []string{"watchdog-countdown"}},

	// Chassis.
	{name: "chassis_status", args: []string{"ipmitool", "chassis", "status"}, wantOut: "System Power         : on"},
	{name: "ipmi_chassis_status", args: []string{"ipmi-chassis", "--get-chassis-status"}, wantOut: "System Power"},

	// Sensors and SDR.
	{name: "sdr_list", args: []string{"ipmitool", "sdr", "list"}, wantOut: "Watchdog"},
	{name: "sdr_elist", args: []string{"ipmitool", "sdr", "elist"}, wantOut: "Watchdog"},
	{name: "sensor_list", args: []string{"ipmitool", "sensor", "list"}, wantOut: "Watchdog"},
	{name: "ipmi_sensors", args: []string{"ipmi-sensors"}, wantOut: "Watchdog"},

	// SEL: empty, then with one entry added through the driver.
	{name: "sel_info_empty", args: []string{"ipmitool", "sel", "info"}, wantOut: "Entries          : 0", norm: []string{"sel-time"}},
	{name: "sel_list_empty", args: []string{"ipmitool", "sel", "list"}, wantOut: "SEL has no entries"},
	{name: "sel_add", args: append([]string{"ipmitool", "raw", "0x0a", "0x44"}, addSELEntry...), wantOut: " 00"},
	{name: "sel_info", args: []string{"ipmitool", "sel", "info"}, wantOut: "Entries          : 1", norm: []string{"sel-time"}},
	{name: "sel_list", args: []string{"ipmitool", "sel", "list"}, wantOut: "Watchdog", norm: []string{"sel-time"}},
	{name: "sel_elist", args: []string{"ipmitool", "sel", "elist"}, wantOut: "Watchdog", norm: []string{"sel-time"}},
	{name: "ipmi_sel", args: []string{"ipmi-sel"}, wantOut: "Watchdog", norm: []string{"sel-time"}},

	// FRU: plain `fru print` only shows the built-in FRU header because the
	// BMC does not advertise FRU support; `fru print 0` reads device 0.
	{name: "fru_print", args: []string{"ipmitool", "fru", "print"}, wantExit: anyExit, wantOut: "Builtin FRU Device",
		exitVaries: "ipmitool 1.8.19 exits 0 or 1 here with identical output, between two boots with the kernel driver (kernel_vs_kernel showed both)"},
	{name: "fru_print_0", args: []string{"ipmitool", "fru", "print", "0"}, wantOut: "Testbed Board"},
	{name: "ipmi_fru", args: []string{"ipmi-fru"}, wantOut: "FRU"},
}

// normalisations rewrite values that change by themselves between two boots
// of the same BMC, and nothing else. Each is applied only to the commands
// that name it.
var normalisations = map[string]struct {
	re     *regexp.Regexp
	repl   string
	reason string
}{
	"watchdog-countdown": {
		re:     regexp.MustCompile(`(Present Countdown:\s+|Current Countdown:\s+)[0-9.]+`),
		repl:   "${1}N",
		reason: "the running watchdog's present countdown depends on how long after the reset it is read",
	},
	"bmc-info-channels": {
		re:     regexp.MustCompile(`(?s)\nChannel Information\n.*`),
		repl:   "\nChannel Information\n(elided)\n",
		reason: "QEMU's BMC does not implement Get Channel Info properly and bmc-info prints whatever was in its buffer: it differs between two boots with the kernel driver",
	},
	"probe-info": {
		re:     regexp.MustCompile(`(?m)^info: .*\n`),
		repl:   "",
		reason: "ipmiprobe's info: lines on stderr carry what varies by timing (how many injected commands arrived before a confirmation), by its own contract",
	},
	"sel-time": {
		re:     regexp.MustCompile(`\d\d/\d\d/\d\d(?:\d\d)?|[A-Z][a-z]{2}-\d\d-\d{4}|\d\d:\d\d:\d\d`),
		repl:   "T",
		reason: "the BMC stamps SEL entries (and the SEL's last add/erase time) with its wall clock",
	},
}

func (c corpusEntry) command() testbed.Command {
	return testbed.Command{Name: c.name, Args: c.args}
}

func (c corpusEntry) normalise(b []byte) []byte {
	for _, n := range c.norm {
		b = normalisations[n].re.ReplaceAll(b, []byte(normalisations[n].repl))
	}
	return b
}
