package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// TestSystemdRestarts is issue 9's acceptance under systemd, on the 6.1
// and 6.12 kernels, with the shipped unit and the simulated BMC: while a
// client keeps one /dev/ipmi0 file open and busy, a flood, an events
// listener and busybox's watchdog daemon on /dev/watchdog run, `systemctl
// reload` upgrades alternately onto two different builds (versions stamped
// with -ldflags -X; each new process must run and report its own), then onto one
// that exits at once and one that never answers (both rolled back); then
// `systemctl kill -s KILL` three times (the device must be served again,
// with the same number, the old file working on; within 2 s in make
// bench-restart); then one
// kill with a read of /dev/watchdog in flight, which on 6.12 the restarted
// daemon gets again (FUSE_NOTIFY_RESEND) and serves, and which on 6.1 is
// lost with the dead process (the new one answers its interrupt with
// EINTR, as the README says); then
// `systemctl stop` (node gone, BMC watchdog stopped).
//
// Also: after the rollbacks, one more reload while a read of /dev/watchdog blocks
// (carried to the new process), and IPMI SEND ioctls in flight, with the
// BMC slowed down, at a SIGHUP upgrade and at a kill (see sendInFlight).
//
// IPMI_CUSE_BENCH=1 runs ten reloads instead of four.
func TestSystemdRestarts(t *testing.T) {
	reloads := 4
	// The goal is the device served again within 2 s of a kill (of the
	// SIGKILL systemd sends; see restartScenario). Under TCG
	// the guest's time stretches with the host's load (15 s was seen on a
	// 2-core host at load 10), so the test run by make test only requires
	// it to be served again, within a minute, and logs what it measured;
	// the bench run holds the 2 s.
	killBound := 60.0
	bench := os.Getenv("IPMI_CUSE_BENCH") == "1"
	if bench {
		reloads, killBound = 10, 2
	}
	for _, k := range []testbed.Kernel{testbed.Kernel61, testbed.Kernel612} {
		t.Run(string(k), func(t *testing.T) { systemdRestarts(t, k, reloads, killBound, bench) })
	}
}

func systemdRestarts(t *testing.T, k testbed.Kernel, reloads int, killBound float64, bench bool) {
	env := testEnvKernel(t, k)
	_, root := unitDaemon(t) // builds a and b below; skips where there is no daemon
	args := []string{"--bmc=kcs", "--kcs-port=0xca2", "--port-io=devport", "--log-level=info",
		"--watchdog-device=watchdog", "--upgrade-timeout=5s"}
	// Two genuinely different builds, each with its version stamped in
	// (-ldflags -X, as the Makefile does); a is the one installed first.
	// The reloads alternate b, a, b...: each new process must run, and
	// report, the version on disk.
	a := filepath.Join(t.TempDir(), "ipmi-cuse.a")
	b := filepath.Join(t.TempDir(), "ipmi-cuse.b")
	for _, v := range []struct{ path, version string }{{a, buildA}, {b, buildB}} {
		if err := testbed.BuildDaemonVersion(root, v.path, v.version); err != nil {
			t.Fatal(err)
		}
	}
	daemonPath := a
	files, err := testbed.ProjectUnit(root, daemonPath, args)
	if err != nil {
		t.Fatal(err)
	}
	files = append(files,
		testbed.File{Path: "/usr/sbin/ipmi-cuse.a", Mode: 0o755, HostPath: a},
		testbed.File{Path: "/usr/sbin/ipmi-cuse.b", Mode: 0o755, HostPath: b},
		testbed.File{Path: "/usr/bin/ipmiprobe", Mode: 0o755, HostPath: probeBins(t)[probeGuestPath]},
		testbed.File{Path: "/scenario.sh", Mode: 0o755, Data: []byte(restartScenario)},
	)
	sim, err := testbed.StartSimBMC(bmcsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	pats := watchPats(sim.BMC)
	g := &testbed.SystemdGuest{
		Env: env, Files: files, Dir: t.TempDir(), Timeout: bootTimeout,
		Script: fmt.Sprintf(`run start 60 systemctl start ipmi-cuse
if wait_dev 30; then echo '@@@SETUP ok'; else echo '@@@SETUP /dev/ipmi0 did not appear'; fi
run scenario 600 sh /scenario.sh %d
run stop 60 systemctl stop ipmi-cuse
run gone 10 sh -c 'sleep 0.5; ls /dev/ipmi0 /dev/watchdog 2>&1; systemctl is-active ipmi-cuse'
journal ipmi-cuse
`, reloads),
	}
	g.BMC.Extern = sim.Addr
	g.OnLine = func(l string) {
		if ms, ok := strings.CutPrefix(l, "ipmi-cuse-test: bmc delay "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(ms))
			sim.BMC.SetDelay(time.Duration(n) * time.Millisecond)
		}
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
	t.Logf("%s guest:\n%s", k, stdout)
	defer func() {
		if t.Failed() {
			t.Logf("stderr:\n%s\njournal:\n%s", sc.Stderr, j)
		}
	}()
	_, npats, st := pats.stop()

	dev0 := regexp.MustCompile(`(?m)^dev (\S+)$`).FindStringSubmatch(stdout)
	if dev0 == nil {
		t.Fatal("no device number")
	}
	// Reloads: a new main process running the binary now on disk, same device.
	rl := regexp.MustCompile(`(?m)^reload (\d+): (\d+) -> (\d+) in (\S+) s exe (\S+) disk (\S+) dev (\S+) version (\S+)$`).FindAllStringSubmatch(stdout, -1)
	if len(rl) != reloads {
		t.Errorf("%d reloads reported, want %d", len(rl), reloads)
	}
	// What each new process says it is, in its own log line.
	said := regexp.MustCompile(`serving the devices taken over; the previous process exits" version=(\S+)`).FindAllStringSubmatch(j, -1)
	for i, m := range rl {
		want := buildB
		if i%2 == 1 {
			want = buildA
		}
		if m[2] == m[3] || m[5] != m[6] || m[7] != dev0[1] || m[8] != want {
			t.Errorf("reload %s: pid %s -> %s, running %s, on disk %s, device %s, version %s (want a new pid running the disk's binary, version %s, on %s)",
				m[1], m[2], m[3], m[5], m[6], m[7], m[8], want, dev0[1])
		}
		if i >= len(said) || said[i][1] != want {
			t.Errorf("reload %s: the new process's log does not say version %s (%v)", m[1], want, said)
		}
	}
	for _, name := range []string{"exits", "never-ready"} {
		m := regexp.MustCompile(`(?m)^rollback ` + name + `: (\d+) -> (\d+) (\S+) dev (\S+)$`).FindStringSubmatch(stdout)
		if m == nil || m[1] != m[2] || m[3] != "active" || m[4] != dev0[1] {
			t.Errorf("rollback %s: %v (want the same main process, active, same device)", name, m)
		}
	}
	// Nothing restarted the daemon between the reloads and the kills.
	if strings.Contains(j, "Watchdog timeout") || strings.Contains(j, "Scheduled restart job, restart counter is at 1.") &&
		strings.Index(j, "Scheduled restart job, restart counter is at 1.") < strings.Index(j, "upgrade failed") {
		t.Error("the daemon was restarted before the kills (systemd's watchdog, or a crash)")
	}
	for _, want := range []string{"exited before it was ready", "did not become ready in time"} {
		if !strings.Contains(j, want) {
			t.Errorf("journal lacks the rolled-back upgrade's reason %q", want)
		}
	}
	// Kills: served again (within killBound of the SIGKILL), same device.
	kl := regexp.MustCompile(`(?m)^kill (\d+): (\d+) -> (\d+) served at (\S+) systemctl at (\S+) returned at (\S+) sigkill at (\S+) dev (\S+)$`).FindAllStringSubmatch(stdout, -1)
	if len(kl) != 3 {
		t.Errorf("%d kills reported, want 3", len(kl))
	}
	var served []string
	for _, m := range kl {
		k := parseKill(m[4:8])
		served = append(served, k.String())
		// Without the journal's SIGKILL line (a journald starved on a
		// slow machine) only the bench fails: it is there to measure.
		late := k.err == nil && k.served-k.sigkill > killBound || k.err != nil && bench
		if m[2] == m[3] || late || m[8] != dev0[1] {
			t.Errorf("kill %s: pid %s -> %s served %s on %s (want a new pid within %v s of the SIGKILL on %s)", m[1], m[2], m[3], k, m[8], killBound, dev0[1])
		}
	}
	if !strings.Contains(j, "adopted a file opened before the restart") {
		t.Error("journal shows no adopted file after the kills")
	}
	// The one file kept open throughout kept working.
	// A kill loses the replies queued in the dead process: the client's
	// poll times out (lost), or, if the kill fell between its poll and its
	// receive, the receive finds the adopted file's queue empty (EAGAIN).
	// Nothing else may fail.
	hold := regexp.MustCompile(`hold n=(\d+) ok=(\d+) lost=(\d+) errors=(\d+) max_gap_ms=(\d+)`).FindStringSubmatch(stdout)
	eagain := 0
	if m := regexp.MustCompile(`info: hold recv_EAGAIN=(\d+)`).FindStringSubmatch(stdout); m != nil {
		eagain, _ = strconv.Atoi(m[1])
	}
	holdErrs := -1
	if hold != nil {
		holdErrs, _ = strconv.Atoi(hold[4])
	}
	// On 6.1 a request of the client's that the dead process had read is
	// answered EINTR by the restarted one (cuse's orphan sweep): the
	// kernel cannot send it again.
	eintr, rest := 0, stdout
	if k == testbed.Kernel61 {
		re := regexp.MustCompile(`(?m)^info: hold (?:send|recv)_EINTR=(\d+)$`)
		for _, m := range re.FindAllStringSubmatch(stdout, -1) {
			n, _ := strconv.Atoi(m[1])
			eintr += n
		}
		rest = re.ReplaceAllString(stdout, "")
	}
	if hold == nil || hold[2] == "0" || holdErrs != eagain+eintr || regexp.MustCompile(`info: hold (send_|stale|recv_[^E])`).MatchString(rest) {
		t.Errorf("client holding one file across everything: %v (want replies, and no error but EAGAIN after a kill, or EINTR on 6.1)", hold)
	}
	// Upgrades lose nothing; kills may lose what was in flight.
	flood := regexp.MustCompile(`flood clients=\d+ depth=\d+ sent=(\d+) answered=(\d+) lost=(\d+) misrouted=(\d+) ebusy=\d+ send_errors=(\d+) recv_errors=(\d+)`).FindStringSubmatch(stdout)
	if flood == nil || flood[1] != flood[2] || flood[3] != "0" || flood[4] != "0" || flood[5] != "0" || flood[6] != "0" {
		t.Errorf("flood across the reloads: %v (want every request answered once)", flood)
	}
	if !strings.Contains(stdout, fmt.Sprintf("events: %d received", reloads)) {
		t.Errorf("events listener did not get one event after each of the %d reloads", reloads)
	}
	// The request in flight at a kill: on 6.12 the kernel sends it again
	// to the new process (FUSE_NOTIFY_RESEND), which serves it, so the
	// interrupt reaches it; on 6.1 it is lost with the dead process, and
	// the new one answers the interrupt of a request it never saw with
	// EINTR. Either way the caller gets EINTR, not a hang.
	inflight := regexp.MustCompile(`(?m)^inflight: (.*)$`).FindStringSubmatch(stdout)
	if inflight == nil || !strings.Contains(inflight[1], "interrupted system call") {
		t.Errorf("the read in flight at the kill: %v, want it to end with EINTR when interrupted", inflight)
	}
	resent := strings.Contains(j, "asked the kernel to send again")
	// The orphan is answered when it is interrupted, or before that by
	// the sweep at the first new request.
	orphaned := strings.Contains(j, "answered EINTR to an interrupted request the previous process left unanswered") ||
		strings.Contains(j, "answered EINTR to requests the previous process left unanswered")
	switch {
	case k == testbed.Kernel612 && (!resent || orphaned):
		t.Errorf("6.12: journal says resent=%v orphan-answered=%v, want the request sent again", resent, orphaned)
	case k == testbed.Kernel61 && (resent || !orphaned):
		t.Errorf("6.1: journal says resent=%v orphan-answered=%v, want no resend and the orphan answered", resent, orphaned)
	}
	// The read of /dev/watchdog blocked at a reload: carried to the new
	// process (not refused, as before), which answers its interrupt.
	wr := regexp.MustCompile(`(?m)^wdread-reload: (\d+) -> (\d+)$`).FindStringSubmatch(stdout)
	wre := regexp.MustCompile(`(?m)^wdread-reload: (wdread: read .*|still .*)$`).FindStringSubmatch(stdout)
	if wr == nil || wr[1] == wr[2] || wre == nil || !strings.Contains(wre[1], "interrupted system call") ||
		!strings.Contains(j, "serving a blocked read carried over from the hand-over") {
		t.Errorf("reload with a blocked /dev/watchdog read: %v %v (want a new process, the read carried to it and ended by EINTR)", wr, wre)
	}
	sendInFlight(t, k, stdout)
	// Stop: gone, and the BMC timer not left running by the daemon.
	if c := out.Command("gone"); c == nil || strings.Count(string(c.Stdout), "No such file") != 2 || !strings.Contains(string(c.Stdout), "inactive") {
		t.Errorf("after systemctl stop: %q (want both nodes gone, unit inactive)", c.Stdout)
	}
	if st.PretimeoutsFired != 0 || st.TimeoutsFired != 0 {
		t.Errorf("BMC counted %d pretimeouts and %d timeouts", st.PretimeoutsFired, st.TimeoutsFired)
	}
	var hand []string
	for _, m := range rl {
		hand = append(hand, m[4]+" s")
	}
	t.Logf("MEASURED %s: reloads %s; kills served again %s; %d pats at the BMC; %v; %v; in flight: %v",
		k, strings.Join(hand, ", "), strings.Join(served, ", "), npats, first(hold), first(flood), first(inflight))
}

// killTimes are one kill's moments in restartScenario, by the guest's
// CLOCK_MONOTONIC in seconds: systemctl kill started and returned, systemd
// sent the SIGKILL, and a request was served again.
type killTimes struct {
	systemctl, returned, sigkill, served float64
	err                                  error
}

// parseKill reads the served, systemctl, returned and sigkill fields of a
// kill line; the SIGKILL must lie between systemctl's start and return.
func parseKill(f []string) (k killTimes) {
	var vs [4]float64
	for i, s := range f {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			k.err = fmt.Errorf("field %d: %q is not a time", i, s)
			return k
		}
		vs[i] = v
	}
	k.served, k.systemctl, k.returned, k.sigkill = vs[0], vs[1], vs[2], vs[3]
	if k.sigkill < k.systemctl || k.sigkill > k.returned {
		k.err = fmt.Errorf("the SIGKILL at %.2f is not within systemctl kill's run %.2f..%.2f", k.sigkill, k.systemctl, k.returned)
	}
	return k
}

// String gives the restart time from the SIGKILL and from the start of
// systemctl kill.
func (k killTimes) String() string {
	if k.err != nil {
		return k.err.Error()
	}
	return fmt.Sprintf("%.2f s after the SIGKILL (%.2f s after systemctl kill started)", k.served-k.sigkill, k.served-k.systemctl)
}

// The versions stamped into TestSystemdRestarts' two builds.
const (
	buildA = "9.0.0-test.a"
	buildB = "9.0.1-test.b"
)

// restartScenario is the guest side of TestSystemdRestarts; $1 is the
// number of reloads.
const restartScenario = `
R=$1
P=/usr/bin/ipmiprobe
up() { cut -d' ' -f1 /proc/uptime; }
since() { awk "BEGIN{printf \"%.2f\", $(up) - $1}"; }
mp() { systemctl show -p MainPID --value ipmi-cuse; }
dev() { stat -c %t:%T /dev/ipmi0; }
sum() { sha256sum "$1" 2>/dev/null | cut -c1-12; }
event() { ipmitool raw 0x04 0x02 0x41 0x04 0x01 0x30 0x01 0x57 0x57 0x50 >/dev/null 2>&1 || echo "platform event failed"; }
started() { n=0; until grep -q "$2" "$1" 2>/dev/null || [ $n -ge $3 ]; do sleep 0.1; n=$((n+1)); done; }
echo "dev $(dev)"
$P hold -for 900s -interval 100ms -wait 3s >/tmp/hold.out 2>/tmp/hold.err & hold=$!
$P msghandler events -wait $R -timeout 300s >/tmp/events.out 2>&1 & ev=$!
$P flood -clients 2 -depth 4 -duration $((R*4+8))s -drain 60s >/tmp/flood.out 2>/tmp/flood.err & fl=$!
watchdog -F -t 2 -T 20 /dev/watchdog & wd=$!
sleep 2
cp /usr/sbin/ipmi-cuse.a /tmp/ipmi-cuse.good
for i in $(seq 1 $R); do
	if [ $((i % 2)) = 1 ]; then cp /usr/sbin/ipmi-cuse.b /tmp/n; else cp /usr/sbin/ipmi-cuse.a /tmp/n; fi
	mv /tmp/n /usr/sbin/ipmi-cuse
	old=$(mp); t0=$(up)
	systemctl reload ipmi-cuse
	n=0; while [ "$(mp)" = "$old" ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done
	new=$(mp)
	echo "reload $i: $old -> $new in $(since $t0) s exe $(sum /proc/$new/exe) disk $(sum /usr/sbin/ipmi-cuse) dev $(dev) version $(/proc/$new/exe --version | cut -d' ' -f2)"
	event
	sleep 2
done
rollback() {
	old=$(mp)
	n0=$(journalctl -b -u ipmi-cuse --no-pager | grep -c 'upgrade failed')
	systemctl reload ipmi-cuse
	n=0; while [ "$(journalctl -b -u ipmi-cuse --no-pager | grep -c 'upgrade failed')" = "$n0" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done
	echo "rollback $1: $old -> $(mp) $(systemctl is-active ipmi-cuse) dev $(dev)"
}
printf '#!/bin/sh\nexit 3\n' >/tmp/n && chmod +x /tmp/n && mv /tmp/n /usr/sbin/ipmi-cuse
rollback exits
printf '#!/bin/sh\nexec sleep 600\n' >/tmp/n && chmod +x /tmp/n && mv /tmp/n /usr/sbin/ipmi-cuse
rollback never-ready
mv /tmp/ipmi-cuse.good /usr/sbin/ipmi-cuse
wait $fl; cat /tmp/flood.out; cat /tmp/flood.err
wait $ev; cat /tmp/events.out
kill $wd; wait $wd
# A read of /dev/watchdog blocked across an upgrade: the old process takes
# it back unanswered and the new one serves it (here: its interrupt).
rm -f /tmp/wdr.go
$P wdread -trigger /tmp/wdr.go >/tmp/wdr.out 2>&1 & wr=$!
started /tmp/wdr.out reading 300; sleep 0.5
old=$(mp)
systemctl reload ipmi-cuse
n=0; while [ "$(mp)" = "$old" ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done
echo "wdread-reload: $old -> $(mp)"
touch /tmp/wdr.go
n=0; while kill -0 $wr 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
if kill -0 $wr 2>/dev/null; then
	echo "wdread-reload: still blocked 10 s after being interrupted"; kill -KILL $wr
else
	echo "wdread-reload: $(grep 'read ended\|read [0-9]' /tmp/wdr.out | tr 'A-Z' 'a-z')"
fi
# The node stays across a kill, so ipmitool's open and request wait in the
# kernel until the restarted daemon serves them: no polling of systemctl,
# whose every call costs the guest's one vCPU a tenth of a second that the
# restarting daemon then does not get.
# The kill's moment is when systemd sent the SIGKILL (its journal line, by
# CLOCK_MONOTONIC, which /proc/uptime's CLOCK_BOOTTIME equals in a guest
# that never suspends): starting systemctl itself takes the busy guest up
# to a second, while the old process still serves. The clocks are read
# with the shell's read, which forks nothing.
for i in 1 2 3; do
	old=$(mp); read -r t0 _ </proc/uptime
	systemctl kill -s KILL ipmi-cuse
	read -r tk _ </proc/uptime
	n=0; until timeout 60 ipmitool raw 6 1 >/dev/null 2>&1; do sleep 0.05; n=$((n+1)); [ $n -gt 100 ] && break; done
	read -r t1 _ </proc/uptime
	ks=$(journalctl -b -u ipmi-cuse -o short-monotonic --no-pager | sed -n "s/^\[ *\([0-9.]*\)\] .*Sent signal SIGKILL to main process $old .*/\1/p" | tail -1)
	echo "kill $i: $old -> $(mp) served at $t1 systemctl at $t0 returned at $tk sigkill at ${ks:-none} dev $(dev)"
	sleep 2
done
rm -f /tmp/wdread.go
$P wdread -trigger /tmp/wdread.go >/tmp/wdread.out 2>&1 & wr=$!
sleep 1
old=$(mp)
systemctl kill -s KILL ipmi-cuse
n=0; until [ "$(mp)" != "$old" ] && [ "$(mp)" != 0 ] && ipmitool raw 6 1 >/dev/null 2>&1; do sleep 0.05; n=$((n+1)); [ $n -gt 1200 ] && break; done
touch /tmp/wdread.go
sleep 4
if kill -0 $wr 2>/dev/null; then
	echo "inflight: still blocked 4 s after being interrupted"
	kill -KILL $wr
else
	echo "inflight: $(grep 'read ended\|read [0-9]' /tmp/wdread.out | tr 'A-Z' 'a-z')"
fi
kill $hold
n=0; while kill -0 $hold 2>/dev/null && [ $n -lt 150 ]; do sleep 0.1; n=$((n+1)); done
if kill -0 $hold 2>/dev/null; then echo "info: hold still blocked 15 s after SIGTERM"; kill -KILL $hold; fi
wait $hold; cat /tmp/hold.out /tmp/hold.err
# An IPMI SEND in flight: with the BMC slowed down the idle daemon runs the
# transaction before it answers SEND, so SEND blocks for the BMC's delay.
# The host sets the delay when it sees the line on ttyS1.
bmc() { echo "ipmi-cuse-test: bmc delay $1" >/dev/ttyS1; sleep 0.5; }
# Under TCG every KCS transaction takes longer than --inline-max's default
# 2 ms, so an idle daemon never runs a request before it answers SEND, as
# it does on hardware: restart it (no client holds a file now) with a
# bound that lets it, so a SEND to the slowed BMC stays in flight. Not
# earlier: on 6.1 a kill that catches a SEND in flight leaves its caller
# blocked until it gets a signal (see the README), which the hold client
# above would not.
sed -i 's/^IPMI_CUSE_ARGS="/IPMI_CUSE_ARGS="--inline-max=30s /' /etc/default/ipmi-cuse
systemctl restart ipmi-cuse
# 1. An upgrade (SIGHUP) while SEND is in flight; the BMC is fast again as
# soon as SEND returns (the new process's Get Device ID must not wait).
bmc 3000
old=$(mp)
rm -f /tmp/send.go; $P sendinflight -trigger /tmp/send.go >/tmp/si1.out 2>&1 & si=$!
started /tmp/si1.out sending 300; sleep 0.2
echo "send-reload: sighup at $(up)"
kill -HUP $old
started /tmp/si1.out 'send start' 200; bmc 0
n=0; while [ "$(mp)" = "$old" ] && [ $n -lt 1200 ]; do sleep 0.05; n=$((n+1)); done
echo "send-reload: $old -> $(mp)"
wait $si; sed 's/^/send-reload: /' /tmp/si1.out
# 2. A kill (SIGKILL to the main process, as systemctl kill sends it, but
# at once) while SEND is in flight; the BMC is fast again at once.
bmc 6000
old=$(mp)
rm -f /tmp/send.go; $P sendinflight -trigger /tmp/send.go >/tmp/si2.out 2>&1 & si=$!
started /tmp/si2.out sending 300; sleep 0.2
echo "send-kill: kill at $(up)"
kill -KILL $old
bmc 0
n=0; until [ "$(mp)" != "$old" ] && [ "$(mp)" != 0 ]; do sleep 0.05; n=$((n+1)); [ $n -gt 1200 ] && break; done
echo "send-kill: $old -> $(mp)"
# On 6.9+ the resent SEND is answered; on 6.1 it stays blocked until
# interrupted: interrupt it if it has not returned within 15 s.
started /tmp/si2.out 'send start' 150; touch /tmp/send.go
wait $si; sed 's/^/send-kill: /' /tmp/si2.out
`

// sendInFlight checks the IPMI SEND ioctls in flight at an upgrade and at
// a kill (restartScenario's send-reload and send-kill): the SEND started
// before the SIGHUP or the kill and returned after it, and then:
//   - upgrade, any kernel: answered once (the old process finishes what it
//     read before it hands over, and the reply travels in the state);
//   - kill, 6.12: the kernel sends the SEND again to the new process
//     (FUSE_NOTIFY_RESEND), which answers it, and the reply comes once;
//   - kill, 6.1: the SEND is lost with the dead process, ends with EINTR
//     when interrupted, and no reply ever comes (README, Crash survival).
func sendInFlight(t *testing.T, k testbed.Kernel, stdout string) {
	t.Helper()
	for _, c := range []struct{ name, at string }{{"send-reload", "sighup"}, {"send-kill", "kill"}} {
		at := regexp.MustCompile(`(?m)^` + c.name + `: ` + c.at + ` at (\S+)$`).FindStringSubmatch(stdout)
		send := regexp.MustCompile(`(?m)^` + c.name + `: sendinflight: send start=(\S+) end=(\S+) errno=(\S+)$`).FindStringSubmatch(stdout)
		pids := regexp.MustCompile(`(?m)^` + c.name + `: (\d+) -> (\d+)$`).FindStringSubmatch(stdout)
		if at == nil || send == nil || pids == nil {
			t.Errorf("%s: no report (at %v, send %v, pids %v)", c.name, at, send, pids)
			continue
		}
		tAt, _ := strconv.ParseFloat(at[1], 64)
		start, _ := strconv.ParseFloat(send[1], 64)
		end, _ := strconv.ParseFloat(send[2], 64)
		if pids[1] == pids[2] {
			t.Errorf("%s: the main process did not change (%s)", c.name, pids[0])
		}
		if !(start < tAt && tAt < end) {
			t.Errorf("%s: SEND ran %.2f..%.2f, the %s came at %.2f: not in flight then (the test did not test)", c.name, start, end, c.at, tAt)
		}
		reply := regexp.MustCompile(`(?m)^` + c.name + `: sendinflight: reply (.*)$`).FindStringSubmatch(stdout)
		second := regexp.MustCompile(`(?m)^` + c.name + `: sendinflight: second (.*)$`).FindStringSubmatch(stdout)
		once := send[3] == "ok" && reply != nil && strings.HasPrefix(reply[1], "msgid=4242 cc=0x00") && second != nil && second[1] == "none"
		lost := send[3] == "EINTR" && reply != nil && strings.HasPrefix(reply[1], "none; then ETIMEDOUT")
		switch {
		case (c.name == "send-reload" || k == testbed.Kernel612) && !once:
			t.Errorf("%s on %s: send %s, reply %v, second %v; want the SEND answered, its reply once", c.name, k, send[3], reply, second)
		case c.name == "send-kill" && k == testbed.Kernel61 && !lost:
			t.Errorf("%s on 6.1: send %s, reply %v; want EINTR when interrupted and no reply", c.name, send[3], reply)
		}
		t.Logf("MEASURED %s %s: SEND %.2f s before the %s, returned %.2f s after it (%s); reply %v", k, c.name, tAt-start, c.at, end-tAt, send[3], first(reply))
	}
}

// first is a regexp match's whole text, or "(none)".
func first(m []string) string {
	if len(m) == 0 {
		return "(none)"
	}
	return m[0]
}

func TestParseKill(t *testing.T) {
	for _, c := range []struct {
		name   string
		fields []string
		want   string
	}{
		{"ordered", []string{"12.50", "10.00", "10.80", "10.70"}, "1.80 s after the SIGKILL (2.50 s after systemctl kill started)"},
		{"sigkill before systemctl", []string{"12.50", "10.00", "10.80", "9.90"}, "the SIGKILL at 9.90 is not within systemctl kill's run 10.00..10.80"},
		{"sigkill after its return", []string{"12.50", "10.00", "10.80", "10.81"}, "the SIGKILL at 10.81 is not within systemctl kill's run 10.00..10.80"},
		{"no journal line", []string{"12.50", "10.00", "10.80", "none"}, `field 3: "none" is not a time`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := parseKill(c.fields).String(); got != c.want {
				t.Errorf("parseKill(%q) = %q, want %q", c.fields, got, c.want)
			}
		})
	}
}
