// Package portwait is the wait shared by the transports that poll a BMC's
// register (kcs, bt): after each poll that did not find what it waits for,
// a Wait decides whether to poll again at once (the spin), to sleep first
// (exponential backoff), or to give up (the deadline passed). Most BMCs
// take a byte in a few µs, so the short spin answers a fast BMC without a
// sleep, and the backoff keeps a slow BMC from costing a CPU.
//
// The package knows nothing about registers or conditions: the transport
// polls, tests and builds its own errors; a Wait only keeps time.
package portwait

import (
	"sync/atomic"
	"time"
)

// Policy is how a wait polls.
type Policy struct {
	// Spin is how long a wait polls without sleeping, from its first miss.
	Spin time.Duration
	// MinSleep is the first sleep after the spin; each further sleep in
	// the same wait doubles, up to MaxSleep.
	MinSleep, MaxSleep time.Duration
	// Limit, when positive, ends a wait Limit after its first miss if the
	// caller's deadline has not ended it first.
	Limit time.Duration
}

// Counters count the sleeps of the waits that share them. They may be read
// from any goroutine while a wait runs.
type Counters struct {
	Sleeps     atomic.Uint64 // sleeps between polls
	SleepNanos atomic.Uint64 // total time asked to sleep, in ns
}

// Wait is the state of one wait; its zero value is a wait that has not
// missed yet. It is not safe for concurrent use (one goroutine polls).
//
// A wait's policy, deadline and counters are Pause's arguments rather than
// fields, so a wait whose condition holds at the first poll costs nothing:
// no clock read and no set-up, as when each transport had its own loop.
type Wait struct {
	spinEnd time.Time // zero until the first miss
	dl      time.Time // the caller's deadline, or the Limit if earlier
	backoff time.Duration
}

// Pause is called after each poll that did not find the condition, with
// the same p, dl and c throughout one wait; sleeps are counted in c. It
// reports false, at once, when the wait's deadline (dl, or p.Limit after
// the first miss if that is earlier) has passed: the caller then gives up
// with the value it last read. Otherwise it returns true at once while the
// spin lasts, or after a sleep (the next backoff step, cut short at the
// deadline), and the caller polls again.
func (w *Wait) Pause(p Policy, dl time.Time, c *Counters) bool {
	now := time.Now()
	if w.spinEnd.IsZero() {
		w.spinEnd, w.dl, w.backoff = now.Add(p.Spin), dl, p.MinSleep
		if p.Limit > 0 {
			if ldl := now.Add(p.Limit); ldl.Before(dl) {
				w.dl = ldl
			}
		}
	}
	if !now.Before(w.dl) {
		return false
	}
	if now.Before(w.spinEnd) {
		return true
	}
	d := w.backoff
	if rem := w.dl.Sub(now); rem < d {
		d = rem
	}
	c.Sleeps.Add(1)
	c.SleepNanos.Add(uint64(d))
	sleep(d)
	if w.backoff *= 2; w.backoff > p.MaxSleep {
		w.backoff = p.MaxSleep
	}
	return true
}
