package sched_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

const waitLong = 20 * time.Second // generous bound for a loaded CI machine

func far() time.Time { return time.Now().Add(time.Hour) }

func TestSubmitValidation(t *testing.T) {
	done := func(*sched.Request) { t.Error("Done called for a rejected request") }
	tests := []struct {
		name string
		r    *sched.Request
	}{
		{"nil", nil},
		{"no done", &sched.Request{Msg: []byte{0x18, 1}, Deadline: far()}},
		{"short message", &sched.Request{Msg: []byte{0x18}, Deadline: far(), Done: done}},
		{"unknown lane", &sched.Request{Msg: []byte{0x18, 1}, Lane: 7, Deadline: far(), Done: done}},
		{"no deadline", &sched.Request{Msg: []byte{0x18, 1}, Done: done}},
	}
	e := sched.New(&fakeTransport{}, sched.Config{Logger: quietLogger()})
	defer e.Close()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.Submit(tc.r); !errors.Is(err, sched.ErrInvalidRequest) {
				t.Fatalf("Submit = %v, want ErrInvalidRequest", err)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	ft := &fakeTransport{}
	e := sched.New(ft, sched.Config{Logger: quietLogger()})
	defer e.Close()
	rc := newRecorder()
	r := rc.request(1, sched.LaneNormal, 7, far())
	if err := rc.submit(e, r); err != nil {
		t.Fatal(err)
	}
	if !rc.waitAll(waitLong) {
		t.Fatal("request never completed")
	}
	want := []byte{0x07 << 2, 0x22, 0, 1, 7, 0}
	if r.Err != nil || string(r.Resp) != string(want) {
		t.Fatalf("Resp, Err = % x, %v; want % x, nil", r.Resp, r.Err, want)
	}
}

// TestExactlyOnceConcurrent hammers the engine from many goroutines with
// mixed lanes, expired deadlines, transport timeouts and a Close in the
// middle, then checks every accepted request completed exactly once and
// no rejected one completed at all.
func TestExactlyOnceConcurrent(t *testing.T) {
	ft := &fakeTransport{hook: func(call int, _ []byte) error {
		if call%97 == 0 {
			return errFakeTimeout
		}
		return nil
	}}
	e := sched.New(ft, sched.Config{Logger: quietLogger(), MaxQueuePerOwner: 64, ProbeInterval: time.Millisecond})
	rc := newRecorder()
	var accepted, rejected atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 2000 {
				lane := sched.LaneNormal
				if rng.IntN(10) == 0 {
					lane = sched.LanePriority
				}
				dl := far()
				if rng.IntN(4) == 0 {
					dl = time.Now().Add(time.Duration(rng.IntN(200)) * time.Microsecond)
				}
				r := rc.request(sched.Owner(g%5), lane, i, dl)
				if err := rc.submit(e, r); err != nil {
					if !errors.Is(err, sched.ErrQueueFull) && !errors.Is(err, sched.ErrClosed) {
						t.Errorf("Submit: %v", err)
					}
					rejected.Add(1)
					continue
				}
				accepted.Add(1)
			}
		})
	}
	time.Sleep(5 * time.Millisecond)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if !rc.waitAll(waitLong) {
		t.Fatal("not every accepted request completed")
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if got := int64(len(rc.order)); got != accepted.Load() {
		t.Errorf("%d Done calls for %d accepted requests", got, accepted.Load())
	}
	for r, n := range rc.count {
		if n != 1 {
			t.Errorf("request owner %d seq %d completed %d times", r.Owner, r.Msg[3], n)
		}
	}
	s := e.Stats()
	if total := s.CompletedNormal + s.CompletedPriority; int64(total) != accepted.Load() {
		t.Errorf("stats count %d completions, want %d", total, accepted.Load())
	}
	t.Logf("accepted %d rejected %d stats %+v", accepted.Load(), rejected.Load(), s)
}

// TestPriorityFirst queues many normal requests and a few priority ones
// behind a blocked transaction: the priority ones must be the next served.
func TestPriorityFirst(t *testing.T) {
	tests := []struct {
		name             string
		normal, priority int
	}{
		{"one pat behind 100", 100, 1},
		{"five pats behind 500", 500, 5},
		{"priority only", 0, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, _, e, rc := heldEngine(t, sched.Config{Logger: quietLogger(), MaxQueuePerOwner: 1000}, 99)
			for i := range tc.normal {
				if err := rc.submit(e, rc.request(sched.Owner(i%3), sched.LaneNormal, i, far())); err != nil {
					t.Fatal(err)
				}
			}
			for i := range tc.priority {
				if err := rc.submit(e, rc.request(50, sched.LanePriority, i, far())); err != nil {
					t.Fatal(err)
				}
			}
			close(g.release)
			if !rc.waitAll(waitLong) {
				t.Fatal("requests did not complete")
			}
			order := rc.snapshot()
			for i := 1; i <= tc.priority; i++ {
				if order[i].Lane != sched.LanePriority {
					t.Fatalf("completion %d is on lane %v, want priority (all pats before normal)", i, order[i].Lane)
				}
			}
		})
	}
}

// TestRoundRobin: one owner floods, others submit a few; the few complete
// within the first rounds, not after the flood.
func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name          string
		flood, others int
		nOthers       int
	}{
		{"A 1000 vs B 10", 1000, 10, 1},
		{"A 1000 vs 7 owners of 10", 1000, 10, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, _, e, rc := heldEngine(t, sched.Config{Logger: quietLogger(), MaxQueuePerOwner: 1000}, 0)
			for i := range tc.flood {
				if err := rc.submit(e, rc.request(1, sched.LaneNormal, i, far())); err != nil {
					t.Fatal(err)
				}
			}
			for o := range tc.nOthers {
				for i := range tc.others {
					if err := rc.submit(e, rc.request(sched.Owner(2+o), sched.LaneNormal, i, far())); err != nil {
						t.Fatal(err)
					}
				}
			}
			close(g.release)
			if !rc.waitAll(waitLong) {
				t.Fatal("requests did not complete")
			}
			// With n+1 owners taking turns, the others' last request is
			// served by round others, i.e. within 1 + others*(nOthers+1).
			bound := 1 + tc.others*(tc.nOthers+1)
			last := 0
			for i, r := range rc.snapshot() {
				if r.Owner >= 2 {
					last = i
				}
			}
			if last >= bound {
				t.Fatalf("last request of the light owners completed at position %d, want < %d", last, bound)
			}
			// Per-owner FIFO order is kept.
			prev := map[sched.Owner]int{}
			for _, r := range rc.snapshot() {
				seq := int(r.Msg[3]) | int(r.Msg[4])<<8
				if p, ok := prev[r.Owner]; ok && seq <= p {
					t.Fatalf("owner %d: seq %d after %d", r.Owner, seq, p)
				}
				prev[r.Owner] = seq
			}
		})
	}
}

func TestQueueFull(t *testing.T) {
	g, _, e, rc := heldEngine(t, sched.Config{Logger: quietLogger(), MaxQueuePerOwner: 4, MaxPriorityQueue: 2}, 9)
	tests := []struct {
		name  string
		owner sched.Owner
		lane  sched.Lane
		want  error
	}{
		{"owner 1 #1", 1, sched.LaneNormal, nil},
		{"owner 1 #2", 1, sched.LaneNormal, nil},
		{"owner 1 #3", 1, sched.LaneNormal, nil},
		{"owner 1 #4", 1, sched.LaneNormal, nil},
		{"owner 1 #5 full", 1, sched.LaneNormal, sched.ErrQueueFull},
		{"owner 2 unaffected", 2, sched.LaneNormal, nil},
		{"priority #1", 1, sched.LanePriority, nil},
		{"priority #2", 1, sched.LanePriority, nil},
		{"priority #3 full", 1, sched.LanePriority, sched.ErrQueueFull},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rc.request(tc.owner, tc.lane, i, far())
			r.Done = func(*sched.Request) {}
			if tc.want == nil {
				r.Done = rc.done
				rc.all.Add(1)
			} else {
				r.Done = func(*sched.Request) { t.Error("Done called for a rejected request") }
			}
			err := e.Submit(r)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Submit = %v, want %v", err, tc.want)
			}
		})
	}
	if s := e.Stats(); s.QueuedNormal != 5 || s.QueuedPriority != 2 || s.Owners != 2 {
		t.Errorf("stats queued normal %d priority %d owners %d, want 5 2 2", s.QueuedNormal, s.QueuedPriority, s.Owners)
	}
	close(g.release)
	if !rc.waitAll(waitLong) {
		t.Fatal("requests did not complete")
	}
}

// TestDeadlineWithoutHardware: a backlog whose deadlines pass while the
// transport is stuck completes with ErrDeadline without touching it.
func TestDeadlineWithoutHardware(t *testing.T) {
	tests := []struct {
		name  string
		lanes []sched.Lane
		n     int
	}{
		{"normal backlog", []sched.Lane{sched.LaneNormal}, 1000},
		{"mixed backlog", []sched.Lane{sched.LaneNormal, sched.LanePriority}, 60},
		{"already expired at submit", []sched.Lane{sched.LaneNormal}, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, ft, e, rc := heldEngine(t, sched.Config{Logger: quietLogger(), MaxQueuePerOwner: 1000}, 0)
			dl := time.Now().Add(20 * time.Millisecond)
			if tc.name == "already expired at submit" {
				dl = time.Now().Add(-time.Second)
			}
			for i := range tc.n {
				lane := tc.lanes[i%len(tc.lanes)]
				if err := rc.submit(e, rc.request(sched.Owner(1+i%4), lane, i, dl)); err != nil {
					t.Fatal(err)
				}
			}
			time.Sleep(time.Until(dl) + 10*time.Millisecond)
			close(g.release)
			if !rc.waitAll(waitLong) {
				t.Fatal("requests did not complete")
			}
			for _, r := range rc.snapshot()[1:] {
				if !errors.Is(r.Err, sched.ErrDeadline) || !errors.Is(r.Err, os.ErrDeadlineExceeded) {
					t.Fatalf("Err = %v, want ErrDeadline wrapping os.ErrDeadlineExceeded", r.Err)
				}
			}
			if n := ft.calls.Load(); n != 1 {
				t.Errorf("transport called %d times, want 1 (only the blocked request)", n)
			}
			if s := e.Stats(); s.Expired != uint64(tc.n) {
				t.Errorf("Stats.Expired = %d, want %d", s.Expired, tc.n)
			}
		})
	}
}

// logCapture records slog records for assertions on health logging.
type logCapture struct {
	mu      sync.Mutex
	records []slog.Record
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	c.records = append(c.records, r.Clone())
	c.mu.Unlock()
	return nil
}
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCapture) WithGroup(string) slog.Handler      { return c }

func (c *logCapture) levels() []slog.Level {
	c.mu.Lock()
	defer c.mu.Unlock()
	var l []slog.Level
	for _, r := range c.records {
		l = append(l, r.Level)
	}
	return l
}

// waitFor polls cond until true or fails the test after waitLong.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHealth walks the BMC through healthy → unresponsive (normal requests
// fail fast, priority still reaches hardware, probes go out) → recovered.
func TestHealth(t *testing.T) {
	var dead atomic.Bool
	var probes atomic.Int64
	ft := &fakeTransport{hook: func(_ int, msg []byte) error {
		if msg[0] == 0x06<<2 && msg[1] == 0x01 {
			probes.Add(1)
		}
		if dead.Load() {
			return errFakeTimeout
		}
		return nil
	}}
	logs := &logCapture{}
	e := sched.New(ft, sched.Config{Logger: slog.New(logs), UnresponsiveAfter: 3, ProbeInterval: 5 * time.Millisecond})
	defer e.Close()

	run := func(lane sched.Lane) *sched.Request {
		t.Helper()
		rc := newRecorder()
		r := rc.request(1, lane, 0, far())
		if err := rc.submit(e, r); err != nil {
			t.Fatal(err)
		}
		if !rc.waitAll(waitLong) {
			t.Fatal("request did not complete")
		}
		return r
	}

	dead.Store(true)
	for i := range 3 {
		if r := run(sched.LaneNormal); !errors.Is(r.Err, os.ErrDeadlineExceeded) || errors.Is(r.Err, sched.ErrDeadline) {
			t.Fatalf("timeout %d: Err = %v, want a transport timeout", i, r.Err)
		}
	}
	// A probe (every 5 ms once unresponsive) may already have timed out
	// too on a loaded machine: at least 3.
	if s := e.Stats(); s.Healthy || s.ConsecutiveTimeouts < 3 {
		t.Fatalf("after 3 timeouts: healthy %v consecutive %d", s.Healthy, s.ConsecutiveTimeouts)
	}
	before := ft.calls.Load() - probes.Load()
	for range 50 {
		if r := run(sched.LaneNormal); !errors.Is(r.Err, sched.ErrBMCUnresponsive) {
			t.Fatalf("normal while unresponsive: Err = %v, want ErrBMCUnresponsive", r.Err)
		}
	}
	if got := ft.calls.Load() - probes.Load(); got != before {
		t.Fatalf("normal requests while unresponsive reached the transport %d times", got-before)
	}
	if r := run(sched.LanePriority); !errors.Is(r.Err, os.ErrDeadlineExceeded) {
		t.Fatalf("priority while unresponsive: Err = %v, want it to reach the (dead) transport", r.Err)
	}
	waitFor(t, "probes", func() bool { return probes.Load() >= 3 })

	dead.Store(false)
	waitFor(t, "recovery by probe", func() bool { return e.Stats().Healthy })
	if r := run(sched.LaneNormal); r.Err != nil {
		t.Fatalf("normal after recovery: %v", r.Err)
	}
	// Recovery through a priority request instead of a probe.
	dead.Store(true)
	for range 3 {
		run(sched.LaneNormal)
	}
	if e.Stats().Healthy {
		t.Fatal("not unresponsive after second outage")
	}
	dead.Store(false)
	if r := run(sched.LanePriority); r.Err != nil || !e.Stats().Healthy {
		t.Fatalf("priority success did not restore health: err %v healthy %v", r.Err, e.Stats().Healthy)
	}

	got := logs.levels()
	want := []slog.Level{slog.LevelWarn, slog.LevelInfo, slog.LevelWarn, slog.LevelInfo}
	if len(got) != len(want) {
		t.Fatalf("log levels %v, want %v (one line per state change)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("log levels %v, want %v", got, want)
		}
	}
	s := e.Stats()
	if s.FailedFast != 50 || s.Probes < 3 || s.Timeouts < 7 {
		t.Errorf("stats %+v", s)
	}
}

// TestClose completes every queued request with ErrClosed exactly once and
// refuses new ones.
func TestClose(t *testing.T) {
	tests := []struct {
		name string
		n    int
		shut func(*sched.Engine) error
	}{
		{"Close", 300, (*sched.Engine).Close},
		{"Shutdown", 300, func(e *sched.Engine) error { return e.Shutdown(context.Background()) }},
		{"Close empty", 0, (*sched.Engine).Close},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, _, e, rc := heldEngine(t, sched.Config{Logger: quietLogger(), MaxQueuePerOwner: 1000}, 0)
			for i := range tc.n {
				lane := sched.LaneNormal
				if i%10 == 0 {
					lane = sched.LanePriority
				}
				if err := rc.submit(e, rc.request(sched.Owner(i%3), lane, i, far())); err != nil {
					t.Fatal(err)
				}
			}
			closed := make(chan error)
			go func() { closed <- tc.shut(e) }()
			// A bounded Shutdown gives up while the transaction runs.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			if err := e.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("bounded Shutdown during a transaction = %v, want context.DeadlineExceeded", err)
			}
			cancel()
			close(g.release)
			if err := <-closed; err != nil {
				t.Fatal(err)
			}
			if !rc.waitAll(waitLong) {
				t.Fatal("requests did not complete")
			}
			order := rc.snapshot()
			if order[0].Err != nil {
				t.Errorf("in-flight request: %v, want its normal result", order[0].Err)
			}
			for _, r := range order[1:] {
				if !errors.Is(r.Err, sched.ErrClosed) {
					t.Fatalf("queued request: %v, want ErrClosed", r.Err)
				}
			}
			if len(order) != tc.n+1 {
				t.Fatalf("%d completions, want %d", len(order), tc.n+1)
			}
			r := rc.request(1, sched.LaneNormal, 0, far())
			r.Done = func(*sched.Request) { t.Error("Done called after Close") }
			if err := e.Submit(r); !errors.Is(err, sched.ErrClosed) {
				t.Fatalf("Submit after Close = %v, want ErrClosed", err)
			}
			if err := e.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

// TestIdleHook: Idle runs on the engine goroutine after a burst, and its
// transactions reach the transport between requests, never concurrently.
func TestIdleHook(t *testing.T) {
	idle := make(chan []byte, 10)
	// The burst is queued behind a held transaction, so it is one burst
	// however the test's goroutine is scheduled.
	g, _, e, rc := heldEngine(t, sched.Config{Logger: quietLogger(), Idle: func(tx sched.TxFunc) {
		resp, err := tx([]byte{0x06 << 2, 0x31}, nil, time.Now().Add(time.Second)) // Get Message Flags
		if err != nil {
			t.Errorf("idle tx: %v", err)
		}
		idle <- resp
	}}, 1)
	for i := range 5 {
		if err := rc.submit(e, rc.request(1, sched.LaneNormal, i+1, far())); err != nil {
			t.Fatal(err)
		}
	}
	close(g.release)
	if !rc.waitAll(waitLong) {
		t.Fatal("requests did not complete")
	}
	select {
	case resp := <-idle:
		if len(resp) < 3 || resp[1] != 0x31 {
			t.Fatalf("idle response % x", resp)
		}
	case <-time.After(waitLong):
		t.Fatal("Idle never called")
	}
	time.Sleep(20 * time.Millisecond)
	if n := len(idle); n != 0 {
		t.Fatalf("Idle called %d more times with no new work (IdleInterval 0)", n)
	}
}

// TestSingleFIFO: the test knob really serves in submission order.
func TestSingleFIFO(t *testing.T) {
	g, _, e, rc := heldEngine(t, sched.Config{Logger: quietLogger(), SingleFIFO: true}, 0)
	for i := range 20 {
		if err := rc.submit(e, rc.request(1, sched.LaneNormal, i+1, far())); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.submit(e, rc.request(2, sched.LanePriority, 21, far())); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	if !rc.waitAll(waitLong) {
		t.Fatal("requests did not complete")
	}
	for i, r := range rc.snapshot() {
		if seq := int(r.Msg[3]); seq != i {
			t.Fatalf("position %d holds seq %d; want submission order", i, seq)
		}
	}
}

// TestIdleInterval: with IdleInterval set, Idle runs periodically while
// there is no work, and not while the BMC is unresponsive.
func TestIdleInterval(t *testing.T) {
	var dead atomic.Bool
	ft := &fakeTransport{hook: func(int, []byte) error {
		if dead.Load() {
			return errFakeTimeout
		}
		return nil
	}}
	var calls atomic.Int64
	e := sched.New(ft, sched.Config{Logger: quietLogger(), IdleInterval: 2 * time.Millisecond,
		UnresponsiveAfter: 1, ProbeInterval: time.Hour,
		Idle: func(sched.TxFunc) { calls.Add(1) }})
	defer e.Close()
	waitFor(t, "periodic Idle calls", func() bool { return calls.Load() >= 5 })

	dead.Store(true)
	rc := newRecorder()
	if err := rc.submit(e, rc.request(1, sched.LaneNormal, 0, far())); err != nil {
		t.Fatal(err)
	}
	if !rc.waitAll(waitLong) {
		t.Fatal("request did not complete")
	}
	waitFor(t, "unresponsive", func() bool { return !e.Stats().Healthy })
	time.Sleep(5 * time.Millisecond) // let an Idle call already under way finish
	n := calls.Load()
	time.Sleep(50 * time.Millisecond)
	if got := calls.Load(); got != n {
		t.Fatalf("Idle called %d times while the BMC was unresponsive", got-n)
	}
}
