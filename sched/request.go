// Package sched is the single engine that owns the BMC transport: callers
// queue requests on a lane, and one goroutine serves them one at a time,
// priority lane first, round-robin across owners within the normal lane, with
// a deadline on every request.
//
// # Threads
//
// One transaction runs at a time, and whoever runs it holds the engine: its
// own goroutine, or a caller of ServeInline. ServeInline runs a request on
// the caller's goroutine only when the engine goroutine would take it next
// anyway (nothing in flight or queued, BMC healthy, no attention work due,
// the last transaction fast), so the priority lane and round-robin see the
// same order either way; a priority request that arrives meanwhile waits
// for that one transaction, as it would behind the engine's own. In the
// daemon the caller is the CUSE reader: an idle BMC's request is read, sent
// to the hardware, answered and queued for the client on one goroutine,
// with no hand-off; under load, or when the BMC is slow, requests queue
// for the engine goroutine as before, and the reader keeps reading.
//
// Nothing is locked to an OS thread for this. A transport whose access
// belongs to one thread (x86 in/out needs iopl, which Linux grants per
// thread) must make it every thread's: kcs raises iopl on all threads at
// once (syscall.AllThreadsSyscall, inherited by threads created later), and
// the daemon uses ServeInline only when its transport says it may be
// called from any goroutine (kcs.Host.AnyThread). Measured in the VM
// (make bench-vm, issue 11): with the engine's goroutine locked to the iopl
// thread, ipmi-cuse on the emulated KCS made 36 context switches per round
// trip against 19 with the simulated BMC, which needs no thread; with every
// thread holding iopl and an idle BMC's request served on the reader, both
// made the same. A CUSE reader locked to a thread of its own, outside
// the netpoller, cost more than it saved (72 switches per round trip): with
// one CPU, a thread blocked in a system call keeps the runtime's only P
// until sysmon takes it back, and every other goroutine waits for that.
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
