package integration

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// TestSystemdTwoInterfaces is upgrade and crash survival with two BMCs
// (QEMU's, one behind KCS and one behind BT, found through SMBIOS) under
// systemd with the shipped unit: while a client holds a file on each of
// /dev/ipmi0 and /dev/ipmi1, `systemctl reload` hands both over, then
// `systemctl kill -s KILL` leaves both in systemd's store, and the
// restarted daemon serves both again with the same device numbers, each
// held file working on; `systemctl stop` removes both nodes.
func TestSystemdTwoInterfaces(t *testing.T) {
	env := testEnv(t)
	daemonPath, root := unitDaemon(t)
	files, err := testbed.ProjectUnit(root, daemonPath, []string{"--log-level=info"})
	if err != nil {
		t.Fatal(err)
	}
	files = append(files,
		testbed.File{Path: "/usr/bin/ipmiprobe", Mode: 0o755, HostPath: probeBins(t)[probeGuestPath]},
		testbed.File{Path: "/scenario.sh", Mode: 0o755, Data: []byte(twoRestartScenario)})
	g := &testbed.SystemdGuest{
		Env: env, Files: files, Dir: t.TempDir(), Timeout: bootTimeout,
		BMC:   testbed.BMC{Interface: testbed.KCS},
		Extra: []testbed.BMC{{Interface: testbed.BT, SimProps: "fwrev1=2,product_id=4242"}},
		Script: `run start 60 systemctl start ipmi-cuse
if wait_dev 30 && [ -c /dev/ipmi1 ]; then echo '@@@SETUP ok'; else echo '@@@SETUP /dev/ipmi0 and /dev/ipmi1 did not appear'; fi
run scenario 300 sh /scenario.sh
run stop 60 systemctl stop ipmi-cuse
run gone 10 sh -c 'sleep 0.5; ls /dev/ipmi0 /dev/ipmi1 2>&1; systemctl is-active ipmi-cuse'
journal ipmi-cuse
`,
	}
	out, res, err := g.Run(context.Background())
	if err != nil {
		t.Fatalf("%v\nguest:\n%s\nconsole:\n%s", err, guestOf(res), consoleOf(res))
	}
	j := string(out.Files["journal:ipmi-cuse"])
	if out.Setup != "ok" {
		t.Fatalf("setup: %s\njournal:\n%s", out.Setup, j)
	}
	sc := out.Command("scenario")
	if sc == nil {
		t.Fatalf("no scenario output; journal:\n%s", j)
	}
	stdout := string(sc.Stdout)
	t.Logf("guest:\n%s", stdout)
	defer func() {
		if t.Failed() {
			t.Logf("stderr:\n%s\njournal:\n%s", sc.Stderr, j)
		}
	}()
	devs := regexp.MustCompile(`(?m)^devices (\S+ \S+)$`).FindStringSubmatch(stdout)
	if devs == nil {
		t.Fatal("no device numbers")
	}
	for _, step := range []string{"reload", "kill"} {
		m := regexp.MustCompile(`(?m)^` + step + `: (\d+) -> (\d+) devices (\S+ \S+)$`).FindStringSubmatch(stdout)
		if m == nil || m[1] == m[2] || m[2] == "0" || m[3] != devs[1] {
			t.Errorf("%s: %v (want a new main process serving both devices, numbers %s)", step, m, devs[1])
		}
	}
	if !regexp.MustCompile(`restarted with descriptors from the service manager's store.*cuse-ipmi1`).MatchString(j) {
		t.Error("the journal does not show /dev/ipmi1's channel coming back from the store")
	}
	// Each held file kept working. A kill may lose the replies the dead
	// process held (a lost request, or EAGAIN when the kill fell between
	// poll and receive); nothing else may fail.
	for _, d := range []string{"ipmi0", "ipmi1"} {
		h := regexp.MustCompile(`(?m)^` + d + `: hold n=(\d+) ok=(\d+) lost=(\d+) errors=(\d+)`).FindStringSubmatch(stdout)
		eagain := 0
		if m := regexp.MustCompile(`(?m)^` + d + `: info: hold recv_EAGAIN=(\d+)`).FindStringSubmatch(stdout); m != nil {
			eagain, _ = strconv.Atoi(m[1])
		}
		if h == nil {
			t.Errorf("%s: no hold summary", d)
			continue
		}
		ok, _ := strconv.Atoi(h[2])
		lost, _ := strconv.Atoi(h[3])
		errs, _ := strconv.Atoi(h[4])
		if ok == 0 || errs != eagain || lost+errs > 2 ||
			regexp.MustCompile(`(?m)^`+d+`: info: hold (send_|stale|recv_[^E])`).MatchString(stdout) {
			t.Errorf("%s held across a reload and a kill: %s (want replies, at most the kill's losses)", d, h[0])
		}
	}
	if c := out.Command("gone"); c == nil || strings.Count(string(c.Stdout), "No such file") != 2 || !strings.Contains(string(c.Stdout), "inactive") {
		t.Errorf("after systemctl stop: %q (want both nodes gone, unit inactive)", c.Stdout)
	}
}

// twoRestartScenario is the guest side of TestSystemdTwoInterfaces.
const twoRestartScenario = `
P=/usr/bin/ipmiprobe
mp() { systemctl show -p MainPID --value ipmi-cuse; }
dev() { echo "$(stat -c %t:%T /dev/ipmi0) $(stat -c %t:%T /dev/ipmi1)"; }
echo "devices $(dev)"
$P hold -dev /dev/ipmi0 -for 600s -interval 100ms -wait 10s >/tmp/h0.out 2>&1 & h0=$!
$P hold -dev /dev/ipmi1 -for 600s -interval 100ms -wait 10s >/tmp/h1.out 2>&1 & h1=$!
sleep 3
old=$(mp)
systemctl reload ipmi-cuse
n=0; while [ "$(mp)" = "$old" ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done
echo "reload: $old -> $(mp) devices $(dev)"
sleep 3
old=$(mp)
systemctl kill -s KILL ipmi-cuse
n=0; until [ "$(mp)" != "$old" ] && [ "$(mp)" != 0 ] && ipmitool -d 1 raw 6 1 >/dev/null 2>&1; do sleep 0.05; n=$((n+1)); [ $n -gt 1200 ] && break; done
echo "kill: $old -> $(mp) devices $(dev)"
sleep 3
kill $h0 $h1; wait $h0; wait $h1
sed 's/^/ipmi0: /' /tmp/h0.out; sed 's/^/ipmi1: /' /tmp/h1.out
`
