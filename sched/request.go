// Package sched is the single engine that owns the BMC transport: callers
// queue requests on a lane, and one goroutine serves them one at a time,
// priority lane first, round-robin across owners within the normal lane, with
// a deadline on every request.
package sched

import "time"

// Lane selects the queue a request waits in.
type Lane uint8

const (
	// LaneNormal is for application requests; served round-robin by owner.
	LaneNormal Lane = iota
	// LanePriority is for watchdog requests; always served before LaneNormal.
	LanePriority
)

// Owner identifies who submitted a request (an open file, the built-in
// watchdog, ...). Fairness within the normal lane is per owner.
type Owner uint64

// Request is one IPMI system-interface message for the engine.
//
// The engine calls Done exactly once, from the engine goroutine (or, for
// ServeInline, from its caller's), after it has filled Resp and Err; Done
// must not block. The caller must not touch the
// Request between Submit and Done.
type Request struct {
	// Owner is the fairness key.
	Owner Owner
	// Lane is the queue to wait in.
	Lane Lane
	// Deadline is when the caller stops caring; a request still queued at
	// its deadline completes with a timeout without touching the hardware.
	Deadline time.Time
	// Msg is the request as sent on KCS: netfn<<2|lun, cmd, data...
	Msg []byte
	// Resp receives the response: netfn<<2|lun, cmd, completion code,
	// data... The engine appends to Resp[:0], so a caller that passes a
	// buffer with capacity for the largest response avoids allocation.
	Resp []byte
	// Err is nil when Resp holds a response from the BMC, else the reason
	// there is none (deadline passed, BMC unresponsive, transport error,
	// engine closed).
	Err error
	// Done is called exactly once when the request is complete.
	Done func(*Request)

	// submitted is when Submit queued it (for the queue-time histogram).
	submitted time.Time
}
