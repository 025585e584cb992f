package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// The system interfaces besides KCS: the same corpus and probe, kernel
// driver against ipmi-cuse, on QEMU's isa-ipmi-bt (ipmi_si) and smbus-ipmi
// (ipmi_ssif over i2c-piix4), each against QEMU's BMC and against bmcsim
// behind ipmi-bmc-extern. Each boot runs everything for its BMC, so an
// interface costs four boots.

// ifaceProbeCommands are the probe runs on an interface: u-root's client
// and the bad-input cases, with the one request too long for a BT frame
// moved to the end (see ipmiprobe's -oversized-last).
var ifaceProbeCommands = []testbed.Command{
	{Name: "uroot", Args: []string{probeGuestPath, "uroot"}, Timeout: 120},
	{Name: "badinput", Args: []string{probeGuestPath, "badinput", "-oversized-last"}, Timeout: 300},
}

// btKnownDifferences: the 270-byte request (netfn, cmd and 270 data bytes)
// cannot be carried by BT, whose length byte counts at most 255 bytes. The
// kernel's ipmi_bt_sm writes it anyway with the length byte wrapped to 1;
// QEMU's BT device ignores a frame whose length byte disagrees and stays
// busy, the kernel answers 0xC0 (node busy) after the BMC's 10 s response
// time and from then on answers every request 0xC0 at once (its LONG_BUSY
// state never ends). ipmi-cuse refuses the request without writing it
// (0xC8, request length exceeded) and goes on serving.
var btKnownDifferences = map[string]string{
	"send_data_len_270": "BT: the kernel writes a frame with a wrapped length byte and wedges the interface; ipmi-cuse refuses it with 0xC8",
	"after_oversized":   "BT: the kernel's interface stays in LONG_BUSY (0xC0) after the wrapped frame; ipmi-cuse serves on",
}

// ifaceCase is one interface's differential: which interface, the daemon's
// flags with each BMC (nil: none, SMBIOS discovery), and the probe's known
// differences on it.
type ifaceCase struct {
	iface   testbed.Interface
	qemu    []string
	sim     []string
	known   map[string]string
	corpusK bool // check the kernel's corpus run against the telltales
	noSim   bool // skip the pair against bmcsim
}

func runInterface(t *testing.T, c ifaceCase) {
	env := testEnv(t)
	daemonPath, why := daemon(t)
	if daemonPath == "" {
		t.Skip(why)
	}
	bins := probeBins(t)
	t.Run("ipmi-bmc-sim", func(t *testing.T) {
		// u-root's client first: it prints the SEL's last add time,
		// which the corpus's sel_add sets to the boot's clock.
		cmds := append([]testbed.Command{ifaceProbeCommands[0]}, corpusCommands()...)
		cmds = append(cmds, ifaceProbeCommands[1:]...)
		kern := bootOn(t, env, qemuBMC, c.iface, nil, testbed.KernelMode, "", cmds, bins)
		if c.corpusK {
			t.Run("kernel", func(t *testing.T) { checkKernelEntries(t, kern, corpus) })
		}
		shim := bootOn(t, env, qemuBMC, c.iface, c.qemu, testbed.ShimMode, daemonPath, cmds, bins)
		ok := compare(t, kern, shim, "shim")
		for _, pc := range ifaceProbeCommands {
			t.Run(pc.Name, func(t *testing.T) {
				k, s := kern.Command(pc.Name), shim.Command(pc.Name)
				if k == nil || s == nil {
					t.Fatalf("no result in the guest output (kernel %v, shim %v)", k != nil, s != nil)
				}
				if k.Exit != 0 || s.Exit != 0 {
					t.Errorf("exit status: kernel %d, shim %d\nkernel stderr:\n%s\nshim stderr:\n%s", k.Exit, s.Exit, k.Stderr, s.Stderr)
				}
				if !bytes.Contains(k.Stdout, []byte(kernelTelltales[pc.Name][0])) {
					t.Errorf("kernel run lacks %q:\n%s", kernelTelltales[pc.Name][0], k.Stdout)
				}
				compareCases(t, k.Stdout, s.Stdout, c.known)
				ok = ok && !t.Failed()
			})
		}
		if !ok {
			t.Logf("ipmi-cuse's log:\n%s", shim.Files[testbed.GuestDaemonLog])
		}
	})
	t.Run("bmcsim", func(t *testing.T) {
		if c.noSim {
			t.Skip("bmcsim on this interface runs only on request (IPMI_CUSE_SSIF_SIM=1)")
		}
		var cmds []testbed.Command
		for _, e := range append(corpus[:len(corpus):len(corpus)], simCorpus...) {
			cmds = append(cmds, e.command())
		}
		kern := bootOn(t, env, simBMC, c.iface, nil, testbed.KernelMode, "", cmds, bins)
		if r := kern.Command("mc_info"); r == nil || r.Exit != 0 || !bytes.Contains(r.Stdout, []byte("IPMI Version")) {
			t.Fatalf("ipmitool mc info through the kernel driver to bmcsim failed: %+v", r)
		}
		t.Run("kernel", func(t *testing.T) { checkSimCorpusKernel(t, kern) })
		shim := bootOn(t, env, simBMC, c.iface, c.sim, testbed.ShimMode, daemonPath, cmds, bins)
		compareSimDriver(t, kern, shim)
		if !compare(t, kern, shim, "shim", simCorpus...) {
			t.Logf("ipmi-cuse's log:\n%s", shim.Files[testbed.GuestDaemonLog])
		}
	})
}

func corpusCommands() []testbed.Command {
	cmds := make([]testbed.Command, len(corpus))
	for i, c := range corpus {
		cmds[i] = c.command()
	}
	return cmds
}

// TestInterfaceBT: QEMU's isa-ipmi-bt at 0xE4. With QEMU's BMC the daemon
// runs with no flags (SMBIOS type 38 says BT); with bmcsim it is told the
// port and uses /dev/port.
func TestInterfaceBT(t *testing.T) {
	runInterface(t, ifaceCase{
		iface:   testbed.BT,
		qemu:    nil,
		sim:     []string{"--bt-port=0xe4", "--port-io=devport", "--log-level=info"},
		known:   btKnownDifferences,
		corpusK: true,
	})
}

// TestInterfaceSSIF: QEMU's smbus-ipmi at 0x10 on the PIIX4 SMBus (i2c-0).
// The kernel side is ipmi_ssif, which finds it from SMBIOS type 38 by
// probing every adapter; so does the daemon with QEMU's BMC (no flags),
// and with bmcsim it is told the bus and address.
func TestInterfaceSSIF(t *testing.T) {
	runInterface(t, ifaceCase{
		iface:   testbed.SSIF,
		qemu:    nil,
		sim:     []string{"--ssif-bus=0", "--ssif-address=0x10", "--log-level=info"},
		corpusK: true,
		// Against bmcsim the kernel's ipmi_ssif (6.1) is no reference:
		// it never fetches events or incoming commands there, and under
		// load answered some requests 0xFF. IPMI_CUSE_SSIF_SIM=1 runs the
		// pair anyway (see the README for its differences).
		noSim: os.Getenv("IPMI_CUSE_SSIF_SIM") != "1",
	})
}

// onDevice1 rewrites a corpus command for /dev/ipmi1: ipmitool's -d 1,
// freeipmi's driver device (and a separate SDR cache: the two BMCs'
// repositories differ).
func onDevice1(c corpusEntry) corpusEntry {
	c.name += "_ipmi1"
	args := append([]string(nil), c.args...)
	switch args[0] {
	case "ipmitool":
		args = append([]string{"ipmitool", "-d", "1"}, args[1:]...)
	default:
		args = append(args, "--driver-type=OPENIPMI", "--driver-device=/dev/ipmi1")
		switch args[0] {
		case "ipmi-sensors", "ipmi-sel", "ipmi-fru":
			args = append(args, "--sdr-cache-directory=/tmp/sdr-cache-1")
		}
	}
	c.args = args
	return c
}

// device0Corpus is what runs on /dev/ipmi0 in TestTwoInterfaces: enough
// to show which BMC answers there (QEMU's, with its FRU), as KCS's full
// corpus runs in TestDifferential.
var device0Corpus = []string{"mc_info", "raw_get_device_id", "bmc_info_device_id", "chassis_status", "sdr_list", "fru_print_0", "ipmi_raw_get_device_id"}

// TestTwoInterfaces: two of QEMU's BMCs in one VM, one behind
// isa-ipmi-kcs and one behind smbus-ipmi. The kernel (ipmi_si, then
// ipmi_ssif) numbers KCS /dev/ipmi0 and SSIF /dev/ipmi1; ipmi-cuse, with no
// flags, must serve both, numbered the same: the second BMC has another
// firmware revision and product id, so identical output on each device
// proves the numbering. The whole corpus runs on /dev/ipmi1, part of it on
// /dev/ipmi0 (KCS's whole corpus runs in TestDifferential).
//
// bmcsim behind SSIF is not the second BMC: the kernel's ipmi_ssif is not
// a usable reference there (it answered some requests 0xFF under load and
// never fetched events; see TestInterfaceSSIF with IPMI_CUSE_SSIF_SIM=1).
// The daemon serves the second interface beside the first (whose stack
// also carries the watchdog), and the metrics show each interface's own
// series. In shim mode the daemon is upgraded once (SIGHUP) while a client
// holds each device busy, before the corpus: the new process must keep
// both device numbers, answer every held request once and drive SSIF
// through the /dev/i2c-N it inherited.
func TestTwoInterfaces(t *testing.T) {
	env := testEnv(t)
	daemonPath, why := daemon(t)
	if daemonPath == "" {
		t.Skip(why)
	}
	var entries []corpusEntry
	for _, c := range corpus {
		for _, n := range device0Corpus {
			if c.name == n {
				entries = append(entries, c)
			}
		}
	}
	var dev1 []corpusEntry
	for _, c := range corpus {
		dev1 = append(dev1, onDevice1(c))
	}
	cmds := []testbed.Command{{Name: "devices", Args: []string{"sh", "-c", "ls /dev/ipmi*"}},
		// ipmi-cuse only (the kernel's driver has nothing to upgrade): one
		// SIGHUP upgrade while a client holds each device busy; the corpus
		// after it runs on the new process.
		{Name: "upgrade", Timeout: 200, Args: []string{"sh", "-c", twoInterfacesUpgrade}}}
	for _, c := range append(entries, dev1...) {
		cmds = append(cmds, c.command())
	}
	// ipmi-cuse only: each interface's metrics, after the corpus ran on
	// both (the listener listens on every address, as the guest's loopback
	// is down until this command brings it up).
	cmds = append(cmds, testbed.Command{Name: "metrics", Args: []string{"sh", "-c",
		"ip link set lo up && wget -q -O - http://127.0.0.1:9101/metrics | grep -e _transactions_total -e '^ipmi_cuse_bmc_up'"}})
	boot := func(mode testbed.Mode) *testbed.Output {
		dir := t.TempDir()
		s := &testbed.Session{
			Env: env, Commands: cmds, Daemon: daemonPath, Dir: dir, Timeout: bootTimeout, GuestBins: probeBins(t),
			Script: testbed.ScriptOptions{Mode: mode, Devices: 2, DaemonArgs: []string{"--log-level=info", "--metrics-address=0.0.0.0:9101"}},
			BMC:    testbed.BMC{Interface: testbed.KCS, FRUData: dir + "/fru.bin"},
			Extra:  []testbed.BMC{{Interface: testbed.SSIF, SimProps: "fwrev1=2,product_id=4242"}},
		}
		if err := testbed.WriteFRUData(s.BMC.FRUData); err != nil {
			t.Fatal(err)
		}
		out, res, err := s.Run(context.Background())
		if res != nil {
			t.Logf("%s mode, KCS + SSIF: VM ran %v", mode, res.Elapsed.Round(100*time.Millisecond))
		}
		if err == nil && out.Setup != "ok" {
			err = fmt.Errorf("guest setup failed: %s", out.Setup)
		}
		if err != nil {
			if res != nil {
				t.Logf("guest console (ttyS0):\n%s", res.Console)
				t.Logf("guest output (ttyS1):\n%s", res.Guest)
			}
			if out != nil {
				t.Logf("daemon log:\n%s", out.Files[testbed.GuestDaemonLog])
			}
			t.Fatalf("%s mode: %v", mode, err)
		}
		return out
	}
	kern := boot(testbed.KernelMode)
	t.Run("kernel", func(t *testing.T) {
		if r := kern.Command("devices"); r == nil || string(r.Stdout) != "/dev/ipmi0\n/dev/ipmi1\n" {
			t.Errorf("kernel devices: %+v", r)
		}
		checkKernelEntries(t, kern, entries)
		for _, n := range []string{"mc_info_ipmi1", "bmc_info_device_id_ipmi1"} {
			if r := kern.Command(n); r == nil || r.Exit != 0 || !bytes.Contains(r.Stdout, []byte("4242")) {
				t.Errorf("%s through the kernel's ipmi_ssif does not show the second BMC's product id 4242: %+v", n, r)
			}
		}
		k0, k1 := kern.Command("raw_get_device_id"), kern.Command("raw_get_device_id_ipmi1")
		if k0 == nil || k1 == nil || bytes.Equal(k0.Stdout, k1.Stdout) {
			t.Errorf("the two BMCs answer Get Device ID alike, so the numbering is not tested: %+v %+v", k0, k1)
		}
	})
	shim := boot(testbed.ShimMode)
	if r := shim.Command("devices"); r == nil || string(r.Stdout) != "/dev/ipmi0\n/dev/ipmi1\n" {
		t.Errorf("shim devices: %+v", r)
	}
	// The upgrade: a new process, both devices kept (same numbers), and
	// each held file answered throughout: nothing lost, failed or answered
	// twice (a late or repeated reply is a stale_reply error).
	if c := shim.Command("upgrade"); c == nil {
		t.Error("no upgrade output")
	} else {
		out := string(c.Stdout) + string(c.Stderr)
		t.Logf("upgrade with two interfaces:\n%s", out)
		m := regexp.MustCompile(`(?m)^upgrade: (\d+) -> (\d+) devices (\S+ \S+) -> (\S+ \S+)$`).FindStringSubmatch(out)
		if m == nil || m[1] == m[2] || m[2] == "" || m[3] != m[4] {
			t.Errorf("upgrade: %v (want a new pid and the same two device numbers)", m)
		}
		holds := regexp.MustCompile(`(?m)^(ipmi[01]): hold n=(\d+) ok=(\d+) lost=(\d+) errors=(\d+)`).FindAllStringSubmatch(out, -1)
		if len(holds) != 2 {
			t.Errorf("want a hold summary per device, got %q", holds)
		}
		for _, h := range holds {
			if h[2] != h[3] || h[3] == "0" || h[4] != "0" || h[5] != "0" {
				t.Errorf("%s held across the upgrade: %s (want every request answered once)", h[1], h[0])
			}
		}
		if strings.Contains(out, "info: hold") {
			t.Errorf("a held file saw errors across the upgrade")
		}
	}
	// Every interface has its series, with its own host's counters.
	if c := shim.Command("metrics"); c == nil || c.Exit != 0 {
		t.Errorf("scraping the metrics: %+v", c)
	} else {
		for _, re := range []string{`(?m)^ipmi_cuse_kcs_transactions_total\{device="ipmi0"\} [1-9]`,
			`(?m)^ipmi_cuse_ssif_transactions_total\{device="ipmi1"\} [1-9]`,
			`(?m)^ipmi_cuse_bmc_up\{device="ipmi0"\} 1$`, `(?m)^ipmi_cuse_bmc_up\{device="ipmi1"\} 1$`} {
			if !regexp.MustCompile(re).Match(c.Stdout) {
				t.Errorf("metrics lack %s:\n%s", re, c.Stdout)
			}
		}
		if bytes.Contains(c.Stdout, []byte(`ssif_transactions_total{device="ipmi0"}`)) || bytes.Contains(c.Stdout, []byte(`kcs_transactions_total{device="ipmi1"}`)) {
			t.Errorf("a host's counters under the other interface's device:\n%s", c.Stdout)
		}
	}
	if log := string(shim.Files[testbed.GuestDaemonLog]); !strings.Contains(log, "upgrade: the new process serves") ||
		!strings.Contains(log, "serving the devices taken over") {
		t.Errorf("the daemon log shows no completed upgrade")
	} else if !strings.Contains(log, "inherited descriptor") {
		// The new process drove SSIF through the /dev/i2c-N it was given
		// (a process without privilege could not open it).
		t.Errorf("the new process did not use the /dev/i2c-N it inherited")
	}
	// compare walks the whole corpus: give it only these entries.
	ok := true
	for _, c := range append(entries, dev1...) {
		t.Run(c.name, func(t *testing.T) {
			k, s := kern.Command(c.name), shim.Command(c.name)
			if s == nil {
				t.Fatal("no result from the shim")
			}
			if k.Exit != s.Exit && c.exitVaries == "" {
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
	if !ok {
		t.Logf("ipmi-cuse's log:\n%s", shim.Files[testbed.GuestDaemonLog])
	}
}

// twoInterfacesUpgrade is TestTwoInterfaces' upgrade: a client holds each
// device's file busy while the daemon is sent SIGHUP.
const twoInterfacesUpgrade = `
P=/bin/ipmiprobe
old=$(pidof ipmi-cuse) || { echo "no ipmi-cuse: nothing to upgrade"; exit 0; }
dev() { echo "$(stat -c %t:%T /dev/ipmi0) $(stat -c %t:%T /dev/ipmi1)"; }
d=$(dev)
$P hold -dev /dev/ipmi0 -for 25s -interval 50ms -wait 20s >/tmp/h0.out 2>&1 & h0=$!
$P hold -dev /dev/ipmi1 -for 25s -interval 50ms -wait 20s >/tmp/h1.out 2>&1 & h1=$!
sleep 4
kill -HUP $old
i=0; while kill -0 $old 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
echo "upgrade: $old -> $(pidof ipmi-cuse) devices $d -> $(dev)"
wait $h0; wait $h1
sed 's/^/ipmi0: /' /tmp/h0.out; sed 's/^/ipmi1: /' /tmp/h1.out
`
