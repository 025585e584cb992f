package sched_test

// The seed scenario (the-problem.md): a BMC that becomes slow, then silent,
// while applications have a large backlog queued and a watchdog daemon pats
// the BMC watchdog. In process, with the real KCS host state machine
// (kcs.Host) talking to the simulated BMC behind its KCS registers
// (kcsbmc over bmcsim), and the engine in between.
//
// With the priority lane the pretimeout never fires and every pat made
// while the BMC answers succeeds promptly. The same scenario with the
// engine's SingleFIFO test knob (one queue, no priority, no round-robin)
// fires the pretimeout: the test proves the scenario can fail.

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/kcsbmc"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// Scenario timeline and parameters (wall-clock time; the BMC runs in real
// time).
const (
	scSlowLatency = 150 * time.Millisecond // BMC processing time per message while slow
	scWaitTimeout = 400 * time.Millisecond // kcs: one IBF/OBF wait
	scTxTimeout   = 600 * time.Millisecond // kcs: one whole transaction
	scSlowFor     = 4 * time.Second        // slow phase before the silence
	scSilentFor   = 3 * time.Second        // BMC answers nothing
	scAfter       = 2500 * time.Millisecond
	scPatEvery    = 500 * time.Millisecond
	scPatDeadline = 3 * time.Second
	scProbeEvery  = 250 * time.Millisecond

	// Watchdog: 8.0 s countdown, pretimeout 2 s before expiry, so the
	// pretimeout fires 6 s after the last pat: longer than the silence
	// plus a pat interval and a transaction, far shorter than a FIFO
	// backlog of slow requests.
	scWDCountdown = 80 // 100 ms units
	scWDPreSecs   = 2

	scClients      = 8
	scFirstWave    = 240 // per client, queued at the start of the slow phase
	scSecondWave   = 10  // per client, after recovery: 8*(240+10) = 2000
	scShortExpiry  = 3 * time.Second
	scLongExpiry   = 20 * time.Second
	scSecondExpiry = 5 * time.Second
)

// tracked is one request with its completion bookkeeping.
type tracked struct {
	req       sched.Request
	submitted time.Time
	doneAt    time.Time
	dones     atomic.Int32
	wave      int
}

type patResult struct {
	submitted time.Time
	latency   time.Duration
	err       error
	cc        byte
}

type scenarioResult struct {
	pretimeouts              uint64
	pats                     []patResult
	reqs                     []*tracked
	silenceStart, silenceEnd time.Time
	stats                    sched.Stats
	logs                     []slog.Level
	allDone                  bool
}

func runScenario(t *testing.T, singleFIFO bool) *scenarioResult {
	t.Helper()
	quiet := quietLogger()
	bmc := bmcsim.New(bmcsim.Config{Logger: quiet})
	port := kcsbmc.New(bmc)
	host := kcs.New(port, kcs.Config{WaitTimeout: scWaitTimeout, TransactionTimeout: scTxTimeout, Logger: quiet})
	logs := &logCapture{}
	e := sched.New(host, sched.Config{
		MaxQueuePerOwner: 512,
		ProbeInterval:    scProbeEvery,
		Logger:           slog.New(logs),
		SingleFIFO:       singleFIFO,
	})
	res := &scenarioResult{}

	// do runs one priority request synchronously (setup only).
	do := func(msg []byte) []byte {
		t.Helper()
		ch := make(chan *sched.Request, 1)
		r := &sched.Request{Owner: 1000, Lane: sched.LanePriority, Deadline: time.Now().Add(5 * time.Second),
			Msg: msg, Resp: make([]byte, 0, 32), Done: func(r *sched.Request) { ch <- r }}
		if err := e.Submit(r); err != nil {
			t.Fatal(err)
		}
		r = <-ch
		if r.Err != nil || len(r.Resp) < 3 || r.Resp[2] != 0 {
			t.Fatalf("setup request % x: resp % x err %v", msg, r.Resp, r.Err)
		}
		return r.Resp
	}
	// Set Watchdog Timer: SMS/OS, no action, messaging-interrupt
	// pretimeout, then Reset to start it.
	do([]byte{bmcsim.NetFnApp << 2, 0x24, 0x04, bmcsim.PretimeoutMsg << 4, scWDPreSecs, 0, scWDCountdown, 0})
	do([]byte{bmcsim.NetFnApp << 2, 0x22})

	// The watchdog daemon: one synchronous Reset Watchdog Timer on the
	// priority lane every scPatEvery.
	stopPat := make(chan struct{})
	patterDone := make(chan struct{})
	go func() {
		defer close(patterDone)
		tick := time.NewTicker(scPatEvery)
		defer tick.Stop()
		ch := make(chan *sched.Request, 1)
		r := &sched.Request{Owner: 1000, Lane: sched.LanePriority, Msg: []byte{bmcsim.NetFnApp << 2, 0x22},
			Resp: make([]byte, 0, 32), Done: func(r *sched.Request) { ch <- r }}
		for {
			select {
			case <-stopPat:
				return
			case <-tick.C:
			}
			p := patResult{submitted: time.Now()}
			r.Deadline = p.submitted.Add(scPatDeadline)
			if err := e.Submit(r); err != nil {
				t.Errorf("pat Submit: %v", err)
				return
			}
			<-ch
			p.latency, p.err = time.Since(p.submitted), r.Err
			if r.Err == nil && len(r.Resp) >= 3 {
				p.cc = r.Resp[2]
			}
			res.pats = append(res.pats, p)
		}
	}()

	var pending sync.WaitGroup
	submit := func(owner sched.Owner, wave int, expiry time.Duration) {
		tr := &tracked{wave: wave}
		tr.submitted = time.Now()
		tr.req = sched.Request{Owner: owner, Lane: sched.LaneNormal, Deadline: tr.submitted.Add(expiry),
			Msg: []byte{bmcsim.NetFnApp << 2, 0x01}, Resp: make([]byte, 0, 32),
			Done: func(*sched.Request) {
				tr.doneAt = time.Now()
				if tr.dones.Add(1) == 1 {
					pending.Done()
				}
			}}
		pending.Add(1)
		if err := e.Submit(&tr.req); err != nil {
			pending.Done()
			t.Errorf("client %d Submit: %v", owner, err)
			return
		}
		res.reqs = append(res.reqs, tr)
	}

	// Slow phase: the BMC takes scSlowLatency per message and 8 clients
	// queue their backlog; half of them give up after scShortExpiry.
	start := time.Now()
	port.SetMessageLatency(scSlowLatency)
	for c := range scClients {
		expiry := scLongExpiry
		if c%2 == 0 {
			expiry = scShortExpiry
		}
		for range scFirstWave {
			submit(sched.Owner(c+1), 1, expiry)
		}
	}
	time.Sleep(time.Until(start.Add(scSlowFor)))

	// Silence, then recovery at full speed.
	res.silenceStart = time.Now()
	res.silenceEnd = res.silenceStart.Add(scSilentFor)
	port.Silence(res.silenceEnd)
	time.Sleep(time.Until(res.silenceEnd))
	port.SetMessageLatency(0)
	for c := range scClients {
		for range scSecondWave {
			submit(sched.Owner(c+1), 2, scSecondExpiry)
		}
	}
	time.Sleep(time.Until(res.silenceEnd.Add(scAfter)))
	close(stopPat)
	<-patterDone

	ch := make(chan struct{})
	go func() { pending.Wait(); close(ch) }()
	select {
	case <-ch:
		res.allDone = true
	case <-time.After(30 * time.Second):
	}
	res.pretimeouts = bmc.Stats().PretimeoutsFired
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	res.stats = e.Stats()
	res.logs = logs.levels()
	t.Logf("fifo=%v wall %v: %d pats, pretimeouts %d, engine %+v, kcs %+v",
		singleFIFO, time.Since(start).Round(time.Millisecond), len(res.pats), res.pretimeouts, res.stats, host.Stats())
	return res
}

// checkExactlyOnce fails unless every request completed exactly once.
func checkExactlyOnce(t *testing.T, res *scenarioResult) {
	t.Helper()
	if !res.allDone {
		t.Error("some requests never completed")
	}
	if got, want := len(res.reqs), scClients*(scFirstWave+scSecondWave); got != want {
		t.Errorf("%d requests submitted, want %d", got, want)
	}
	var closed int
	for _, tr := range res.reqs {
		if n := tr.dones.Load(); n != 1 {
			t.Fatalf("request of owner %d completed %d times", tr.req.Owner, n)
		}
		if errors.Is(tr.req.Err, sched.ErrClosed) {
			closed++
		}
	}
	if closed != 0 {
		t.Errorf("%d requests were still queued at Close", closed)
	}
	if got := res.stats.CompletedNormal; got != uint64(len(res.reqs)) {
		t.Errorf("engine counted %d normal completions for %d requests", got, len(res.reqs))
	}
}

// answering reports whether a pat made at ts had the BMC answering for
// its whole possible wait (one transaction in progress plus its own).
func (res *scenarioResult) answering(ts time.Time) bool {
	return ts.Before(res.silenceStart.Add(-2*scTxTimeout)) || ts.After(res.silenceEnd.Add(2*scTxTimeout))
}

func TestScenarioSlowThenSilentBMC(t *testing.T) {
	res := runScenario(t, false)
	checkExactlyOnce(t, res)

	if res.pretimeouts != 0 {
		t.Errorf("the BMC watchdog pretimeout fired %d times; the priority lane should have kept it patted", res.pretimeouts)
	}
	// A pat waits for at most the transaction in progress plus its own.
	bound := 2*scTxTimeout + time.Second // generous slack for a loaded CI machine
	var slow int
	for i, p := range res.pats {
		if !res.answering(p.submitted) {
			continue
		}
		if p.submitted.Before(res.silenceStart) {
			slow++
		}
		if p.err != nil || p.cc != 0 || p.latency > bound {
			t.Errorf("pat %d at +%v while the BMC answers: latency %v (bound %v), cc %#x, err %v",
				i, p.submitted.Sub(res.silenceStart), p.latency, bound, p.cc, p.err)
		}
	}
	if slow < 3 {
		t.Errorf("only %d pats checked in the slow phase; the scenario did not exercise it", slow)
	}

	var ok, expired, failFast, other int
	for _, tr := range res.reqs {
		switch err := tr.req.Err; {
		case err == nil:
			ok++
		case errors.Is(err, sched.ErrDeadline):
			expired++
			// Expired requests complete in one sweep, at most one
			// transaction after their deadline: never one transport
			// timeout per request.
			if late := tr.doneAt.Sub(tr.req.Deadline); late > scTxTimeout+time.Second {
				t.Errorf("expired request completed %v after its deadline", late)
			}
		case errors.Is(err, sched.ErrBMCUnresponsive):
			failFast++
		default:
			other++
		}
		if tr.wave == 2 && tr.req.Err != nil {
			t.Errorf("request after recovery failed: %v", tr.req.Err)
		}
	}
	t.Logf("requests: %d ok, %d expired without hardware, %d failed fast, %d transport errors", ok, expired, failFast, other)
	if expired < scClients/2*scFirstWave/2 {
		t.Errorf("only %d requests expired; the short-deadline backlog should have expired without hardware", expired)
	}
	if failFast == 0 || res.stats.Probes == 0 {
		t.Errorf("failed fast %d, probes %d: the silence should have marked the BMC unresponsive", failFast, res.stats.Probes)
	}
	if !res.stats.Healthy {
		t.Error("BMC not healthy again after the silence")
	}
	var warns, infos int
	for _, l := range res.logs {
		switch l {
		case slog.LevelWarn:
			warns++
		case slog.LevelInfo:
			infos++
		}
	}
	if warns < 1 || infos < 1 || warns+infos > 6 {
		t.Errorf("engine logged %d warnings and %d infos; want one per health change", warns, infos)
	}
}

// TestScenarioSingleFIFOStarvesWatchdog runs the same scenario with one
// FIFO queue: the pats wait behind the slow backlog and the pretimeout
// fires. If this test fails, the scenario has lost its power to detect a
// starved watchdog.
func TestScenarioSingleFIFOStarvesWatchdog(t *testing.T) {
	res := runScenario(t, true)
	checkExactlyOnce(t, res)
	if res.pretimeouts == 0 {
		t.Fatal("pretimeout never fired with a single FIFO: the scenario cannot tell priority from FIFO")
	}
	var starved int
	for _, p := range res.pats {
		if res.answering(p.submitted) && (p.err != nil || p.cc != 0) {
			starved++
		}
	}
	t.Logf("single FIFO: pretimeouts %d, %d of %d pats failed while the BMC answered", res.pretimeouts, starved, len(res.pats))
}
