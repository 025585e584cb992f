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
}

// Counters count the sleeps of the waits that share them. They may be read
// from any goroutine while a wait runs.
type Counters struct {
	Sleeps     atomic.Uint64 // sleeps between polls
	SleepNanos atomic.Uint64 // total time asked to sleep, in ns
}

// Wait is one wait in progress; Policy.Start makes one. It is not safe for
// concurrent use (one goroutine polls).
type Wait struct {
	p       Policy
	c       *Counters
	dl      time.Time     // the caller's deadline
	limit   time.Duration // bound from the first miss; 0: none
	spinEnd time.Time     // zero until the first miss
	backoff time.Duration
}

// Start begins a wait that ends at dl or, when limit is positive, limit
// after its first miss, whichever comes first. Sleeps are counted in c. It
// reads no clock, so a wait whose condition holds at the first poll costs
// nothing but the poll.
func (p Policy) Start(dl time.Time, limit time.Duration, c *Counters) Wait {
	return Wait{p: p, c: c, dl: dl, limit: limit, backoff: p.MinSleep}
}

// Pause is called after each poll that did not find the condition. It
// reports false, at once, when the wait's deadline has passed: the caller
// then gives up with the value it last read. Otherwise it returns true at
// once while the spin lasts, or after a sleep (the next backoff step, cut
// short at the deadline), and the caller polls again.
func (w *Wait) Pause() bool {
	now := time.Now()
	if w.spinEnd.IsZero() {
		w.spinEnd = now.Add(w.p.Spin)
		if w.limit > 0 {
			if ldl := now.Add(w.limit); ldl.Before(w.dl) {
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
	w.c.Sleeps.Add(1)
	w.c.SleepNanos.Add(uint64(d))
	sleep(d)
	if w.backoff *= 2; w.backoff > w.p.MaxSleep {
		w.backoff = w.p.MaxSleep
	}
	return true
}
