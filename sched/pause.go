package sched

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrPaused is returned (wrapped) by Pause when the engine is already
// paused or pausing.
var ErrPaused = errors.New("sched: engine already paused")

// pauseState is one Pause: held is closed once the engine goroutine has
// stopped, resume releases it.
type pauseState struct {
	held   chan struct{}
	resume chan struct{}
}

// Pause lets the engine serve every request already queued, then holds its
// goroutine: from then on nothing reaches the transport (no request, no
// attention check or turn, no idle work, no probe) until Resume. Submit
// still queues; those requests wait for Resume. For a hand-over of the
// hardware to another process: once Pause returns, every Done of a request
// submitted before has run. If ctx ends first, Pause resumes the engine and
// returns the context's error.
func (e *Engine) Pause(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return fmt.Errorf("sched: pause: %w", ErrClosed)
	}
	if e.pause != nil {
		e.mu.Unlock()
		return fmt.Errorf("sched: pause: %w", ErrPaused)
	}
	p := &pauseState{held: make(chan struct{}), resume: make(chan struct{})}
	e.pause = p
	e.mu.Unlock()
	e.kick()
	select {
	case <-p.held:
		return nil
	case <-ctx.Done():
		e.Resume()
		e.mu.Lock()
		queued := e.prio.n + e.nNormal + e.fifo.n
		e.mu.Unlock()
		return fmt.Errorf("sched: pause: %d requests still queued: %w", queued, ctx.Err())
	}
}

// Resume ends a Pause (or a Pause still waiting for the queue to drain).
func (e *Engine) Resume() {
	e.mu.Lock()
	p := e.pause
	e.pause = nil
	e.mu.Unlock()
	if p != nil {
		close(p.resume)
	}
}

// idleLocked reports whether no request is queued; mu held.
func (e *Engine) idleLocked() bool {
	return e.prio.n == 0 && e.nNormal == 0 && e.fifo.n == 0
}

// holdLocked parks the engine goroutine until Resume or Close; it is
// called with mu held and returns with it released.
func (e *Engine) holdLocked() {
	p := e.pause
	e.mu.Unlock()
	close(p.held)
	select {
	case <-p.resume:
	case <-e.stop:
	}
}

// kick wakes the engine goroutine if it waits.
func (e *Engine) kick() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Alive reports whether the engine goroutine went round its loop within
// the last d, or is parked by Pause: a supervisor's watchdog (systemd's
// WatchdogSec=) is fed only while this holds, so a wedged engine gets the
// daemon restarted. With Config.Attention set the loop turns at least every
// AttentionInterval even when idle; a transaction holds it for at most the
// transport's bound.
func (e *Engine) Alive(d time.Duration) bool {
	e.mu.Lock()
	paused := e.pause != nil
	e.mu.Unlock()
	return paused || time.Since(time.Unix(0, e.lastTurn.Load())) <= d
}
