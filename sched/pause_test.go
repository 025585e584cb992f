package sched_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// TestPauseDrainsThenHolds: Pause returns only once every request queued
// before it has completed; afterwards nothing reaches the transport (not
// even the attention check) until Resume, and a request submitted while
// paused is served after Resume.
func TestPauseDrainsThenHolds(t *testing.T) {
	var attn int
	cfg := sched.Config{Logger: quietLogger(), Attention: func() bool { attn++; return false }, AttentionInterval: time.Millisecond}
	g, ft, e, rc := heldEngine(t, cfg, 5)
	for i := 1; i <= 3; i++ {
		if err := rc.submit(e, rc.request(5, sched.LaneNormal, i, far())); err != nil {
			t.Fatal(err)
		}
	}
	paused := make(chan error, 1)
	go func() { paused <- e.Pause(context.Background()) }()
	select {
	case err := <-paused:
		t.Fatalf("Pause returned %v with a transaction in flight and 3 queued", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(g.release)
	if err := <-paused; err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if got := len(rc.snapshot()); got != 4 {
		t.Fatalf("%d requests completed when Pause returned, want all 4", got)
	}
	if err := e.Pause(context.Background()); !errors.Is(err, sched.ErrPaused) {
		t.Errorf("second Pause = %v, want ErrPaused", err)
	}
	calls := ft.calls.Load()
	attnBefore := attn // read after Pause: the engine goroutine is parked
	late := rc.request(6, sched.LanePriority, 9, far())
	if err := rc.submit(e, late); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if ft.calls.Load() != calls || attn != attnBefore {
		t.Fatalf("transport or attention used while paused (%d→%d calls, %d→%d checks)", calls, ft.calls.Load(), attnBefore, attn)
	}
	e.Resume()
	if !rc.waitAll(waitLong) {
		t.Fatal("request submitted while paused not served after Resume")
	}
}

func TestPauseTimeoutResumes(t *testing.T) {
	g, _, e, rc := heldEngine(t, sched.Config{Logger: quietLogger()}, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := e.Pause(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Pause with a stuck transaction = %v, want DeadlineExceeded", err)
	}
	close(g.release)
	if err := rc.submit(e, rc.request(5, sched.LaneNormal, 1, far())); err != nil {
		t.Fatal(err)
	}
	if !rc.waitAll(waitLong) {
		t.Fatal("engine not serving after a timed-out Pause")
	}
}

func TestCloseWhilePaused(t *testing.T) {
	e := sched.New(&fakeTransport{}, sched.Config{Logger: quietLogger()})
	if err := e.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	rc := newRecorder()
	if err := rc.submit(e, rc.request(1, sched.LaneNormal, 1, far())); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Close() }()
	select {
	case <-done:
	case <-time.After(waitLong):
		t.Fatal("Close hangs on a paused engine")
	}
	if !rc.waitAll(waitLong) {
		t.Fatal("request queued while paused not completed at Close")
	}
}

func TestAlive(t *testing.T) {
	g, _, e, _ := heldEngine(t, sched.Config{Logger: quietLogger()}, 5)
	if !e.Alive(time.Hour) {
		t.Error("engine in its first transaction not alive within an hour")
	}
	time.Sleep(30 * time.Millisecond)
	if e.Alive(10 * time.Millisecond) {
		t.Error("engine stuck in a transaction for 30 ms counted alive within 10 ms")
	}
	close(g.release)
	if err := e.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond)
	if !e.Alive(10 * time.Millisecond) {
		t.Error("paused engine not counted alive")
	}
	e.Resume()
}

// TestServeInlineRefusedWhilePaused: a paused engine lends its transport to
// nobody, not even an idle-path caller.
func TestServeInlineRefusedWhilePaused(t *testing.T) {
	ft := &fakeTransport{}
	e := sched.New(ft, sched.Config{Logger: quietLogger()})
	defer e.Close()
	if err := e.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	rc := newRecorder()
	r := rc.request(1, sched.LaneNormal, 1, far())
	if e.ServeInline(r) {
		t.Fatal("ServeInline served a request on a paused engine")
	}
	if n := ft.calls.Load(); n != 0 {
		t.Fatalf("transport called %d times while paused", n)
	}
	e.Resume()
}
