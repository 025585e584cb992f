package integration

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// TestFirstInterfaceSilent: SMBIOS describes two interfaces, but the first
// (KCS) has no BMC behind it: QEMU's ipmi-bmc-extern with nothing at the
// other end of its socket, which answers every request 0xD2 ("BMC
// initialization in progress"). The kernel's ipmi_si finds no BMC there
// and does not register it ("There appears to be no BMC at this
// location"), so ipmi_ssif's interface, the second BMC, is /dev/ipmi0 and
// there is no /dev/ipmi1. ipmi-cuse, with no flags, must do the same and
// say in its log that it skipped the first.
func TestFirstInterfaceSilent(t *testing.T) {
	env := testEnv(t)
	daemonPath, why := daemon(t)
	if daemonPath == "" {
		t.Skip(why)
	}
	var entries []corpusEntry
	for _, c := range corpus {
		switch c.name {
		case "mc_info", "raw_get_device_id", "bmc_info_device_id":
			entries = append(entries, c)
		}
	}
	cmds := []testbed.Command{{Name: "devices", Args: []string{"sh", "-c", "ls /dev/ipmi*"}}}
	for _, c := range entries {
		cmds = append(cmds, c.command())
	}
	boot := func(mode testbed.Mode) (*testbed.Output, *testbed.Result) {
		s := &testbed.Session{
			Env: env, Commands: cmds, Daemon: daemonPath, Dir: t.TempDir(), Timeout: bootTimeout,
			Script: testbed.ScriptOptions{Mode: mode},
			// Port 9 (discard) on the host: nothing listens, so QEMU's
			// extern BMC stays disconnected for the whole boot.
			BMC:   testbed.BMC{Interface: testbed.KCS, Extern: "127.0.0.1:9"},
			Extra: []testbed.BMC{{Interface: testbed.SSIF, SimProps: "fwrev1=2,product_id=4242"}},
		}
		out, res, err := s.Run(context.Background())
		if res != nil {
			t.Logf("%s mode, silent KCS + SSIF: VM ran %v", mode, res.Elapsed.Round(100*time.Millisecond))
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
		return out, res
	}
	kern, kres := boot(testbed.KernelMode)
	if r := kern.Command("devices"); r == nil || string(r.Stdout) != "/dev/ipmi0\n" {
		t.Fatalf("kernel devices: %+v; want only /dev/ipmi0 (the reference is not what this test assumes)", r)
	}
	if r := kern.Command("mc_info"); r == nil || r.Exit != 0 || !bytes.Contains(r.Stdout, []byte("4242")) {
		t.Fatalf("the kernel's /dev/ipmi0 is not the second BMC (product id 4242): %+v", r)
	}
	if !bytes.Contains(kres.Console, []byte("no BMC at this location")) && !bytes.Contains(kres.Console, []byte("Interface detection failed")) {
		t.Logf("the kernel's console does not show why ipmi_si skipped the KCS interface:\n%s", kres.Console)
	}
	shim, _ := boot(testbed.ShimMode)
	log := shim.Files[testbed.GuestDaemonLog]
	if r := shim.Command("devices"); r == nil || string(r.Stdout) != "/dev/ipmi0\n" {
		t.Errorf("shim devices: %+v; want only /dev/ipmi0", r)
	}
	if !bytes.Contains(log, []byte("not serving an interface whose BMC does not answer")) || !bytes.Contains(log, []byte("KCS at I/O 0xca2")) {
		t.Errorf("the daemon's log does not say it skipped the KCS interface")
	}
	for _, c := range entries {
		t.Run(c.name, func(t *testing.T) {
			k, s := kern.Command(c.name), shim.Command(c.name)
			if k == nil || s == nil {
				t.Fatalf("no result (kernel %v, shim %v)", k != nil, s != nil)
			}
			if k.Exit != s.Exit {
				t.Errorf("exit status: kernel %d, shim %d", k.Exit, s.Exit)
			}
			if d := diff("stdout", c.normalise(k.Stdout), c.normalise(s.Stdout)); d != "" {
				t.Error(d)
			}
		})
	}
	if t.Failed() {
		t.Logf("ipmi-cuse's log:\n%s", log)
	}
}
