package integration

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// TestUpgradeSIGHUP is issue 9's upgrade acceptance in the busybox guest,
// against the project's simulated BMC (so the BMC's own watchdog counters
// are ground truth, and /dev/port is a descriptor to hand over): ipmi-cuse
// runs with its built-in watchdog patter while a pipelined flood, a
// sequential ipmitool loop and an events listener (registered before the
// first upgrade) use /dev/ipmi0. The guest sends SIGHUP three times
// (each: the binary on disk takes over), then once onto a binary that
// exits at once and once onto one that never says it is ready (both
// rolled back), then once more onto the real binary. After every
// successful upgrade a Platform Event is injected; the listener must get
// each one on its old file. Asserted: same device number throughout,
// every request answered exactly once, every event received, both
// failures logged with their reason, no pretimeout or timeout at the BMC,
// and a clean stop at the end.
func TestUpgradeSIGHUP(t *testing.T) {
	env := testEnv(t)
	daemonPath, why := daemon(t)
	if daemonPath == "" {
		t.Skip(why)
	}
	sim, err := testbed.StartSimBMC(bmcsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	gaps := watchPats(sim.BMC)

	const upgradeTimeout = 5
	args := []string{"--bmc=kcs", "--kcs-port=0xca2", "--port-io=devport", "--log-level=info",
		"--watchdog", "--watchdog-timeout=30s", "--watchdog-pretimeout=10s", "--watchdog-preaction=msg-int",
		fmt.Sprintf("--upgrade-timeout=%ds", upgradeTimeout)}
	dir := t.TempDir()
	s := &testbed.Session{
		Env: env, Daemon: daemonPath, Dir: dir, Timeout: 6 * time.Minute, GuestBins: probeBins(t),
		Commands: []testbed.Command{{Name: "upgrade", Timeout: 300, Args: []string{"sh", "-c", upgradeScript}},
			// What the privilege drop means for --port-io ioport: does an
			// I/O privilege level survive fork+exec into a process with
			// no capabilities? (KCS status register of the BMC above.)
			{Name: "iopl", Timeout: 60, Args: []string{probeGuestPath, "iopl-exec", "parent", "0xca3"}}},
		Script: testbed.ScriptOptions{Mode: testbed.ShimMode, DaemonArgs: args},
	}
	s.BMC.Extern = sim.Addr
	out, res, err := s.Run(context.Background())
	if err == nil && out.Setup != "ok" {
		err = fmt.Errorf("guest setup failed: %s", out.Setup)
	}
	if err != nil {
		if res != nil {
			t.Logf("guest console:\n%s\nguest output:\n%s", res.Console, res.Guest)
		}
		t.Fatal(err)
	}
	log := string(out.Files[testbed.GuestDaemonLog])
	c := out.Command("upgrade")
	if c == nil {
		t.Fatalf("no upgrade output; daemon log:\n%s", log)
	}
	stdout := string(c.Stdout)
	t.Logf("guest:\n%s", stdout)
	defer func() {
		if c.Exit != 0 || t.Failed() {
			t.Logf("exit %d, stderr:\n%s\ndaemon log:\n%s", c.Exit, c.Stderr, log)
		}
	}()
	gapMax, pats, st := gaps.stop()

	// Same device, a new process each time.
	devs := regexp.MustCompile(`(?m)^upgrade \d+: pid (\d+) -> (\d+) dev (\S+)$`).FindAllStringSubmatch(stdout, -1)
	dev0 := regexp.MustCompile(`(?m)^dev (\S+)$`).FindStringSubmatch(stdout)
	if len(devs) != 4 || dev0 == nil {
		t.Fatalf("want 4 upgrades and the first device number; got %d: %q", len(devs), stdout)
	}
	for _, m := range devs {
		if m[1] == m[2] || m[2] == "" || m[3] != dev0[1] {
			t.Errorf("upgrade %q: want a new pid and device %s", m[0], dev0[1])
		}
	}
	// Exactly once.
	flood := regexp.MustCompile(`flood clients=\d+ depth=\d+ sent=(\d+) answered=(\d+) lost=(\d+) misrouted=(\d+) ebusy=\d+ send_errors=(\d+) recv_errors=(\d+)`).FindStringSubmatch(stdout)
	if flood == nil {
		t.Fatalf("no flood summary in %q", stdout)
	}
	if flood[1] != flood[2] || flood[3] != "0" || flood[4] != "0" || flood[5] != "0" || flood[6] != "0" || flood[1] == "0" {
		t.Errorf("flood: %s (want sent = answered, nothing lost, misrouted or failed)", flood[0])
	}
	seq := regexp.MustCompile(`seq n=(\d+) ok=(\d+)`).FindStringSubmatch(stdout)
	if seq == nil || seq[1] != seq[2] || seq[1] == "0" {
		t.Errorf("sequential ipmitool loop: %v (want every run to succeed)", seq)
	}
	if !strings.Contains(stdout, "events: 4 received") {
		t.Errorf("events listener did not get the 4 events injected after the upgrades")
	}
	// Rollbacks, with their reasons in the log.
	for _, want := range []string{"exited before it was ready", "did not become ready in time"} {
		if !strings.Contains(log, "upgrade failed; serving on") || !strings.Contains(log, want) {
			t.Errorf("daemon log does not show a rolled-back upgrade with %q", want)
		}
	}
	if !strings.Contains(stdout, "stopped rc=0") || !strings.Contains(log, "BMC watchdog stopped") {
		t.Errorf("the last process did not stop cleanly with the watchdog stopped")
	}
	if st.PretimeoutsFired != 0 || st.TimeoutsFired != 0 {
		t.Errorf("BMC counted %d pretimeouts and %d timeouts", st.PretimeoutsFired, st.TimeoutsFired)
	}
	// The pretimeout fires 20 s after a pat: the gap must stay below.
	if gapMax >= 20*time.Second {
		t.Errorf("longest gap between pats at the BMC %v, not within the 20 s before the pretimeout", gapMax)
	}
	// The kernel's answer, which the README's upgrade section relies on:
	// the level is inherited from the forking thread only.
	if c := out.Command("iopl"); c == nil {
		t.Error("no iopl-exec output")
	} else {
		io := string(c.Stdout) + string(c.Stderr)
		t.Logf("iopl across fork+exec:\n%s", io)
		with, without, _ := strings.Cut(io, "forked from a thread without iopl")
		if !strings.Contains(with, "CapEff=0000000000000000") || !strings.Contains(with, "without calling iopl") ||
			!strings.Contains(with, "iopl(3) = <nil>") || strings.Contains(without, "without calling iopl") {
			t.Errorf("iopl across fork+exec is not what the README says (inherited from the forking thread only)")
		}
	}
	var paused []string
	for _, m := range regexp.MustCompile(`msg="upgrade: the new process serves" pid=\d+ freeze=(\S+) paused=(\S+)`).FindAllStringSubmatch(log, -1) {
		paused = append(paused, "freeze "+m[1]+" paused "+m[2])
	}
	t.Logf("MEASURED: %d pats at the BMC, longest gap %v; hand-overs: %s; %s; %s", pats, gapMax.Round(time.Millisecond),
		strings.Join(paused, ", "), flood[0], seq[0])
}

// upgradeScript is the guest side of TestUpgradeSIGHUP.
const upgradeScript = `
P=/bin/ipmiprobe
L=/tmp/ipmi-cuse.log
pid() { pidof ipmi-cuse | tr ' ' '\n' | head -1; }
echo "dev $(stat -c %t:%T /dev/ipmi0)"
$P msghandler events -wait 4 -timeout 150s >/tmp/events.out 2>&1 &
ev=$!
$P flood -clients 4 -depth 8 -duration 45s -drain 60s >/tmp/flood.out 2>/tmp/flood.err &
fl=$!
( n=0; ok=0; end=$(( $(date +%s) + 45 )); while [ $(date +%s) -lt $end ]; do n=$((n+1)); ipmitool mc info >/dev/null 2>&1 && ok=$((ok+1)); done; echo "seq n=$n ok=$ok" ) >/tmp/seq.out 2>&1 &
sq=$!
sleep 3
up=0
upgrade() {
	old=$(pid)
	kill -HUP $old
	i=0; while kill -0 $old 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
	up=$((up+1))
	echo "upgrade $up: pid $old -> $(pid) dev $(stat -c %t:%T /dev/ipmi0)"
	ipmitool raw 0x04 0x02 0x41 0x04 0x01 0x30 0x01 0x57 0x57 0x50 >/dev/null || echo "platform event failed"
	sleep 3
}
rollback() {
	n0=$(grep -c 'upgrade failed' $L)
	kill -HUP $(pid)
	i=0; while [ "$(grep -c 'upgrade failed' $L)" = "$n0" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
	echo "rollback $1: pid $(pid) dev $(stat -c %t:%T /dev/ipmi0)"
}
upgrade; upgrade; upgrade
cp /bin/ipmi-cuse /tmp/good
printf '#!/bin/sh\nexit 3\n' >/tmp/bad && chmod +x /tmp/bad && mv /tmp/bad /bin/ipmi-cuse
rollback exits
printf '#!/bin/sh\nexec sleep 600\n' >/tmp/bad && chmod +x /tmp/bad && mv /tmp/bad /bin/ipmi-cuse
rollback never-ready
mv /tmp/good /bin/ipmi-cuse
sleep 2
upgrade
wait $fl; cat /tmp/flood.out; cat /tmp/flood.err
wait $sq; cat /tmp/seq.out
wait $ev; cat /tmp/events.out
p=$(pid); kill $p; i=0; while kill -0 $p 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill -0 $p 2>/dev/null && echo "still running" || echo "stopped rc=0"
`

// patWatch samples the simulated BMC's watchdog counters to find the
// longest gap between two accepted pats (BMC time).
type patWatch struct {
	mu     sync.Mutex
	last   time.Time
	maxGap time.Duration
	pats   int
	cancel context.CancelFunc
	done   chan bmcsim.Stats
}

func watchPats(b *bmcsim.BMC) *patWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &patWatch{cancel: cancel, done: make(chan bmcsim.Stats, 1)}
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				w.done <- b.Stats()
				return
			case <-tick.C:
			}
			st := b.Stats()
			w.mu.Lock()
			if !st.LastPat.IsZero() && !st.LastPat.Equal(w.last) {
				if !w.last.IsZero() {
					w.maxGap = max(w.maxGap, st.LastPat.Sub(w.last))
				}
				w.last = st.LastPat
				w.pats++
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// stop ends the sampling and returns the longest gap, the pats seen and
// the BMC's final counters.
func (w *patWatch) stop() (time.Duration, int, bmcsim.Stats) {
	w.cancel()
	st := <-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxGap, w.pats, st
}
