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
	"sort"
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
	scWaitTimeout = 600 * time.Millisecond // kcs: one IBF/OBF wait, four times the slow latency
	scTxTimeout   = 900 * time.Millisecond // kcs: one whole transaction
	scSlowFor     = 8 * time.Second        // slow phase before the silence: as long as the pretimeout window, so a FIFO fires it
	scSilentFor   = 4 * time.Second        // BMC answers nothing: three timeouts fit
	scAfter       = 2500 * time.Millisecond
	scPatEvery    = 500 * time.Millisecond
	scPatDeadline = 10 * time.Second // only a stall reaches it: a pat waits two transactions
	scProbeEvery  = 250 * time.Millisecond

	// Watchdog: 10.0 s countdown, pretimeout 2 s before expiry, so the
	// pretimeout fires 8 s after the last pat: longer than the silence
	// plus a pat interval and a transaction, shorter than the slow phase,
	// in which a FIFO keeps every pat behind the backlog.
	scWDCountdown = 100 // 100 ms units
	scWDPreSecs   = 2

	scClients      = 8
	scFirstWave    = 240 // per client, queued at the start of the slow phase
	scSecondWave   = 10  // per client, after recovery: 8*(240+10) = 2000
	scShortExpiry  = 3 * time.Second
	scLongExpiry   = 20 * time.Second
	scSecondExpiry = 20 * time.Second

	// scRecoverWithin bounds the wait for the engine to see the BMC answer
	// after the silence. It takes one pat or probe transaction (well under
	// a second); the bound is generous so that only a real failure to
	// recover reaches it on a loaded machine.
	scRecoverWithin = 20 * time.Second
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
	submitted time.Time // before Submit
	queued    time.Time // after Submit returned: the pat is in the lane
	doneAt    time.Time // in Done, on the engine goroutine
	err       error
	cc        byte
}

// ok reports whether the BMC accepted the pat.
func (p patResult) ok() bool { return p.err == nil && p.cc == 0 }

// startLog wraps the transport and records when each transaction (request,
// probe) starts. The engine calls it from its one goroutine; the test reads
// it after Close. Counting transactions, not wall-clock time, gives the
// scenario's bounds in units that a loaded machine cannot stretch.
type startLog struct {
	t      sched.Transport
	starts []time.Time
}

func (l *startLog) Transact(msg, resp []byte, deadline time.Time) ([]byte, error) {
	l.starts = append(l.starts, time.Now())
	return l.t.Transact(msg, resp, deadline)
}

// between counts the transactions that started in [from, to].
func (l *startLog) between(from, to time.Time) int {
	lo := sort.Search(len(l.starts), func(i int) bool { return !l.starts[i].Before(from) })
	hi := sort.Search(len(l.starts), func(i int) bool { return l.starts[i].After(to) })
	return hi - lo
}

type scenarioResult struct {
	pretimeouts              uint64
	pats                     []patResult
	reqs                     []*tracked
	silenceStart, silenceEnd time.Time
	recovered                bool // the engine saw the BMC answer again after the silence
	stats                    sched.Stats
	logs                     []slog.Level
	allDone                  bool
	tx                       *startLog
}

func runScenario(t *testing.T, singleFIFO bool) *scenarioResult {
	t.Helper()
	quiet := quietLogger()
	bmc := bmcsim.New(bmcsim.Config{Logger: quiet})
	port := kcsbmc.New(bmc)
	host := kcs.New(port, kcs.Config{WaitTimeout: scWaitTimeout, TransactionTimeout: scTxTimeout, Logger: quiet})
	logs := &logCapture{}
	res := &scenarioResult{tx: &startLog{t: host}}
	e := sched.New(res.tx, sched.Config{
		MaxQueuePerOwner: 512,
		ProbeInterval:    scProbeEvery,
		Logger:           slog.New(logs),
		SingleFIFO:       singleFIFO,
	})

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
		ch := make(chan time.Time, 1)
		r := &sched.Request{Owner: 1000, Lane: sched.LanePriority, Msg: []byte{bmcsim.NetFnApp << 2, 0x22},
			Resp: make([]byte, 0, 32), Done: func(*sched.Request) { ch <- time.Now() }}
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
			p.queued = time.Now()
			p.doneAt, p.err = <-ch, r.Err
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
	// Submitted round-robin, so that a single FIFO also alternates short
	// and long deadlines: a run of short-deadline requests each cut off by
	// its own deadline would count as consecutive timeouts and mark the
	// BMC unresponsive in the slow phase, which would drain the FIFO's
	// backlog and hide the starvation the FIFO test must show.
	for range scFirstWave {
		for c := range scClients {
			expiry := scLongExpiry
			if c%2 == 0 {
				expiry = scShortExpiry
			}
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
	// The second wave comes once the engine has seen the BMC answer again
	// (a pat or a probe succeeded): submitted earlier, while it still
	// counts the BMC unresponsive, it would rightly fail fast.
	recoverBy := time.Now().Add(scRecoverWithin)
	for !e.Stats().Healthy && time.Now().Before(recoverBy) {
		time.Sleep(5 * time.Millisecond)
	}
	res.recovered = e.Stats().Healthy
	for c := range scClients {
		for range scSecondWave {
			submit(sched.Owner(c+1), 2, scSecondExpiry)
		}
	}
	time.Sleep(scAfter)
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

// answering reports whether the BMC answered for the whole of a pat's
// life: it completed before the silence began, or was submitted after it
// ended. Defined by the pat's own timestamps, so a stalled test goroutine
// moves a pat out of the checked set instead of failing it.
func (res *scenarioResult) answering(p patResult) bool {
	return p.doneAt.Before(res.silenceStart) || p.submitted.After(res.silenceEnd)
}

// waited is how many transactions a pat's wait spanned, its own included:
// those that started between its entering the lane and its completion.
func (res *scenarioResult) waited(p patResult) int {
	return res.tx.between(p.queued, p.doneAt)
}

// maxPatGap bounds, from above, the longest time the BMC went without an
// accepted pat: for each pair of consecutive accepted pats, from the first
// one's submission to the second one's completion.
func (res *scenarioResult) maxPatGap() time.Duration {
	var gap time.Duration
	var prev *patResult
	for i := range res.pats {
		p := &res.pats[i]
		if !p.ok() {
			continue
		}
		if prev != nil {
			gap = max(gap, p.doneAt.Sub(prev.submitted))
		}
		prev = p
	}
	return gap
}

// scPretimeoutAfter is how long after a pat the BMC's pretimeout fires.
const scPretimeoutAfter = scWDCountdown*100*time.Millisecond - scWDPreSecs*time.Second

func TestScenarioSlowThenSilentBMC(t *testing.T) {
	res := runScenario(t, false)
	checkExactlyOnce(t, res)

	// A pat waits for at most the transaction in progress plus its own:
	// counted in transactions, which a slow machine cannot stretch.
	var slow, maxWaited int
	for i, p := range res.pats {
		if !res.answering(p) {
			continue
		}
		if p.doneAt.Before(res.silenceStart) {
			slow++
		}
		n := res.waited(p)
		maxWaited = max(maxWaited, n)
		if !p.ok() || n > 2 {
			t.Errorf("pat %d at %+v while the BMC answers: waited %d transactions (bound 2), latency %v, cc %#x, err %v",
				i, p.submitted.Sub(res.silenceStart), n, p.doneAt.Sub(p.submitted), p.cc, p.err)
		}
	}
	if slow < 3 {
		t.Errorf("only %d pats checked in the slow phase; the scenario did not exercise it", slow)
	}
	// The pretimeout fires if the BMC goes scPretimeoutAfter without an
	// accepted pat. The silence alone is shorter than that; if the machine
	// stalled the test long enough to stretch the gap past it, the
	// pretimeout is right to fire, and the transaction bound above is what
	// judges the engine.
	gap := res.maxPatGap()
	t.Logf("pats: %d, longest wait %d transactions, longest gap between accepted pats at most %v (pretimeout after %v)",
		len(res.pats), maxWaited, gap.Round(time.Millisecond), scPretimeoutAfter)
	switch {
	case res.pretimeouts != 0 && gap < scPretimeoutAfter:
		t.Errorf("the BMC watchdog pretimeout fired %d times although no two accepted pats were %v apart; the priority lane should have kept it patted",
			res.pretimeouts, scPretimeoutAfter)
	case res.pretimeouts != 0:
		t.Logf("pretimeout fired after a %v gap between pats: the machine stalled the test beyond the watchdog window", gap)
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
			if n := res.tx.between(tr.req.Deadline, tr.doneAt); n > 1 {
				t.Errorf("expired request completed %v and %d transactions after its deadline; want at most 1",
					tr.doneAt.Sub(tr.req.Deadline), n)
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
	// While the BMC is unresponsive, normal requests fail fast. Whether a
	// probe or a pat is the transaction that finds the BMC back depends on
	// which is queued when the engine looks (pats come every 500 ms and
	// each waits out a timeout), so probes are only reported here;
	// TestHealth checks them deterministically.
	if failFast == 0 {
		t.Errorf("failed fast %d: the silence should have marked the BMC unresponsive", failFast)
	}
	if !res.recovered || !res.stats.Healthy {
		t.Errorf("BMC not healthy again after the silence (recovered %v, healthy at the end %v)", res.recovered, res.stats.Healthy)
	}
	t.Logf("probes %d", res.stats.Probes)
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
	var starved, maxWaited int
	for _, p := range res.pats {
		maxWaited = max(maxWaited, res.waited(p))
		if res.answering(p) && !p.ok() {
			starved++
		}
	}
	// The transaction count that bounds a pat's wait in the test above
	// must see the FIFO's backlog, or that bound proves nothing.
	if maxWaited <= 2 {
		t.Errorf("with a single FIFO the longest pat wait was %d transactions; the count cannot tell FIFO from priority", maxWaited)
	}
	t.Logf("single FIFO: pretimeouts %d, %d of %d pats failed while the BMC answered, longest wait %d transactions",
		res.pretimeouts, starved, len(res.pats), maxWaited)
}
