package bmcsim

import (
	"sync"
	"time"
)

// Stopper cancels a callback scheduled with Clock.AfterFunc.
type Stopper interface {
	// Stop prevents the callback from running; it reports whether it did.
	Stop() bool
}

// Clock is the BMC's sense of time. All BMC timing (watchdog countdown,
// satellite delays, SEL timestamps) goes through it so tests can run time
// faster (ScaledClock) or by hand (ManualClock).
type Clock interface {
	// Now returns the BMC's present time.
	Now() time.Time
	// AfterFunc runs f in its own goroutine once d of BMC time has passed.
	AfterFunc(d time.Duration, f func()) Stopper
}

// ScaledClock is wall-clock time running Scale times faster: one real
// second is Scale BMC seconds. Scale <= 1 means real time.
type ScaledClock struct {
	scale float64
	base  time.Time
}

// NewScaledClock returns a clock that runs scale times faster than real
// time, starting at the present wall-clock time.
func NewScaledClock(scale float64) *ScaledClock {
	if scale <= 1 {
		scale = 1
	}
	return &ScaledClock{scale: scale, base: time.Now()}
}

// Now returns base + scale × (real time elapsed since the clock started).
func (c *ScaledClock) Now() time.Time {
	el := time.Since(c.base)
	return c.base.Add(time.Duration(float64(el) * c.scale))
}

// AfterFunc schedules f after d of scaled time (d/scale of real time).
func (c *ScaledClock) AfterFunc(d time.Duration, f func()) Stopper {
	return time.AfterFunc(time.Duration(float64(d)/c.scale), f)
}

// ManualClock is a Clock that moves only when Advance is called. Tests use
// it to step the watchdog deterministically.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

type manualTimer struct {
	c    *ManualClock
	when time.Time
	f    func()
	dead bool
}

// NewManualClock returns a clock standing at start.
func NewManualClock(start time.Time) *ManualClock { return &ManualClock{now: start} }

// Now returns the clock's present time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc registers f to run when Advance moves the clock past now+d.
func (c *ManualClock) AfterFunc(d time.Duration, f func()) Stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &manualTimer{c: c, when: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

// Stop cancels the timer.
func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.dead
	t.dead = true
	return was
}

// Advance moves the clock forward by d, running (synchronously, in due
// order, each at its own deadline) every callback that falls due.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		var next *manualTimer
		for _, t := range c.timers {
			if !t.dead && !t.when.After(end) && (next == nil || t.when.Before(next.when)) {
				next = t
			}
		}
		if next == nil {
			break
		}
		next.dead = true
		if next.when.After(c.now) {
			c.now = next.when
		}
		c.mu.Unlock()
		next.f()
		c.mu.Lock()
	}
	c.now = end
	live := c.timers[:0]
	for _, t := range c.timers {
		if !t.dead {
			live = append(live, t)
		}
	}
	c.timers = live
	c.mu.Unlock()
}
