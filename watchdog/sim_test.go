package watchdog_test

// The built-in patter against the simulated BMC, through the real KCS host
// state machine and the engine: bmcsim ← kcsbmc ← kcs.Host ← sched.Engine ←
// watchdog. The BMC clock runs simScale times faster than the wall clock,
// so a 40 s BMC countdown passes in 2 s.

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/kcsbmc"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

const (
	simScale      = 20
	simTimeout    = 40 * time.Second // BMC time: 2 s of wall-clock time
	simPretimeout = 20 * time.Second // fires 1 s (wall) after the last pat
	simPatEvery   = 50 * time.Millisecond
)

type sim struct {
	bmc *bmcsim.BMC
	eng *sched.Engine
	wd  *watchdog.Watchdog
}

// newSim wires the stack. The engine's attention hook does what the
// daemon's does for the watchdog: Get Message Flags, Clear Message Flags,
// and Pretimeout on flag 0x08.
func newSim(t *testing.T, healthy func() bool) *sim {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	bmc := bmcsim.New(bmcsim.Config{Logger: quiet, TimeScale: simScale})
	host := kcs.New(kcsbmc.New(bmc), kcs.Config{Logger: quiet})
	var wdp atomic.Pointer[watchdog.Watchdog]
	eng := sched.New(host, sched.Config{
		Logger:            quiet,
		AttentionInterval: 10 * time.Millisecond,
		Attention: func() bool {
			a, err := host.Attention()
			return err == nil && a
		},
		OnAttention: func(tx sched.TxFunc) bool {
			resp, err := tx([]byte{0x06 << 2, 0x31}, make([]byte, 0, 8), time.Now().Add(time.Second))
			if err != nil || len(resp) < 4 || resp[2] != 0 {
				return false
			}
			flags := resp[3]
			if flags&0x0B != 0 {
				if _, err := tx([]byte{0x06 << 2, 0x30, flags & 0x0B}, make([]byte, 0, 8), time.Now().Add(time.Second)); err != nil {
					return false
				}
			}
			if flags&0x08 != 0 {
				if w := wdp.Load(); w != nil {
					w.Pretimeout()
				}
			}
			return false
		},
	})
	t.Cleanup(func() { eng.Close() })
	wd, err := watchdog.New(watchdog.Config{
		Submit:      eng.Submit,
		Timeout:     simTimeout,
		Pretimeout:  simPretimeout,
		Action:      watchdog.ActionReset,
		PreAction:   watchdog.PreMsgInt,
		PatInterval: simPatEvery,
		Healthy:     healthy,
		Logger:      quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	wdp.Store(wd)
	t.Cleanup(func() { wd.Close() })
	return &sim{bmc: bmc, eng: eng, wd: wd}
}

// do runs one request synchronously on the priority lane.
func (s *sim) do(t *testing.T, msg ...byte) []byte {
	t.Helper()
	ch := make(chan *sched.Request, 1)
	r := &sched.Request{Owner: 99, Lane: sched.LanePriority, Deadline: time.Now().Add(5 * time.Second),
		Msg: msg, Resp: make([]byte, 0, 32), Done: func(r *sched.Request) { ch <- r }}
	if err := s.eng.Submit(r); err != nil {
		t.Fatal(err)
	}
	r = <-ch
	if r.Err != nil || len(r.Resp) < 3 || r.Resp[2] != 0 {
		t.Fatalf("request % x: resp % x err %v", msg, r.Resp, r.Err)
	}
	return r.Resp
}

func (s *sim) timer(t *testing.T) watchdog.TimerState {
	t.Helper()
	ts, err := watchdog.DecodeGetResponse(s.do(t, 0x06<<2, watchdog.CmdGetWatchdog))
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func start(t *testing.T, w *watchdog.Watchdog) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSimPatterKeepsBMCWatchdogArmed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds of wall-clock time")
	}
	s := newSim(t, nil)
	stop := start(t, s.wd)
	waitFor(t, "the first pat", func() bool { return s.bmc.Stats().WatchdogResets > 0 })
	ts := s.timer(t)
	if !ts.Running || ts.Use != 4 || ts.Action != watchdog.ActionReset || ts.PreAction != watchdog.PreMsgInt ||
		ts.Pretimeout != simPretimeout || ts.Initial != simTimeout {
		t.Fatalf("BMC timer after arming: %+v", ts)
	}

	// Longer than the BMC countdown (in BMC time), half of it after a BMC
	// reset that makes it forget the watchdog: the next pat gets 0x80 and
	// re-arms.
	time.Sleep(simTimeout / simScale * 3 / 4)
	s.do(t, 0x06<<2, 0x02) // Cold Reset
	waitFor(t, "the re-arm", func() bool { return s.wd.Stats().Rearms > 0 })
	time.Sleep(simTimeout / simScale * 3 / 4)

	st := s.bmc.Stats()
	if st.PretimeoutsFired != 0 || st.TimeoutsFired != 0 || s.wd.Stats().Pretimeouts != 0 {
		t.Fatalf("the BMC watchdog fired while patted: bmc %+v, watchdog %+v", st, s.wd.Stats())
	}
	if st.WatchdogResetsEarly == 0 {
		t.Fatalf("no pat was refused with 0x80 after the BMC reset: %+v", st)
	}
	if !s.timer(t).Running {
		t.Fatal("BMC timer not running after the re-arm")
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ts := s.timer(t); ts.Running {
		t.Fatalf("BMC timer still running after a clean stop: %+v", ts)
	}
	if st := s.wd.Stats(); st.Failures != 0 || st.Running {
		t.Fatalf("watchdog stats %+v", st)
	}
}

func TestSimPretimeoutWhenNotPatted(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds of wall-clock time")
	}
	// The control: the same stack with the patter held back fires the
	// pretimeout, which reaches Pretimeout through SMS_ATN; once patting
	// resumes, the re-sent Set restarts the countdown before expiry.
	var healthy atomic.Bool
	s := newSim(t, healthy.Load)
	stop := start(t, s.wd)
	waitFor(t, "the pretimeout to reach the watchdog", func() bool { return s.wd.Stats().Pretimeouts > 0 })
	sets := s.bmc.Stats().WatchdogSets
	healthy.Store(true)
	waitFor(t, "the Set after the pretimeout", func() bool { return s.bmc.Stats().WatchdogSets > sets })
	time.Sleep(simTimeout / simScale)
	if st := s.bmc.Stats(); st.PretimeoutsFired != 1 || st.TimeoutsFired != 0 {
		t.Fatalf("bmc stats %+v, want one pretimeout and no expiry", st)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestSimNoWayOutLeavesTimerRunning(t *testing.T) {
	s := newSim(t, nil)
	w, err := watchdog.New(watchdog.Config{Submit: s.eng.Submit, Timeout: simTimeout, Action: watchdog.ActionNone,
		PatInterval: simPatEvery, NoWayOut: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, w)
	waitFor(t, "the first pat", func() bool { return s.bmc.Stats().WatchdogResets > 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if ts := s.timer(t); !ts.Running {
		t.Fatalf("nowayout: BMC timer stopped: %+v", ts)
	}
}
