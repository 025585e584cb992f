package integration

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// TestSystemdUnit boots the systemd guest (Debian's systemd as PID 1) on
// the 6.12 kernel, installs ipmi-cuse with the repository's unit as a user
// would, starts it with systemctl, and runs ipmitool mc info through it:
// the unit's modprobe of cuse, its defaults file and its ExecStart= work
// under a real service manager; --version works and the metrics turned on
// in the defaults file are served, and every thread of the daemon has
// dropped every capability and set no_new_privs (after a reload too, once
// the unit has ExecReload=). Then --watchdog-preop panic: refused under the
// sandbox with an error naming the drop-in, served with it
// (checkPreopDropIn).
func TestSystemdUnit(t *testing.T) {
	// 6.1 runs the same unit through the Debian package (TestDebianPackage).
	for _, k := range []testbed.Kernel{testbed.Kernel612} {
		t.Run(string(k), func(t *testing.T) {
			env := testEnvKernel(t, k)
			daemonPath, root := unitDaemon(t)
			files, err := testbed.ProjectUnit(root, daemonPath, []string{"--log-level=info", "--metrics-address=127.0.0.1:9101"})
			if err != nil {
				t.Fatal(err)
			}
			g := &testbed.SystemdGuest{
				Env: env, Files: files, Dir: t.TempDir(), Timeout: bootTimeout, Append: os.Getenv("IPMI_CUSE_APPEND"),
				Script: `run start 60 systemctl start ipmi-cuse
if wait_dev 30; then echo '@@@SETUP ok'; else echo '@@@SETUP /dev/ipmi0 did not appear'; fi
run pid1 10 cat /proc/1/comm
run mc_info 60 ipmitool mc info
run active 10 systemctl is-active ipmi-cuse
pid=$(main_pid ipmi-cuse)
thread_caps $pid >/tmp/caps; run caps 10 cat /tmp/caps
run fds 10 ls -l /proc/$pid/fd
if [ "$(systemctl show -p CanReload --value ipmi-cuse)" = yes ]; then
	run reload 120 systemctl reload ipmi-cuse
	# The reload job ends before the new process has dropped its
	# privileges: check its threads once it says it serves.
	n=0; until journalctl -b -u ipmi-cuse --no-pager | grep -q 'serving the devices taken over' || [ $n -ge 200 ]; do sleep 0.1; n=$((n+1)); done
	thread_caps $(main_pid ipmi-cuse) >/tmp/caps; run caps_after_reload 10 cat /tmp/caps
	run mc_info_after_reload 60 ipmitool mc info
fi
run version 10 /usr/sbin/ipmi-cuse --version
run metrics 30 wget -q -O - http://127.0.0.1:9101/metrics
run modules 10 sh -c 'grep -o "^[a-z_]*" /proc/modules | sort'
run stop 60 systemctl stop ipmi-cuse
run gone 10 sh -c 'test ! -e /dev/ipmi0'
sed -i 's|^IPMI_CUSE_ARGS="|IPMI_CUSE_ARGS="--watchdog-device=watchdog --watchdog-preop=panic |' /etc/default/ipmi-cuse
run panic_sandboxed 60 systemctl start ipmi-cuse
systemctl stop ipmi-cuse; systemctl reset-failed ipmi-cuse
mkdir -p /etc/systemd/system/ipmi-cuse.service.d
cp ` + preopDropIn + ` /etc/systemd/system/ipmi-cuse.service.d/
systemctl daemon-reload
run panic_start 60 systemctl start ipmi-cuse
run panic_active 10 systemctl is-active ipmi-cuse
ls -l /proc/$(main_pid ipmi-cuse)/fd >/tmp/fds; run panic_sysrq_fd 10 grep -c sysrq-trigger /tmp/fds
awk '$5=="/proc/sys"||$5=="/sys"||$5=="/proc/sysrq-trigger"{split($6,o,",");m[$5]=o[1]} END{for(k in m)print k, m[k]}' /proc/$(main_pid ipmi-cuse)/mountinfo | sort >/tmp/mounts
run panic_mounts 10 cat /tmp/mounts
if [ "$(systemctl show -p CanReload --value ipmi-cuse)" = yes ]; then
	run panic_reload 120 systemctl reload ipmi-cuse
	n=0; until [ "$(journalctl -b -u ipmi-cuse --no-pager | grep -c 'serving the devices taken over')" -ge 2 ] || [ $n -ge 200 ]; do sleep 0.1; n=$((n+1)); done
	ls -l /proc/$(main_pid ipmi-cuse)/fd >/tmp/fds; run panic_sysrq_fd_after_reload 10 grep -c sysrq-trigger /tmp/fds
fi
run panic_stop 60 systemctl stop ipmi-cuse
journal ipmi-cuse
`,
			}
			dropIn, err := os.ReadFile(filepath.Join(root, "contrib", "systemd", "preop-panic.conf"))
			if err != nil {
				t.Fatal(err)
			}
			g.Files = append(g.Files, testbed.File{Path: preopDropIn, Mode: 0o644, Data: dropIn})
			out, res, err := g.Run(context.Background())
			if err != nil {
				t.Fatalf("%v\nguest:\n%s\nconsole:\n%s", err, guestOf(res), consoleOf(res))
			}
			j := out.Files["journal:ipmi-cuse"]
			if out.Setup != "ok" {
				t.Fatalf("setup: %s\njournal:\n%s\nconsole:\n%s", out.Setup, j, consoleOf(res))
			}
			want := map[string]string{"start": "", "pid1": "systemd\n", "active": "active\n", "stop": "", "gone": ""}
			for name, stdout := range want {
				c := out.Command(name)
				if c == nil || c.Exit != 0 || string(c.Stdout) != stdout {
					t.Errorf("%s: %+v, want exit 0 and stdout %q", name, c, stdout)
				}
			}
			if c := out.Command("mc_info"); c == nil || c.Exit != 0 || !bytes.Contains(c.Stdout, []byte("IPMI Version")) {
				t.Errorf("ipmitool mc info through the unit: %+v", c)
			}
			if c := out.Command("version"); c == nil || c.Exit != 0 || !bytes.HasPrefix(c.Stdout, []byte("ipmi-cuse ")) {
				t.Errorf("--version: %+v", c)
			}
			// The defaults file turned metrics on; mc info's requests and the
			// daemon's start-up Get Device ID are counted.
			if c := out.Command("metrics"); c == nil || c.Exit != 0 {
				t.Errorf("scraping metrics: %+v", c)
			} else {
				for _, want := range []string{`ipmi_cuse_bmc_up{device="ipmi0"} 1` + "\n", `ipmi_cuse_open_files{device="ipmi0"} 0` + "\n", `ipmi_cuse_kcs_transactions_total{device="ipmi0"} `} {
					if !bytes.Contains(c.Stdout, []byte(want)) {
						t.Errorf("metrics lack %q:\n%s", want, c.Stdout)
					}
				}
			}
			checkThreadCaps(t, out.Command("caps"))
			if c := out.Command("reload"); c != nil {
				if c.Exit != 0 {
					t.Errorf("systemctl reload: %+v", c)
				}
				checkThreadCaps(t, out.Command("caps_after_reload"))
				if c := out.Command("mc_info_after_reload"); c == nil || c.Exit != 0 {
					t.Errorf("ipmitool mc info after the reload: %+v", c)
				}
			} else {
				t.Log("the unit has no ExecReload= yet: caps after a reload not checked")
			}
			if c := out.Command("fds"); c != nil {
				t.Logf("the daemon's descriptors:\n%s", c.Stdout)
			}
			mods := string(out.Command("modules").Stdout)
			if !strings.Contains(mods, "cuse\n") || strings.Contains(mods, "ipmi_si") {
				t.Errorf("modules loaded: %q, want cuse (the unit's modprobe) and no ipmi_si", mods)
			}
			checkPreopDropIn(t, out, j)
			if t.Failed() {
				t.Logf("journal:\n%s", j)
			}
			t.Logf("%s: boot and test took %v", k, res.Elapsed)
		})
	}
}

// preopDropIn is where the Debian package installs the drop-in that lets
// --watchdog-preop panic reach /proc/sysrq-trigger under the unit.
const preopDropIn = "/usr/share/doc/ipmi-cuse/examples/preop-panic.conf"

// checkPreopDropIn checks the unit with --watchdog-preop panic: the
// sandbox alone refuses to start, with an error that names the drop-in;
// with the drop-in the daemon serves, holding /proc/sysrq-trigger open
// (after a reload too).
func checkPreopDropIn(t *testing.T, out *testbed.Output, journal []byte) {
	t.Helper()
	if c := out.Command("panic_sandboxed"); c == nil || c.Exit == 0 {
		t.Errorf("--watchdog-preop panic under the sandbox alone: %+v, want a failed start", c)
	}
	if !bytes.Contains(journal, []byte("preop-panic.conf")) {
		t.Errorf("the journal does not name the drop-in after the refused start")
	}
	for _, name := range []string{"panic_start", "panic_stop"} {
		if c := out.Command(name); c == nil || c.Exit != 0 {
			t.Errorf("%s with the drop-in: %+v", name, c)
		}
	}
	if c := out.Command("panic_active"); c == nil || string(c.Stdout) != "active\n" {
		t.Errorf("with the drop-in the unit is not active: %+v", c)
	}
	for _, name := range []string{"panic_sysrq_fd", "panic_sysrq_fd_after_reload"} {
		c := out.Command(name)
		if c == nil && name == "panic_sysrq_fd_after_reload" && out.Command("panic_reload") == nil {
			continue
		}
		if c == nil || strings.TrimSpace(string(c.Stdout)) != "1" {
			t.Errorf("%s: %+v, want the daemon to hold /proc/sysrq-trigger open once", name, c)
		}
	}
	// The drop-in loosens nothing but the trigger: the service still sees
	// /proc/sys and /sys read-only (the topmost mount of each path counts).
	if c := out.Command("panic_mounts"); c == nil || string(c.Stdout) != "/proc/sys ro\n/sys ro\n" {
		t.Errorf("the service's mounts of /proc/sys, /sys and /proc/sysrq-trigger with the drop-in: %+v, want /proc/sys and /sys read-only", c)
	}
	if c := out.Command("panic_reload"); c != nil && c.Exit != 0 {
		t.Errorf("reload with preop panic: %+v", c)
	}
}

// testEnvKernel is testEnv for a given kernel.
func testEnvKernel(t *testing.T, k testbed.Kernel) *testbed.Env {
	t.Helper()
	testEnv(t)
	env, err := testbed.FindEnvKernel(k)
	if err != nil {
		t.Fatalf("VM tests need provisioning: %v", err)
	}
	return env
}

func consoleOf(res *testbed.Result) string {
	if res == nil {
		return "(none)"
	}
	return string(res.Console)
}

func guestOf(res *testbed.Result) string {
	if res == nil {
		return "(none)"
	}
	return string(res.Guest)
}

// checkThreadCaps requires every thread listed by the guest's thread_caps
// to hold no inheritable, permitted, effective or ambient capability and
// to have no_new_privs: the
// daemon's privilege drop reached every thread, the engine's locked one
// included.
func checkThreadCaps(t *testing.T, c *testbed.CmdResult) {
	t.Helper()
	if c == nil || c.Exit != 0 {
		t.Errorf("thread_caps: %+v", c)
		return
	}
	lines := strings.Split(strings.TrimSpace(string(c.Stdout)), "\n")
	if len(lines) < 3 {
		t.Errorf("only %d threads listed:\n%s", len(lines), c.Stdout)
	}
	// The bounding set is what the unit's CapabilityBoundingSet= left (the
	// daemon cannot empty it without CAP_SETPCAP): it grants nothing once
	// the others are empty and no_new_privs is set.
	want := []string{"CapInh:0000000000000000", "CapPrm:0000000000000000", "CapEff:0000000000000000",
		"CapAmb:0000000000000000", "NoNewPrivs:1"}
	for _, l := range lines {
		f := strings.Fields(l)
		var got []string
		for _, kv := range f[1:] {
			if !strings.HasPrefix(kv, "CapBnd:") {
				got = append(got, kv)
			}
		}
		if len(f) != 2+len(want) || strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("thread still privileged: %s", l)
		}
	}
}
