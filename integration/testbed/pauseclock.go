package testbed

import (
	"sync"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
)

// PausableClock is a bmcsim.Clock on wall-clock time that can be paused:
// while paused its time stands still and no callback runs; on Resume the
// pending callbacks run after what was left of their delays. It models a
// BMC whose firmware is stuck ("out to lunch"): its watchdog does not count
// down while it answers nothing, so the only watchdog events are the ones
// that happen while the BMC answers.
type PausableClock struct {
	mu       sync.Mutex
	base     time.Time     // wall time the clock started
	paused   time.Duration // total time spent paused before pausedAt
	pausedAt time.Time     // zero when running
	timers   map[*pauseTimer]struct{}
}

type pauseTimer struct {
	c    *PausableClock
	when time.Time // clock time it falls due
	f    func()
	t    *time.Timer // nil while the clock is paused
}

// NewPausableClock returns a running clock starting at the present
// wall-clock time.
func NewPausableClock() *PausableClock {
	return &PausableClock{base: time.Now(), timers: map[*pauseTimer]struct{}{}}
}

// Now returns the wall-clock time less the time spent paused.
func (c *PausableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *PausableClock) nowLocked() time.Time {
	if !c.pausedAt.IsZero() {
		return c.pausedAt.Add(-c.paused)
	}
	return time.Now().Add(-c.paused)
}

// AfterFunc runs f in its own goroutine once d of clock time has passed.
func (c *PausableClock) AfterFunc(d time.Duration, f func()) bmcsim.Stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &pauseTimer{c: c, when: c.nowLocked().Add(d), f: f}
	c.timers[t] = struct{}{}
	if c.pausedAt.IsZero() {
		t.start(d)
	}
	return t
}

// start arms the wall-clock timer; c.mu is held.
func (t *pauseTimer) start(d time.Duration) {
	t.t = time.AfterFunc(d, func() {
		c := t.c
		c.mu.Lock()
		if _, live := c.timers[t]; !live || !c.pausedAt.IsZero() {
			c.mu.Unlock() // stopped, or paused after it fired: Resume re-arms it
			return
		}
		delete(c.timers, t)
		c.mu.Unlock()
		t.f()
	})
}

// Stop cancels the callback; it reports whether it was still pending.
func (t *pauseTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	_, live := t.c.timers[t]
	delete(t.c.timers, t)
	if t.t != nil {
		t.t.Stop()
	}
	return live
}

// Pause stops the clock and holds every pending callback.
func (c *PausableClock) Pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.pausedAt.IsZero() {
		return
	}
	c.pausedAt = time.Now()
	for t := range c.timers {
		if t.t != nil {
			t.t.Stop()
			t.t = nil
		}
	}
}

// Resume restarts the clock where it stood and re-arms the pending
// callbacks with what was left of their delays.
func (c *PausableClock) Resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pausedAt.IsZero() {
		return
	}
	c.paused += time.Since(c.pausedAt)
	c.pausedAt = time.Time{}
	now := c.nowLocked()
	for t := range c.timers {
		t.start(max(0, t.when.Sub(now)))
	}
}

// Paused reports whether the clock is paused.
func (c *PausableClock) Paused() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.pausedAt.IsZero()
}

var _ bmcsim.Clock = (*PausableClock)(nil)
