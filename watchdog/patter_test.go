package watchdog

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// runPatter starts Run with a short interval and returns a stop function
// that cancels it and returns Run's error.
func runPatter(t *testing.T, w *Watchdog) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
			return nil
		}
	}
}

func countCmd(cmds []byte, c byte) int { return bytes.Count(cmds, []byte{c}) }

func TestPatterArmsPatsStops(t *testing.T) {
	w, e, logs := newTest(t, func(c *Config) { c.PatInterval = 2 * time.Millisecond })
	stop := runPatter(t, w)
	eventually(t, "5 pats", func() bool { return countCmd(e.cmds(), CmdResetWatchdog) >= 5 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	reqs := e.all()
	if reqs[0].msg[1] != CmdSetWatchdog || !bytes.Equal(reqs[0].msg[2:], []byte{0x44, 0x31, 2, 0, 100, 0}) {
		t.Fatalf("first request % x, want Set 44 31 02 00 64 00", reqs[0].msg)
	}
	for i, r := range reqs {
		if r.lane != sched.LanePriority || r.owner != 7 || r.deadline.IsZero() {
			t.Errorf("request %d % x: lane %v owner %d deadline %v", i, r.msg, r.lane, r.owner, r.deadline)
		}
		if i > 0 && i < len(reqs)-1 && r.msg[1] != CmdResetWatchdog {
			t.Errorf("request %d is % x, want only Resets between arm and stop", i, r.msg)
		}
	}
	last := reqs[len(reqs)-1]
	if last.msg[1] != CmdSetWatchdog || !bytes.Equal(last.msg[2:], []byte{0x04, 0, 0, 0, 100, 0}) {
		t.Fatalf("last request % x, want the stopping Set 04 00 00 00 64 00", last.msg)
	}
	if st := w.Stats(); st.Running || st.Pats < 5 || st.Failures != 0 {
		t.Fatalf("stats %+v", st)
	}
	if len(logs.find("arming")) != 1 || len(logs.find("stopped")) != 1 {
		t.Fatal("missing arm/stop log lines")
	}
}

func TestPatterNoWayOut(t *testing.T) {
	w, e, logs := newTest(t, func(c *Config) { c.PatInterval = 2 * time.Millisecond; c.NoWayOut = true })
	stop := runPatter(t, w)
	eventually(t, "a pat", func() bool { return countCmd(e.cmds(), CmdResetWatchdog) >= 2 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if sets := countCmd(e.cmds(), CmdSetWatchdog); sets != 1 {
		t.Fatalf("%d Sets, want only the arming one (nowayout never stops)", sets)
	}
	if len(logs.find("nowayout")) != 1 || !w.Stats().Running {
		t.Fatal("nowayout: want a log line and the timer left running")
	}
}

func TestPatterRearmsOn0x80(t *testing.T) {
	w, e, logs := newTest(t, func(c *Config) { c.PatInterval = 2 * time.Millisecond })
	e.resetCCs = []byte{0, 0, 0x80}
	stop := runPatter(t, w)
	eventually(t, "pats after the re-arm", func() bool { return countCmd(e.cmds(), CmdResetWatchdog) >= 5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	cmds := e.cmds()
	// arm: Set Reset; pat: Reset; pat: Reset(0x80) Set Reset.
	if !bytes.HasPrefix(cmds, []byte{0x24, 0x22, 0x22, 0x22, 0x24, 0x22}) {
		t.Fatalf("commands % x", cmds)
	}
	if st := w.Stats(); st.Rearms != 1 || st.Failures != 0 {
		t.Fatalf("stats %+v, want 1 re-arm, no failures", st)
	}
	if len(logs.find("0x80")) != 1 {
		t.Fatal("want one log line about the 0x80 re-arm")
	}
}

func TestPatterRetriesFailedArm(t *testing.T) {
	w, e, logs := newTest(t, func(c *Config) { c.PatInterval = 2 * time.Millisecond })
	e.reqErr = sched.ErrBMCUnresponsive
	stop := runPatter(t, w)
	eventually(t, "failures", func() bool { return w.Stats().Failures >= 3 })
	e.mu.Lock()
	e.reqErr = nil
	n := len(e.reqs)
	e.mu.Unlock()
	eventually(t, "pats after recovery", func() bool { return w.Stats().Pats >= 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	after := e.all()[n:]
	if after[0].msg[1] != CmdSetWatchdog || after[1].msg[1] != CmdResetWatchdog {
		t.Fatalf("after a failed arm the next heartbeat sent % x, % x; want Set then Reset", after[0].msg, after[1].msg)
	}
	if got := len(logs.find("failed; retrying")); got != 1 {
		t.Fatalf("%d failure log lines, want 1 per streak", got)
	}
	if got := len(logs.find("succeeds again")); got != 1 {
		t.Fatalf("%d recovery log lines, want 1", got)
	}
}

func TestPatterUnhealthySkipsPats(t *testing.T) {
	var healthy atomic.Bool
	var asked atomic.Int32
	w, e, logs := newTest(t, func(c *Config) {
		c.PatInterval = 2 * time.Millisecond
		c.Healthy = func() bool { asked.Add(1); return healthy.Load() }
	})
	stop := runPatter(t, w)
	eventually(t, "health checks", func() bool { return asked.Load() >= 5 })
	if got := e.cmds(); !bytes.Equal(got, []byte{CmdSetWatchdog, CmdResetWatchdog}) {
		t.Fatalf("sent % x while unhealthy, want only the arming Set and Reset", got)
	}
	healthy.Store(true)
	eventually(t, "pats once healthy", func() bool { return countCmd(e.cmds(), CmdResetWatchdog) >= 3 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if len(logs.find("unhealthy")) != 1 || len(logs.find("healthy again")) != 1 {
		t.Fatal("want one unhealthy and one recovery log line")
	}
}

func TestPatterAfterPretimeoutSendsSet(t *testing.T) {
	w, e, _ := newTest(t, func(c *Config) { c.PatInterval = 2 * time.Millisecond })
	var pretimeoutAt atomic.Int32
	pretimeoutAt.Store(-1)
	e.onSubmit = func(r *sched.Request) {
		// Simulate the attention handler calling Pretimeout from the
		// engine goroutine, inside a request's completion path.
		if r.Msg[1] == CmdResetWatchdog && pretimeoutAt.Load() < 0 {
			e.mu.Lock()
			n := len(e.reqs)
			e.mu.Unlock()
			if n >= 4 {
				pretimeoutAt.Store(int32(n))
				w.Pretimeout()
			}
		}
	}
	stop := runPatter(t, w)
	eventually(t, "pats after the pretimeout", func() bool {
		return pretimeoutAt.Load() > 0 && len(e.cmds()) > int(pretimeoutAt.Load())+2
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	cmds := e.cmds()
	i := int(pretimeoutAt.Load())
	if !bytes.Equal(cmds[i:i+2], []byte{CmdSetWatchdog, CmdResetWatchdog}) {
		t.Fatalf("after the pretimeout sent % x, want Set (re-arm) then bare Resets", cmds[i:])
	}
}

func TestPatterStopFails(t *testing.T) {
	w, e, _ := newTest(t, func(c *Config) { c.PatInterval = 2 * time.Millisecond })
	stop := runPatter(t, w)
	eventually(t, "a pat", func() bool { return w.Stats().Pats >= 2 })
	e.mu.Lock()
	e.submitErr = sched.ErrClosed
	e.mu.Unlock()
	if err := stop(); !errors.Is(err, sched.ErrClosed) {
		t.Fatalf("Run = %v, want the stop's ErrClosed", err)
	}
}

func TestPretimeoutExec(t *testing.T) {
	t.Run("runs and logs output", func(t *testing.T) {
		w, _, logs := newTest(t, func(c *Config) {
			c.PretimeoutExec = `echo "n=$IPMI_CUSE_PRETIMEOUTS since=$IPMI_CUSE_SINCE_LAST_PAT_MS"`
		})
		w.Pretimeout()
		// The counters are updated before the line is logged: wait for the line.
		eventually(t, "the command's log line", func() bool { return len(logs.find("pretimeout command ran")) > 0 })
		recs := logs.find("pretimeout command ran")
		if len(recs) != 1 || recs[0].attrs["output"] != "n=1 since=-1\n" {
			t.Fatalf("log %+v", recs)
		}
	})
	t.Run("failure", func(t *testing.T) {
		w, _, logs := newTest(t, func(c *Config) { c.PretimeoutExec = "echo oops >&2; exit 3" })
		w.Pretimeout()
		eventually(t, "the command's log line", func() bool { return len(logs.find("pretimeout command failed")) > 0 })
		recs := logs.find("pretimeout command failed")
		if len(recs) != 1 || !strings.Contains(recs[0].attrs["output"], "oops") || w.Stats().ExecFailures != 1 {
			t.Fatalf("log %+v stats %+v", recs, w.Stats())
		}
	})
	t.Run("bounded and one at a time", func(t *testing.T) {
		w, _, logs := newTest(t, func(c *Config) {
			c.PretimeoutExec = "sleep 30 & sleep 30"
			c.ExecTimeout = 200 * time.Millisecond
		})
		start := time.Now()
		w.Pretimeout()
		w.Pretimeout()
		if w.Stats().ExecSkipped != 1 {
			t.Fatalf("stats %+v, want the second pretimeout skipped", w.Stats())
		}
		eventually(t, "the kill's log line", func() bool { return len(logs.find("pretimeout command failed")) > 0 })
		if time.Since(start) > 9*time.Second {
			t.Fatal("the command was not killed at its timeout")
		}
		if recs := logs.find("pretimeout command failed"); len(recs) != 1 || !strings.Contains(recs[0].attrs["err"], "killed after") {
			t.Fatalf("log %+v", recs)
		}
	})
	t.Run("Close kills it", func(t *testing.T) {
		w, _, _ := newTest(t, func(c *Config) { c.PretimeoutExec = "sleep 30" })
		w.Pretimeout()
		eventually(t, "the command to start", func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.execBusy
		})
		w.Close()
		if st := w.Stats(); st.ExecRuns != 1 || st.ExecFailures != 1 {
			t.Fatalf("stats %+v after Close", st)
		}
		w.Pretimeout() // after Close: no new command
		if st := w.Stats(); st.ExecRuns != 1 {
			t.Fatalf("a command ran after Close: %+v", st)
		}
	})
}
