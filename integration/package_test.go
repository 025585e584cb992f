package integration

import (
	"bufio"
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// buildDeb builds the Debian package as `make deb` does (static, stamped,
// stripped binary; contrib/debian/build-deb.sh) into a temporary folder.
func buildDeb(t *testing.T) string {
	t.Helper()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "ipmi-cuse")
	const pkg = "github.com/ipmi-cuse/ipmi-cuse/internal/buildinfo"
	build := exec.Command("go", "build", "-trimpath", "-o", bin,
		"-ldflags", "-s -w -X "+pkg+".stampVersion=0.0.0~vmtest -X "+pkg+".stampRevision=vmtest", "./cmd/ipmi-cuse")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	deb := exec.Command("bash", "contrib/debian/build-deb.sh", bin, "0.0.0~vmtest", "vmtest", dir)
	deb.Dir = root
	out, err := deb.CombinedOutput()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// packageInstall is the user's path: install the package with dpkg, turn
// metrics on with the one line of the defaults file, add flags, enable and
// start the unit.
func packageInstall(args string) string {
	s := `run status 10 dpkg-query -W -f '${Status} ${Version}\n' ipmi-cuse
sed -i 's/^#IPMI_CUSE_METRICS=/IPMI_CUSE_METRICS=/' /etc/default/ipmi-cuse
`
	if args != "" {
		s += "echo 'IPMI_CUSE_ARGS=\"" + args + "\"' >>/etc/default/ipmi-cuse\n"
	}
	return s + `run enable 120 systemctl enable --now ipmi-cuse
if wait_dev 60; then echo '@@@SETUP ok'; else echo '@@@SETUP /dev/ipmi0 did not appear'; fi
M() { wget -q -O - http://127.0.0.1:9101/metrics; }
`
}

// TestDebianPackage installs the package built by `make deb` in the systemd
// guest with dpkg and uses it as a user would: the hardened unit serves
// /dev/ipmi0 (the client corpus passes through it), every thread of the
// daemon holds no capability after start and after a reload, and the
// metrics scraped after a known workload (N requests, one watchdog
// pretimeout, one BMC outage injected at the simulated BMC) match it.
// lintian reports neither an error nor a warning on the package.
func TestDebianPackage(t *testing.T) {
	env := testEnvKernel(t, testbed.Kernel61)
	deb := buildDeb(t)

	t.Run("lintian", func(t *testing.T) {
		// provision.sh installs lintian; a package with a lintian error or
		// warning is not what Debian's tools accept.
		out, err := exec.Command("lintian", "--fail-on", "error,warning", deb).CombinedOutput()
		if err != nil {
			t.Errorf("lintian %s: %v\n%s", filepath.Base(deb), err, out)
		}
	})

	t.Run("corpus", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("mkdir -p /root/.freeipmi /tmp/sdr-cache\n")
		b.WriteString(packageInstall(""))
		b.WriteString("run version 10 /usr/sbin/ipmi-cuse --version\n")
		b.WriteString("thread_caps $(main_pid ipmi-cuse) >/tmp/caps; run caps 10 cat /tmp/caps\n")
		for _, c := range corpus {
			cmd := c.command()
			to := cmd.Timeout
			if to == 0 {
				to = 60
			}
			b.WriteString("run " + cmd.Name + " " + strconv.Itoa(to) + " " + shellJoin(cmd.Args) + "\n")
		}
		b.WriteString(`run reload 120 systemctl reload ipmi-cuse
thread_caps $(main_pid ipmi-cuse) >/tmp/caps; run caps_after_reload 10 cat /tmp/caps
run mc_info_after_reload 60 ipmitool mc info
run active 10 systemctl is-active ipmi-cuse
journal ipmi-cuse
`)
		dir := t.TempDir()
		fru := filepath.Join(dir, "fru.bin")
		if err := testbed.WriteFRUData(fru); err != nil {
			t.Fatal(err)
		}
		g := &testbed.SystemdGuest{Env: env, Debs: []string{deb}, Dir: dir, Timeout: bootTimeout, Script: b.String(),
			BMC: testbed.BMC{FRUData: fru}}
		out := runGuest(t, g)
		if c := out.Command("dpkg_install"); c == nil || c.Exit != 0 {
			t.Fatalf("dpkg -i: %+v", c)
		}
		if c := out.Command("status"); c == nil || string(c.Stdout) != "install ok installed 0.0.0~vmtest\n" {
			t.Errorf("dpkg-query: %+v", c)
		}
		if c := out.Command("version"); c == nil || !bytes.Contains(c.Stdout, []byte("revision vmtest")) {
			t.Errorf("--version of the packaged binary: %+v", c)
		}
		checkThreadCaps(t, out.Command("caps"))
		checkKernelEntries(t, out, corpus)
		if c := out.Command("reload"); c == nil || c.Exit != 0 {
			t.Errorf("systemctl reload: %+v", c)
		}
		checkThreadCaps(t, out.Command("caps_after_reload"))
		for _, n := range []string{"mc_info_after_reload", "active"} {
			if c := out.Command(n); c == nil || c.Exit != 0 {
				t.Errorf("%s: %+v", n, c)
			}
		}
		if t.Failed() {
			t.Logf("journal:\n%s", out.Files["journal:ipmi-cuse"])
		}
	})

	t.Run("metrics", func(t *testing.T) {
		sim, err := testbed.StartSimBMC(bmcsim.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		const n = 40
		// Waits on the BMC shorter than QEMU's own 4 s answer to a silent
		// external BMC, so the silence is a KCS timeout for the daemon.
		script := packageInstall("--kcs-wait-timeout=1s --kcs-transaction-timeout=2s --probe-interval=500ms") + `sleep 2
M >/tmp/m0; report /tmp/m0
run workload 300 ` + probeGuestPath + ` bench -n ` + strconv.Itoa(n) + ` -warmup 0
M >/tmp/m1; report /tmp/m1
run wd_set 30 ipmitool raw 0x06 0x24 0x04 0x30 0x02 0x00 0x1e 0x00
date +%s >/tmp/t_before
run wd_reset 30 ipmitool raw 0x06 0x22
date +%s >/tmp/t_after
sleep 5
M >/tmp/m2; report /tmp/m2
run outage 120 sh -c 'for i in 1 2 3 4; do ipmitool raw 0x06 0x01 >/dev/null 2>&1; done; i=0; until wget -q -O - http://127.0.0.1:9101/metrics | grep -q "^ipmi_cuse_bmc_up{device=\"ipmi0\"} 0"; do sleep 0.2; i=$((i+1)); [ $i -gt 300 ] && exit 1; done; exit 0'
run recover 120 sh -c 'i=0; until wget -q -O - http://127.0.0.1:9101/metrics | grep -q "^ipmi_cuse_bmc_up{device=\"ipmi0\"} 1"; do sleep 0.2; i=$((i+1)); [ $i -gt 300 ] && exit 1; done; exit 0'
M >/tmp/m3; report /tmp/m3
report /tmp/t_before
report /tmp/t_after
journal ipmi-cuse
`
		g := &testbed.SystemdGuest{Env: env, Debs: []string{deb}, Dir: t.TempDir(), Timeout: bootTimeout, Script: script,
			BMC: testbed.BMC{Extern: sim.Addr}, Files: []testbed.File{{Path: probeGuestPath, Mode: 0o755, HostPath: probeBins(t)[probeGuestPath]}},
			OnLine: func(l string) {
				switch l {
				case "@@@CMD outage":
					sim.BMC.SetSilent(true)
				case "@@@CMD recover":
					sim.BMC.SetSilent(false)
				}
			}}
		out := runGuest(t, g)
		defer func() {
			if t.Failed() {
				t.Logf("journal:\n%s\nsimulated BMC:\n%s", out.Files["journal:ipmi-cuse"], lastLines(sim.Log(), 40))
			}
		}()
		for _, name := range []string{"workload", "wd_set", "wd_reset", "outage", "recover"} {
			if c := out.Command(name); c == nil || c.Exit != 0 {
				t.Errorf("%s: %+v", name, c)
			}
		}
		m := make([]map[string]float64, 4)
		for i := range m {
			m[i] = parseScrape(out.Files["/tmp/m"+strconv.Itoa(i)])
			if len(m[i]) == 0 {
				t.Fatalf("scrape %d empty", i)
			}
		}
		delta := func(a, b int, s string) float64 { return m[b][s] - m[a][s] }
		exact := []struct {
			what      string
			got, want float64
		}{
			{"requests of the workload", delta(0, 1, `ipmi_cuse_requests_total{completion_code="0x00",device="ipmi0",lane="normal"}`), n},
			{"their BMC times", delta(0, 1, `ipmi_cuse_request_bmc_seconds_count{device="ipmi0",lane="normal"}`), n},
			{"Set Watchdog Timer", delta(1, 2, `ipmi_cuse_watchdog_sets_total{device="ipmi0"}`), 1},
			{"Reset Watchdog Timer", delta(1, 2, `ipmi_cuse_watchdog_pats_total{device="ipmi0"}`), 1},
			{"watchdog commands on the priority lane", delta(1, 2, `ipmi_cuse_requests_total{completion_code="0x00",device="ipmi0",lane="priority"}`), 2},
			{"pretimeouts", delta(0, 3, `ipmi_cuse_watchdog_pretimeouts_total{device="ipmi0"}`), float64(sim.BMC.Stats().PretimeoutsFired)},
			{"pretimeouts (one fired)", delta(0, 3, `ipmi_cuse_watchdog_pretimeouts_total{device="ipmi0"}`), 1},
			{"watchdog timeout", m[2][`ipmi_cuse_watchdog_timeout_seconds{device="ipmi0"}`], 3},
			{"health down", delta(2, 3, `ipmi_cuse_bmc_health_transitions_total{device="ipmi0",to="down"}`), 1},
			{"health up", delta(2, 3, `ipmi_cuse_bmc_health_transitions_total{device="ipmi0",to="up"}`), 1},
			{"up at the end", m[3][`ipmi_cuse_bmc_up{device="ipmi0"}`], 1},
			{"no health change before the outage", delta(0, 2, `ipmi_cuse_bmc_health_transitions_total{device="ipmi0",to="down"}`), 0},
		}
		for _, e := range exact {
			if e.got != e.want {
				t.Errorf("%s: %v, want %v", e.what, e.got, e.want)
			}
		}
		if d := delta(2, 3, `ipmi_cuse_kcs_errors_total{device="ipmi0",kind="timeout"}`); d < 3 {
			t.Errorf("KCS timeouts during the outage: %v, want at least 3 (the unresponsive threshold)", d)
		}
		// The guest's clock (busybox date: whole seconds) read just before
		// and just after the Reset brackets the daemon's timestamp of it.
		before, after := parseFloat(out.Files["/tmp/t_before"]), parseFloat(out.Files["/tmp/t_after"])+1
		if lp := m[2][`ipmi_cuse_watchdog_last_pat_timestamp_seconds{device="ipmi0"}`]; !(lp >= before && lp < after) {
			t.Errorf("last pat at %.3f, not between the guest's clock before (%.0f) and after (%.0f) the Reset", lp, before, after)
		}
		t.Logf("workload: %d requests; pretimeouts at the BMC %d; KCS timeouts in the outage %v; last pat %.3f in [%.3f, %.3f]",
			n, sim.BMC.Stats().PretimeoutsFired, delta(2, 3, `ipmi_cuse_kcs_errors_total{device="ipmi0",kind="timeout"}`),
			m[2][`ipmi_cuse_watchdog_last_pat_timestamp_seconds{device="ipmi0"}`], before, after)
	})
}

// runGuest boots g and fails the test, with the console, when the guest
// did not run its script to the end with a working /dev/ipmi0.
func runGuest(t *testing.T, g *testbed.SystemdGuest) *testbed.Output {
	t.Helper()
	out, res, err := g.Run(context.Background())
	if err != nil {
		t.Fatalf("%v\nguest:\n%s\nconsole:\n%s", err, guestOf(res), lastLines(consoleOf(res), 80))
	}
	if out.Setup != "ok" {
		t.Fatalf("setup: %s\ndpkg: %+v\njournal:\n%s\nconsole:\n%s", out.Setup, out.Command("dpkg_install"),
			out.Files["journal:ipmi-cuse"], lastLines(consoleOf(res), 80))
	}
	t.Logf("boot and test took %v", res.Elapsed)
	return out
}

// parseScrape reads a Prometheus text scrape into series → value.
func parseScrape(b []byte) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(l[i+1:], 64); err == nil {
			m[l[:i]] = v
		}
	}
	return m
}

func parseFloat(b []byte) float64 {
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// shellJoin quotes args for the guest's sh.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
