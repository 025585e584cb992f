package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// restartBefore is the shipped unit's restart settings before issue 9's
// restart-time fixes: modprobe run at every start, and a 100 ms delay.
const restartBefore = `[Service]
ExecStartPre=+/sbin/modprobe cuse
RestartSec=100ms
`

// TestSystemdRestartProfile (make bench-restart-profile) takes crash
// restarts apart, for issue 9's 2 s goal: in the systemd guest with the
// shipped unit and the bench's clients (TestSystemdRestarts' flood, held
// file, events listener and busybox watchdog), it kills the daemon
// (systemctl kill -s KILL) IPMI_CUSE_KILLS times (default 8), alternating
// the shipped unit with a drop-in (IPMI_CUSE_RESTART_DROPIN, "\n" for
// newlines; default restartBefore, so the run compares the unit before
// and after the fixes in one guest). Each kill's phases come from
// systemd's timestamps of the unit (the SIGKILL's journal line, the main
// process seen dead, the restart job, the fork), the daemon's own
// start-up figures (its "ipmi-cuse serving" line) and the served request,
// with who used the guest's CPU during the outage (/proc/stat and
// /proc/PID/stat). IPMI_CUSE_KERNEL picks the kernel (default 6.12).
func TestSystemdRestartProfile(t *testing.T) {
	if os.Getenv("IPMI_CUSE_BENCH") != "1" {
		t.Skip("a benchmark: make bench-restart-profile")
	}
	k := testbed.Kernel(os.Getenv("IPMI_CUSE_KERNEL"))
	if k == "" {
		k = testbed.Kernel612
	}
	env := testEnvKernel(t, k)
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	daemonPath, why := daemon(t)
	if daemonPath == "" {
		t.Skip(why)
	}
	args := []string{"--bmc=kcs", "--kcs-port=0xca2", "--port-io=devport", "--log-level=info",
		"--watchdog-device=watchdog", "--upgrade-timeout=5s"}
	files, err := testbed.ProjectUnit(root, daemonPath, args)
	if err != nil {
		t.Fatal(err)
	}
	dropIn := restartBefore
	if d := os.Getenv("IPMI_CUSE_RESTART_DROPIN"); d != "" {
		dropIn = strings.ReplaceAll(d, `\n`, "\n") + "\n"
	}
	kills := 8
	if n, err := strconv.Atoi(os.Getenv("IPMI_CUSE_KILLS")); err == nil && n > 0 {
		kills = n
	}
	files = append(files,
		testbed.File{Path: "/etc/ipmi-cuse-profile/dropin.conf", Data: []byte(dropIn)},
		testbed.File{Path: "/usr/bin/ipmiprobe", Mode: 0o755, HostPath: probeBins(t)[probeGuestPath]},
		testbed.File{Path: "/scenario.sh", Mode: 0o755, Data: []byte(profileScenario)},
	)
	sim, err := testbed.StartSimBMC(bmcsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	g := &testbed.SystemdGuest{
		Env: env, Files: files, Dir: t.TempDir(), Timeout: bootTimeout,
		Script: fmt.Sprintf(`run start 60 systemctl start ipmi-cuse
if wait_dev 30; then echo '@@@SETUP ok'; else echo '@@@SETUP /dev/ipmi0 did not appear'; fi
run scenario 900 sh /scenario.sh %d
journalctl -b -u ipmi-cuse --no-pager -o json --output-fields=MESSAGE >/tmp/journal.json 2>&1
report /tmp/journal.json
`, kills),
	}
	g.BMC.Extern = sim.Addr
	out, res, err := g.Run(context.Background())
	if err != nil {
		t.Fatalf("%v\nguest:\n%s\nconsole:\n%s", err, guestOf(res), consoleOf(res))
	}
	if out.Setup != "ok" {
		t.Fatalf("setup: %s", out.Setup)
	}
	sc := out.Command("scenario")
	if sc == nil {
		t.Fatalf("no scenario output:\n%s", guestOf(res))
	}
	journal, err := parseJournal(out.Files["/tmp/journal.json"])
	if err != nil {
		t.Fatal(err)
	}
	profiles, err := parseProfile(string(sc.Stdout), journal)
	if err != nil {
		t.Fatalf("%v\nscenario:\n%s\nstderr:\n%s", err, sc.Stdout, sc.Stderr)
	}
	if len(profiles) != kills {
		t.Errorf("%d kills profiled, want %d", len(profiles), kills)
	}
	byVariant := map[string][]float64{}
	for _, p := range profiles {
		t.Logf("kill %d (%s): %s", p.n, p.variant, p)
		t.Logf("    CPU ticks from before systemctl kill to the served request: %s", p.outage)
		byVariant[p.variant] = append(byVariant[p.variant], p.served-p.sigkill)
	}
	for _, v := range []string{"shipped", "drop-in"} {
		t.Logf("MEASURED %s %s unit: served again %s s after the SIGKILL", k, v, fmtRange(byVariant[v]))
	}
	t.Logf("drop-in:\n%s", dropIn)
}

// profileScenario is TestSystemdRestartProfile's guest side; $1 is the
// number of kills. Odd kills run the shipped unit, even ones the drop-in.
// Clocks and the CPU counts are read with the shell's read, which forks
// nothing.
const profileScenario = `
K=$1
P=/usr/bin/ipmiprobe
snap() {
	echo "@snap $1 $2"
	read -r l </proc/stat; echo "$l"
	for f in /proc/[0-9]*/stat; do { read -r l <$f; } 2>/dev/null && echo "$l"; done
	echo "@end"
}
mp() { systemctl show -p MainPID --value ipmi-cuse; }
$P hold -for 900s -interval 100ms -wait 3s >/tmp/hold.out 2>&1 &
$P msghandler events -wait 1 -timeout 900s >/tmp/events.out 2>&1 &
$P flood -clients 2 -depth 4 -duration 900s -drain 60s >/tmp/flood.out 2>&1 &
watchdog -F -t 2 -T 20 /dev/watchdog &
sleep 3
mkdir -p /etc/systemd/system/ipmi-cuse.service.d
for i in $(seq 1 $K); do
	if [ $((i % 2)) = 1 ]; then v=shipped; rm -f /etc/systemd/system/ipmi-cuse.service.d/profile.conf
	else v=drop-in; cp /etc/ipmi-cuse-profile/dropin.conf /etc/systemd/system/ipmi-cuse.service.d/profile.conf; fi
	systemctl daemon-reload
	sleep 2
	old=$(mp)
	snap $i k
	read -r t0 _ </proc/uptime
	systemctl kill -s KILL ipmi-cuse
	read -r tk _ </proc/uptime
	n=0; until timeout 60 ipmitool raw 6 1 >/dev/null 2>&1; do sleep 0.05; n=$((n+1)); [ $n -gt 100 ] && break; done
	read -r t1 _ </proc/uptime
	snap $i s
	echo "kill $i $v: old=$old new=$(mp) t0=$t0 tk=$tk t1=$t1 $(systemctl show ipmi-cuse -p ActiveExitTimestampMonotonic -p InactiveExitTimestampMonotonic -p ExecMainStartTimestampMonotonic | tr '\n' ' ')"
	sleep 2
done
`

// journalEntry is one line of journalctl -o json.
type journalEntry struct {
	Message any    `json:"MESSAGE"`
	Mono    string `json:"__MONOTONIC_TIMESTAMP"`
	mono    float64
}

func (e journalEntry) text() string {
	if s, ok := e.Message.(string); ok {
		return s
	}
	return fmt.Sprint(e.Message)
}

// parseJournal reads journalctl -o json output.
func parseJournal(b []byte) ([]journalEntry, error) {
	var es []journalEntry
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e journalEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			continue
		}
		us, err := strconv.ParseFloat(e.Mono, 64)
		if err != nil {
			continue
		}
		e.mono = us / 1e6
		es = append(es, e)
	}
	if len(es) == 0 {
		return nil, fmt.Errorf("no journal entries in %d bytes", len(b))
	}
	return es, nil
}

// killProfile is one kill's phases, in seconds of the guest's
// CLOCK_MONOTONIC.
type killProfile struct {
	n       int
	variant string
	// systemctl kill started and returned; systemd sent the SIGKILL, saw
	// the main process dead, started the restart job and forked the new
	// process; a request was served again.
	systemctl, returned, sigkill, dead, job, fork, served float64
	// The new process's own figures: fork to main(), fork to serving,
	// and the CPU it had used by then.
	mainAfter, startedIn, cpuBeforeMain, cpuServing time.Duration
	// outage is who used the CPU from just before systemctl kill to the
	// served request.
	outage string
}

func (p killProfile) String() string {
	return fmt.Sprintf("SIGKILL %.2f s after systemctl kill started; then seen dead %+.2f, start %+.2f, main process forked %+.2f, its main() %+.2f (CPU %v), its \"serving\" line %+.2f (CPU %v); a request served %.2f s after the SIGKILL (%.2f s after systemctl kill started)",
		p.sigkill-p.systemctl, p.dead-p.sigkill, p.job-p.dead, p.fork-p.job, p.mainAfter.Seconds(), p.cpuBeforeMain,
		(p.startedIn - p.mainAfter).Seconds(), p.cpuServing, p.served-p.sigkill, p.served-p.systemctl)
}

// parseProfile reads profileScenario's output against the journal.
func parseProfile(stdout string, journal []journalEntry) ([]killProfile, error) {
	snaps := map[string]string{}
	for _, m := range regexp.MustCompile(`(?s)@snap (\d+) ([ks])\n(.*?)@end`).FindAllStringSubmatch(stdout, -1) {
		snaps[m[1]+m[2]] = m[3]
	}
	num := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	var out []killProfile
	for _, m := range regexp.MustCompile(`(?m)^kill (\d+) (\S+): old=(\d+) new=(\d+) t0=(\S+) tk=(\S+) t1=(\S+) (.*)$`).FindAllStringSubmatch(stdout, -1) {
		p := killProfile{variant: m[2], systemctl: num(m[5]), returned: num(m[6]), served: num(m[7])}
		p.n, _ = strconv.Atoi(m[1])
		if m[3] == m[4] {
			return nil, fmt.Errorf("kill %d: the main process %s did not change", p.n, m[3])
		}
		props := map[string]float64{}
		for _, f := range regexp.MustCompile(`(\w+)=(\d+)`).FindAllStringSubmatch(m[8], -1) {
			props[f[1]] = num(f[2]) / 1e6
		}
		p.dead, p.job, p.fork = props["ActiveExitTimestampMonotonic"], props["InactiveExitTimestampMonotonic"], props["ExecMainStartTimestampMonotonic"]
		sent := "Sent signal SIGKILL to main process " + m[3] + " "
		for _, e := range journal {
			if p.sigkill == 0 && strings.Contains(e.text(), sent) {
				p.sigkill = e.mono
			}
			if p.startedIn == 0 && e.mono > p.fork && strings.Contains(e.text(), `msg="ipmi-cuse serving"`) {
				if err := p.parseStartup(e.text()); err != nil {
					return nil, fmt.Errorf("kill %d: %w", p.n, err)
				}
			}
		}
		switch {
		case p.sigkill < p.systemctl || p.sigkill > p.returned:
			return nil, fmt.Errorf("kill %d: SIGKILL at %.2f, not within systemctl kill's run %.2f..%.2f", p.n, p.sigkill, p.systemctl, p.returned)
		// systemd stamps the start's state change (job) just after the
		// fork when nothing runs before the main process.
		case !(p.sigkill <= p.dead && p.dead <= p.job && p.job <= p.fork+0.05 && p.fork < p.served):
			return nil, fmt.Errorf("kill %d: phases out of order: SIGKILL %.2f, dead %.2f, job %.2f, fork %.2f, served %.2f", p.n, p.sigkill, p.dead, p.job, p.fork, p.served)
		case p.startedIn == 0:
			return nil, fmt.Errorf("kill %d: no \"ipmi-cuse serving\" line with started_in after the fork", p.n)
		}
		p.outage = cpuDelta(snaps[m[1]+"k"], snaps[m[1]+"s"])
		out = append(out, p)
	}
	return out, nil
}

// parseStartup reads the daemon's start-up figures from its serving line.
func (p *killProfile) parseStartup(line string) error {
	for _, f := range []struct {
		key string
		d   *time.Duration
	}{{"started_in", &p.startedIn}, {"cpu", &p.cpuServing}, {"main_after", &p.mainAfter}, {"cpu_before_main", &p.cpuBeforeMain}} {
		m := regexp.MustCompile(` ` + f.key + `=(\S+)`).FindStringSubmatch(line)
		if m == nil {
			return fmt.Errorf("no %s in %q", f.key, line)
		}
		d, err := time.ParseDuration(m[1])
		if err != nil {
			return fmt.Errorf("%s: %w", f.key, err)
		}
		*f.d = d
	}
	return nil
}

// cpuDelta says who used the CPU between two snapshots (/proc/stat's cpu
// line, then /proc/PID/stat lines), in clock ticks: the totals, and each
// process that ran (one born in between counts whole; one that died in
// between is missing).
func cpuDelta(a, b string) string {
	parse := func(s string) (map[string]float64, []float64) {
		per := map[string]float64{}
		var tot []float64
		for _, l := range strings.Split(s, "\n") {
			if f, ok := strings.CutPrefix(l, "cpu "); ok {
				for _, x := range strings.Fields(f) {
					v, _ := strconv.ParseFloat(x, 64)
					tot = append(tot, v)
				}
				continue
			}
			i, j := strings.Index(l, "("), strings.LastIndex(l, ")")
			if i < 0 || j < i {
				continue
			}
			f := strings.Fields(l[j+1:])
			if len(f) < 13 {
				continue
			}
			ut, _ := strconv.ParseFloat(f[11], 64)
			st, _ := strconv.ParseFloat(f[12], 64)
			per[strings.TrimSpace(l[:i])+" "+l[i+1:j]] = ut + st
		}
		return per, tot
	}
	pa, ta := parse(a)
	pb, tb := parse(b)
	if len(ta) < 4 || len(tb) < 4 {
		return "(no snapshot)"
	}
	var parts []string
	for i, name := range []string{"user", "nice", "system", "idle"} {
		parts = append(parts, fmt.Sprintf("%s %.0f", name, tb[i]-ta[i]))
	}
	type use struct {
		who   string
		ticks float64
	}
	var uses []use
	for who, v := range pb {
		if d := v - pa[who]; d > 0 {
			uses = append(uses, use{who, d})
		}
	}
	sort.Slice(uses, func(i, j int) bool { return uses[i].ticks > uses[j].ticks })
	for _, u := range uses {
		parts = append(parts, fmt.Sprintf("%s %.0f", u.who, u.ticks))
	}
	return strings.Join(parts, ", ")
}

// fmtRange is "min–max" of vs, or "none".
func fmtRange(vs []float64) string {
	if len(vs) == 0 {
		return "none"
	}
	lo, hi := vs[0], vs[0]
	for _, v := range vs {
		lo, hi = min(lo, v), max(hi, v)
	}
	return fmt.Sprintf("%.2f–%.2f", lo, hi)
}

// TestSystemdSandboxCost (make bench-restart-profile) measures what
// systemd's set-up of the shipped unit's sandbox costs at every start: in
// a quiet systemd guest, a oneshot runs `ipmi-cuse --version` under
// subsets of the unit's sandbox directives (none, all, the file system
// ones, the system call ones, the kernel Protect*= ones, ...), five times
// each, interleaved, and reports the CPU time the unit used
// (CPUUsageNSec: the set-up in systemd's forked child before the exec
// included) and the wall time of `systemctl start`.
func TestSystemdSandboxCost(t *testing.T) {
	if os.Getenv("IPMI_CUSE_BENCH") != "1" {
		t.Skip("a benchmark: make bench-restart-profile")
	}
	env := testEnvKernel(t, testbed.Kernel612)
	daemonPath, root := unitDaemon(t)
	unit, err := os.ReadFile(root + "/contrib/systemd/ipmi-cuse.service")
	if err != nil {
		t.Fatal(err)
	}
	variants, err := sandboxVariants(string(unit))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	files := []testbed.File{{Path: "/usr/sbin/ipmi-cuse", Mode: 0o755, HostPath: daemonPath}}
	for n, v := range variants {
		names = append(names, n)
		files = append(files, testbed.File{Path: "/etc/systemd/system/sbx-" + n + ".service", Data: []byte(v)})
	}
	sort.Strings(names)
	const runs = 5
	script := fmt.Sprintf(`run cost 900 sh -c 'for r in $(seq 1 %d); do for n in %s; do
read -r a _ </proc/uptime; systemctl start sbx-$n; read -r b _ </proc/uptime
echo "$n $a $b $(systemctl show -p CPUUsageNSec --value sbx-$n)"; systemctl stop sbx-$n; done; done'
`, runs, strings.Join(names, " "))
	g := &testbed.SystemdGuest{Env: env, Files: files, Dir: t.TempDir(), Timeout: bootTimeout, Script: script}
	out, res, err := g.Run(context.Background())
	if err != nil {
		t.Fatalf("%v\n%s", err, guestOf(res))
	}
	c := out.Command("cost")
	if c == nil {
		t.Fatalf("no output:\n%s", guestOf(res))
	}
	cpu, wall := map[string][]float64{}, map[string][]float64{}
	for _, m := range regexp.MustCompile(`(?m)^(\S+) (\S+) (\S+) (\d+)$`).FindAllStringSubmatch(string(c.Stdout), -1) {
		a, _ := strconv.ParseFloat(m[2], 64)
		b, _ := strconv.ParseFloat(m[3], 64)
		ns, _ := strconv.ParseFloat(m[4], 64)
		cpu[m[1]] = append(cpu[m[1]], ns/1e9)
		wall[m[1]] = append(wall[m[1]], b-a)
	}
	for _, n := range names {
		if len(cpu[n]) != runs {
			t.Errorf("%s: %d runs measured, want %d\n%s\n%s", n, len(cpu[n]), runs, c.Stdout, c.Stderr)
			continue
		}
		t.Logf("MEASURED sandbox %-9s CPU median %.3f s (%s), start median %.3f s (%s)", n, median(cpu[n]), fmtRange(cpu[n]), median(wall[n]), fmtRange(wall[n]))
	}
}

// sandboxVariants returns oneshot units running ipmi-cuse --version
// under subsets of the sandbox part of unit (the lines after "# The
// sandbox"), by name.
func sandboxVariants(unit string) (map[string]string, error) {
	var sandbox []string
	in := false
	for _, l := range strings.Split(unit, "\n") {
		switch {
		case strings.HasPrefix(l, "# The sandbox"):
			in = true
		case strings.HasPrefix(l, "["):
			in = false
		case in && l != "" && !strings.HasPrefix(l, "#"):
			sandbox = append(sandbox, l)
		}
	}
	if len(sandbox) < 10 {
		return nil, fmt.Errorf("the unit's sandbox has %d lines: not found", len(sandbox))
	}
	const (
		files   = "ProtectSystem ProtectHome PrivateTmp PrivateMounts ProtectKernelTunables ProtectControlGroups ProtectProc ProcSubset RuntimeDirectory RuntimeDirectoryMode"
		syscall = "RestrictAddressFamilies RestrictNamespaces RestrictRealtime RestrictSUIDSGID LockPersonality MemoryDenyWriteExecute SystemCallArchitectures SystemCallFilter SystemCallErrorNumber"
		kernel  = "ProtectKernelModules ProtectKernelLogs ProtectClock ProtectHostname"
	)
	among := func(list string) func(string) bool {
		return func(k string) bool { return strings.Contains(" "+list+" ", " "+k+" ") }
	}
	pick := func(keep func(string) bool) string {
		var b strings.Builder
		b.WriteString("[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/sbin/ipmi-cuse --version\n")
		for _, l := range sandbox {
			if k, _, _ := strings.Cut(l, "="); keep(k) {
				b.WriteString(l + "\n")
			}
		}
		return b.String()
	}
	return map[string]string{
		"none":     pick(func(string) bool { return false }),
		"all":      pick(func(string) bool { return true }),
		"files":    pick(among(files)),
		"syscalls": pick(among(syscall)),
		"kernel":   pick(among(kernel)),
		"rest":     pick(func(k string) bool { return !among(files + " " + syscall + " " + kernel)(k) }),
	}, nil
}

// median of vs (not empty).
func median(vs []float64) float64 {
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func TestParseProfile(t *testing.T) {
	journal := []journalEntry{
		{Message: "ipmi-cuse.service: Sent signal SIGKILL to main process 100 (ipmi-cuse) on client request.", mono: 10.30},
		{Message: `time=x level=INFO msg="ipmi-cuse serving" devices="[/dev/ipmi0]" started_in=900ms cpu=700ms main_after=600ms cpu_before_main=500ms`, mono: 11.45},
	}
	snaps := "@snap 1 k\ncpu  100 0 200 50\n1 (systemd) S 0 1 1 0 -1 0 0 0 0 0 10 10 0 0\n@end\n" +
		"@snap 1 s\ncpu  160 0 260 51\n1 (systemd) S 0 1 1 0 -1 0 0 0 0 0 15 12 0 0\n7 (ipmi-cuse) S 1 7 7 0 -1 0 0 0 0 0 50 40 0 0\n@end\n"
	line := func(old, new, props string) string {
		return snaps + "kill 1 shipped: old=" + old + " new=" + new + " t0=10.00 tk=10.40 t1=11.60 " + props + "\n"
	}
	good := "ActiveExitTimestampMonotonic=10350000 InactiveExitTimestampMonotonic=10500000 ExecMainStartTimestampMonotonic=10550000"
	for _, c := range []struct {
		name, stdout string
		want         string // the profile, or the error
	}{
		{"phases", line("100", "101", good),
			"SIGKILL 0.30 s after systemctl kill started; then seen dead +0.05, start +0.15, main process forked +0.05, its main() +0.60 (CPU 500ms), its \"serving\" line +0.30 (CPU 700ms); a request served 1.30 s after the SIGKILL (1.60 s after systemctl kill started)" +
				" | user 60, nice 0, system 60, idle 1, 7 ipmi-cuse 90, 1 systemd 7"},
		{"same process", line("100", "100", good), "kill 1: the main process 100 did not change"},
		{"no SIGKILL line", line("200", "201", good), "kill 1: SIGKILL at 0.00, not within systemctl kill's run 10.00..10.40"},
		{"out of order", line("100", "101", "ActiveExitTimestampMonotonic=10600000 InactiveExitTimestampMonotonic=10500000 ExecMainStartTimestampMonotonic=10550000"),
			"kill 1: phases out of order: SIGKILL 10.30, dead 10.60, job 10.50, fork 10.55, served 11.60"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps, err := parseProfile(c.stdout, journal)
			got := ""
			switch {
			case err != nil:
				got = err.Error()
			case len(ps) != 1:
				got = fmt.Sprintf("%d profiles", len(ps))
			default:
				got = ps[0].String() + " | " + ps[0].outage
			}
			if got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}
