package sched

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"time"
)

// What the engine observes of the requests it completes, for operators
// (the metrics package reads it on scrape): completions by lane and by the
// completion code the client receives, time queued and time at the BMC as
// histograms, BMC health transitions, and the BMC watchdog commands that
// pass through the engine whoever sends them (a /dev/ipmi0 client, the
// built-in patter, /dev/watchdog), so a patter's health shows without
// knowing which patter it is. Everything is an atomic updated on the engine
// goroutine with no allocation; readers take no lock.

// LatencyBuckets are the upper bounds of the engine's latency histograms:
// from 25 µs (a fast KCS transaction) to 120 s (beyond any request
// timeout), so both ends resolve.
var LatencyBuckets = []time.Duration{
	25 * time.Microsecond, 50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond,
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second, 30 * time.Second, 60 * time.Second, 120 * time.Second,
}

// histogram counts durations into LatencyBuckets (plus one overflow bucket).
type histogram struct {
	counts [22]atomic.Uint64 // len(LatencyBuckets)+1; non-cumulative
	sum    atomic.Int64      // nanoseconds
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(LatencyBuckets) && d > LatencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

// HistogramSnapshot is a histogram read at one moment.
type HistogramSnapshot struct {
	// Buckets[i] counts observations <= LatencyBuckets[i] (cumulative, as
	// Prometheus wants them).
	Buckets []uint64
	// Count is the number of observations; Sum their total.
	Count uint64
	Sum   time.Duration
}

func (h *histogram) snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Buckets: make([]uint64, len(LatencyBuckets))}
	var c uint64
	for i := range h.counts {
		c += h.counts[i].Load()
		if i < len(LatencyBuckets) {
			s.Buckets[i] = c
		}
	}
	s.Count = c
	s.Sum = time.Duration(h.sum.Load())
	return s
}

// Completion codes the engine reports for requests that got no response,
// as the ioctl layer gives them to clients.
const (
	// CCTimeout is reported for a request whose deadline passed, queued or
	// at the BMC (the kernel's IPMI_TIMEOUT_ERR).
	CCTimeout = 0xC3
	// CCUnspecified is reported for any other failure.
	CCUnspecified = 0xFF
)

// laneObs is what the engine observes per lane.
type laneObs struct {
	byCC   [256]atomic.Uint64
	queued histogram
	bmc    histogram
}

// observations is the engine's observation state.
type observations struct {
	lanes      [2]laneObs
	healthDown atomic.Uint64
	healthUp   atomic.Uint64

	wdPats      atomic.Uint64
	wdSets      atomic.Uint64
	wdGets      atomic.Uint64
	wdLastPat   atomic.Int64 // Unix nanoseconds, 0: never
	wdTimeout   atomic.Int64 // initial countdown from the last Set/Get, ns; -1: unknown
	wdRemaining atomic.Int64 // present countdown from the last Get, ns; -1: unknown
	wdReadAt    atomic.Int64 // Unix nanoseconds of that Get
	wdRunning   atomic.Int32 // -1 unknown, 0 stopped, 1 running
}

func (o *observations) init() {
	o.wdTimeout.Store(-1)
	o.wdRemaining.Store(-1)
	o.wdRunning.Store(-1)
}

// laneIndex maps a lane to its slot; anything unknown counts as normal.
func laneIndex(l Lane) int {
	if l == LanePriority {
		return 1
	}
	return 0
}

// observe records a completed request: its completion code, how long it
// waited in the queue (submitted to start) and, if it reached the
// transport, how long it spent there (start to now). start is zero when
// it never reached the transport.
func (o *observations) observe(r *Request, start, now time.Time) {
	lo := &o.lanes[laneIndex(r.Lane)]
	cc := byte(CCUnspecified)
	switch {
	case r.Err == nil && len(r.Resp) >= 3:
		cc = r.Resp[2]
	case r.Err != nil && isTimeout(r.Err):
		cc = CCTimeout
	}
	lo.byCC[cc].Add(1)
	if !r.submitted.IsZero() {
		end := now
		if !start.IsZero() {
			end = start
			lo.bmc.observe(now.Sub(start))
		}
		lo.queued.observe(end.Sub(r.submitted))
	}
	if r.Err == nil && cc == 0 && len(r.Msg) >= 2 && r.Msg[0]>>2 == netFnApp {
		o.watchdogCommand(r.Msg, r.Resp, now)
	}
}

const (
	netFnApp            = 0x06
	cmdResetWatchdog    = 0x22
	cmdSetWatchdog      = 0x24
	cmdGetWatchdog      = 0x25
	watchdogDontStop    = 0x40 // Timer Use byte: don't stop (Set) / running (Get)
	watchdogCountdownNs = int64(100 * time.Millisecond)
)

// watchdogCommand follows the BMC watchdog timer from the commands it
// accepted (IPMI v2.0 §27.5-27.7).
func (o *observations) watchdogCommand(msg, resp []byte, now time.Time) {
	switch msg[1] {
	case cmdResetWatchdog:
		o.wdPats.Add(1)
		o.wdLastPat.Store(now.UnixNano())
		o.wdRunning.Store(1)
	case cmdSetWatchdog:
		if len(msg) < 2+6 {
			return
		}
		o.wdSets.Add(1)
		o.wdTimeout.Store(int64(uint16(msg[2+4])|uint16(msg[2+5])<<8) * watchdogCountdownNs)
		if msg[2]&watchdogDontStop != 0 {
			// A running timer restarts from the new countdown (a stopped
			// one stays stopped until the next Reset).
			if o.wdRunning.Load() == 1 {
				o.wdLastPat.Store(now.UnixNano())
			}
		} else {
			o.wdRunning.Store(0)
		}
	case cmdGetWatchdog:
		if len(resp) < 3+8 {
			return
		}
		o.wdGets.Add(1)
		d := resp[3:]
		o.wdTimeout.Store(int64(uint16(d[4])|uint16(d[5])<<8) * watchdogCountdownNs)
		o.wdRemaining.Store(int64(uint16(d[6])|uint16(d[7])<<8) * watchdogCountdownNs)
		o.wdReadAt.Store(now.UnixNano())
		if d[0]&watchdogDontStop != 0 {
			o.wdRunning.Store(1)
		} else {
			o.wdRunning.Store(0)
		}
	}
}

// Observations is a snapshot of what the engine observed.
type Observations struct {
	// Lanes is indexed by lane: [0] normal, [1] priority.
	Lanes [2]LaneObservations
	// HealthDown and HealthUp count transitions of the BMC's health to
	// unresponsive and back.
	HealthDown, HealthUp uint64
	// Watchdog is the BMC watchdog timer as seen through the engine.
	Watchdog WatchdogObservations
}

// LaneObservations are one lane's completions and latencies.
type LaneObservations struct {
	// ByCC counts completed requests by the completion code their client
	// receives: the response's, CCTimeout for a deadline that passed
	// (queued or at the BMC), CCUnspecified for other failures.
	ByCC [256]uint64
	// Queued is the time from Submit to the transport (or to completion
	// for requests that never reached it); AtBMC the time at the transport.
	Queued, AtBMC HistogramSnapshot
}

// WatchdogObservations follow the BMC watchdog from the commands the BMC
// accepted through the engine.
type WatchdogObservations struct {
	// Pats, Sets and Gets count accepted Reset, Set and Get Watchdog Timer
	// commands.
	Pats, Sets, Gets uint64
	// LastPat is the last accepted Reset (or Set restarting a running
	// timer); zero if none.
	LastPat time.Time
	// Timeout is the initial countdown of the last Set or Get; Remaining
	// the present countdown of the last Get, read at ReadAt. Negative when
	// unknown.
	Timeout, Remaining time.Duration
	ReadAt             time.Time
	// Running is 1 while the timer is known to run, 0 stopped, -1 unknown.
	Running int
}

// Observations returns a snapshot of what the engine observed. It takes no
// lock.
func (e *Engine) Observations() Observations {
	o := &e.obs
	var s Observations
	for i := range o.lanes {
		lo := &o.lanes[i]
		for cc := range lo.byCC {
			s.Lanes[i].ByCC[cc] = lo.byCC[cc].Load()
		}
		s.Lanes[i].Queued = lo.queued.snapshot()
		s.Lanes[i].AtBMC = lo.bmc.snapshot()
	}
	s.HealthDown, s.HealthUp = o.healthDown.Load(), o.healthUp.Load()
	w := &s.Watchdog
	w.Pats, w.Sets, w.Gets = o.wdPats.Load(), o.wdSets.Load(), o.wdGets.Load()
	if t := o.wdLastPat.Load(); t != 0 {
		w.LastPat = time.Unix(0, t)
	}
	w.Timeout = time.Duration(o.wdTimeout.Load())
	w.Remaining = time.Duration(o.wdRemaining.Load())
	if t := o.wdReadAt.Load(); t != 0 {
		w.ReadAt = time.Unix(0, t)
	}
	w.Running = int(o.wdRunning.Load())
	return s
}

// isTimeout reports whether err is a timeout the way the ioctl layer
// decides it gives the client 0xC3.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
