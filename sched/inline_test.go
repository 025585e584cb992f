package sched_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// waitIdle waits until the engine's goroutine waits for work (after New it
// may not have got there yet), by serving one request inline.
func waitIdle(t *testing.T, e *sched.Engine) {
	t.Helper()
	waitFor(t, "the engine to wait for work", func() bool {
		return e.ServeInline(&sched.Request{Owner: 9, Msg: []byte{0x18, 1}, Deadline: far(), Done: func(*sched.Request) {}})
	})
}

// TestServeInline: when the engine is idle, ServeInline serves the request
// on the caller's goroutine and calls Done before returning; in every
// other state it refuses without touching the request.
func TestServeInline(t *testing.T) {
	t.Run("idle engine", func(t *testing.T) {
		ft := &fakeTransport{}
		e := sched.New(ft, sched.Config{Logger: quietLogger()})
		defer e.Close()
		waitIdle(t, e)
		for i := range 3 { // the engine stays idle between them
			rc := newRecorder()
			r := rc.request(1, sched.LaneNormal, i, far())
			rc.all.Add(1)
			if !e.ServeInline(r) {
				t.Fatalf("request %d: ServeInline refused on an idle engine", i)
			}
			if len(rc.snapshot()) != 1 || r.Err != nil || len(r.Resp) < 3 {
				t.Fatalf("request %d: Done not called before return, or no response: %d dones, resp % x, err %v",
					i, len(rc.snapshot()), r.Resp, r.Err)
			}
		}
		if s := e.Stats(); s.Transacted != 4 || s.CompletedNormal != 4 || s.Inline != 4 {
			t.Errorf("stats %+v, want 4 transacted, completed and inline", s)
		}
	})
	t.Run("expired", func(t *testing.T) {
		ft := &fakeTransport{}
		e := sched.New(ft, sched.Config{Logger: quietLogger()})
		defer e.Close()
		waitIdle(t, e)
		rc := newRecorder()
		r := rc.request(1, sched.LaneNormal, 0, time.Now().Add(-time.Second))
		rc.all.Add(1)
		if !e.ServeInline(r) || !errors.Is(r.Err, sched.ErrDeadline) || ft.calls.Load() != 1 {
			t.Fatalf("expired request: err %v, transport calls %d; want ErrDeadline without hardware (1 call: waitIdle's)", r.Err, ft.calls.Load())
		}
	})
	refuse := func(t *testing.T, e *sched.Engine) {
		t.Helper()
		r := &sched.Request{Owner: 5, Msg: []byte{0x18, 1}, Deadline: far(),
			Done: func(*sched.Request) { t.Error("Done called for a refused inline request") }}
		if e.ServeInline(r) {
			t.Fatal("ServeInline served while the engine was not idle")
		}
	}
	t.Run("transaction in progress", func(t *testing.T) {
		g, _, e, _ := heldEngine(t, sched.Config{Logger: quietLogger()}, 1)
		refuse(t, e)
		close(g.release)
	})
	t.Run("queued requests", func(t *testing.T) {
		g, _, e, rc := heldEngine(t, sched.Config{Logger: quietLogger()}, 1)
		if err := rc.submit(e, rc.request(2, sched.LaneNormal, 1, far())); err != nil {
			t.Fatal(err)
		}
		refuse(t, e)
		close(g.release)
		if !rc.waitAll(waitLong) {
			t.Fatal("requests did not complete")
		}
	})
	t.Run("unresponsive BMC", func(t *testing.T) {
		ft := &fakeTransport{hook: func(int, []byte) error { return errFakeTimeout }}
		e := sched.New(ft, sched.Config{Logger: quietLogger(), UnresponsiveAfter: 1, ProbeInterval: time.Hour})
		defer e.Close()
		rc := newRecorder()
		if err := rc.submit(e, rc.request(1, sched.LaneNormal, 0, far())); err != nil {
			t.Fatal(err)
		}
		rc.waitAll(waitLong)
		waitFor(t, "unresponsive", func() bool { return !e.Stats().Healthy })
		refuse(t, e)
	})
	t.Run("single FIFO", func(t *testing.T) {
		e := sched.New(&fakeTransport{}, sched.Config{Logger: quietLogger(), SingleFIFO: true})
		defer e.Close()
		refuse(t, e)
	})
	t.Run("closed", func(t *testing.T) {
		e := sched.New(&fakeTransport{}, sched.Config{Logger: quietLogger()})
		e.Close()
		refuse(t, e)
	})
}

// TestServeInlineHoldsEngine: a priority request submitted while an inline
// transaction runs waits for that one transaction only, and is served
// before the normal request queued meanwhile; Close waits for the inline
// transaction.
func TestServeInlineHoldsEngine(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var inTransport atomic.Int32
	ft := &fakeTransport{hook: func(call int, msg []byte) error {
		if inTransport.Add(1) != 1 {
			t.Error("transport entered concurrently")
		}
		defer inTransport.Add(-1)
		if call == 1 {
			close(entered)
			<-release
		}
		return nil
	}}
	e := sched.New(ft, sched.Config{Logger: quietLogger()})
	rc := newRecorder()
	inl := rc.request(1, sched.LaneNormal, 0, far())
	rc.all.Add(1)
	served := make(chan bool)
	go func() { served <- e.ServeInline(inl) }()
	<-entered
	if err := rc.submit(e, rc.request(2, sched.LaneNormal, 1, far())); err != nil {
		t.Fatal(err)
	}
	if err := rc.submit(e, rc.request(3, sched.LanePriority, 2, far())); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while an inline transaction ran")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if !<-served {
		t.Fatal("ServeInline refused on an idle engine")
	}
	<-closed
	if !rc.waitAll(waitLong) {
		t.Fatal("requests did not complete")
	}
	order := rc.snapshot()
	if len(order) != 3 || order[0] != inl {
		t.Fatalf("%d completions, first %v; want the inline one first", len(order), order[0])
	}
	// The requests queued behind the inline one were served or closed;
	// either way the priority one came first if it was served.
	if order[1].Lane != sched.LanePriority && order[1].Err == nil {
		t.Errorf("second completion is %v lane with err %v; want the priority request first", order[1].Lane, order[1].Err)
	}
}

// TestServeInlineConcurrent mixes ServeInline and Submit from many
// goroutines: the transport is never entered twice at once and every
// request completes exactly once.
func TestServeInlineConcurrent(t *testing.T) {
	var inTransport atomic.Int32
	ft := &fakeTransport{hook: func(int, []byte) error {
		if inTransport.Add(1) != 1 {
			t.Error("transport entered concurrently")
		}
		inTransport.Add(-1)
		return nil
	}}
	e := sched.New(ft, sched.Config{Logger: quietLogger(), MaxQueuePerOwner: 1000, MaxPriorityQueue: 1000})
	defer e.Close()
	rc := newRecorder()
	var inline atomic.Int64
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for i := range 300 {
				lane := sched.LaneNormal
				if i%7 == 0 {
					lane = sched.LanePriority
				}
				r := rc.request(sched.Owner(g), lane, i, far())
				rc.all.Add(1)
				if e.ServeInline(r) {
					inline.Add(1)
					continue
				}
				rc.all.Done()
				if err := rc.submit(e, r); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if !rc.waitAll(waitLong) {
		t.Fatal("requests did not complete")
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for r, n := range rc.count {
		if n != 1 {
			t.Errorf("request owner %d completed %d times", r.Owner, n)
		}
	}
	if len(rc.count) != 6*300 {
		t.Errorf("%d requests completed, want %d", len(rc.count), 6*300)
	}
	t.Logf("%d of %d served inline", inline.Load(), 6*300)
}

// TestServeInlineAfterSlowTransaction: after a transaction slower than
// InlineMax (or a failed one), ServeInline refuses, so a slow BMC holds only
// the engine's goroutine; a fast one makes it serve inline again.
func TestServeInlineAfterSlowTransaction(t *testing.T) {
	var slow atomic.Bool
	ft := &fakeTransport{hook: func(int, []byte) error {
		if slow.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	}}
	e := sched.New(ft, sched.Config{Logger: quietLogger(), InlineMax: time.Millisecond})
	defer e.Close()
	run := func() bool {
		rc := newRecorder()
		r := rc.request(1, sched.LaneNormal, 0, far())
		rc.all.Add(1)
		if e.ServeInline(r) {
			return true
		}
		rc.all.Done()
		if err := rc.submit(e, r); err != nil {
			t.Fatal(err)
		}
		if !rc.waitAll(waitLong) {
			t.Fatal("request did not complete")
		}
		return false
	}
	// The engine is idle once its goroutine waits: until then ServeInline
	// rightly refuses, and run submits instead.
	waitFor(t, "a request served inline", run)
	slow.Store(true)
	run() // inline or not, it is slow
	if run() {
		t.Error("served inline right after a transaction slower than InlineMax")
	}
	slow.Store(false)
	run() // the engine's fast transaction clears it
	waitFor(t, "a request served inline after a fast one", run)
}
