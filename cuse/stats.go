package cuse

import "sync/atomic"

// opSlots bounds the opcodes counted one by one; anything from
// opSlots-1 up shares the last slot.
const opSlots = 64

// opCounters count the requests a Server read, by FUSE opcode.
type opCounters struct {
	n [opSlots]atomic.Uint64
}

func (c *opCounters) count(op uint32) {
	if op >= opSlots-1 {
		op = opSlots - 1
	}
	c.n[op].Add(1)
}

// counters are the channel's system calls and notifications, cheap atomics
// behind Stats.
type counters struct {
	reads, writes, notifications atomic.Uint64
}

// Stats is a snapshot of a Server's counters.
type Stats struct {
	// Requests counts the requests read from the channel by opcode name
	// (OPEN, READ, WRITE, RELEASE, IOCTL, POLL, INTERRUPT, ...; "other"
	// for opcodes from 63 up), malformed ones included; CUSE_INIT, read
	// before serving starts, is not counted.
	Requests map[string]uint64
	// OpenFiles is the number of files open on the device now.
	OpenFiles int
	// Reads is the number of read(2) calls on the channel, including
	// those that returned no request (EAGAIN, EINTR) and CUSE_INIT's.
	Reads uint64
	// Writes is the number of messages written: replies and notifications.
	Writes uint64
	// Notifications is the number of FUSE_NOTIFY_POLL wake-ups written.
	Notifications uint64
}

// Stats returns a snapshot of the counters. It holds the server's lock
// only to count its open files.
func (s *Server) Stats() Stats {
	st := Stats{Requests: map[string]uint64{},
		Reads: s.c.reads.Load(), Writes: s.c.writes.Load(), Notifications: s.c.notifications.Load()}
	for op := range s.ops.n {
		if v := s.ops.n[op].Load(); v > 0 {
			name := "other"
			if op < opSlots-1 {
				name = opName(uint32(op))
			}
			st.Requests[name] += v
		}
	}
	s.mu.Lock()
	st.OpenFiles = len(s.files)
	s.mu.Unlock()
	return st
}

// RequestsTotal is the number of requests read, all opcodes together.
func (st Stats) RequestsTotal() uint64 {
	var n uint64
	for _, v := range st.Requests {
		n += v
	}
	return n
}
