package ioctl

import (
	"sync"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// fakeEngine stands in for sched: it records requests and completes them
// either inside Submit (sync) or when the test says so.
type fakeEngine struct {
	mu      sync.Mutex
	sync    bool
	reply   func(*sched.Request) // fills Resp/Err; nil = echo a CC 0 reply
	err     error                // returned by Submit when set
	pending []*sched.Request
	seen    []*sched.Request
}

func okReply(r *sched.Request) {
	r.Resp = append(r.Resp[:0], r.Msg[0]|4, r.Msg[1], 0x00)
}

func (e *fakeEngine) Submit(r *sched.Request) error {
	e.mu.Lock()
	if e.err != nil {
		e.mu.Unlock()
		return e.err
	}
	e.seen = append(e.seen, r)
	if !e.sync {
		e.pending = append(e.pending, r)
		e.mu.Unlock()
		return nil
	}
	e.mu.Unlock()
	e.finish(r)
	return nil
}

func (e *fakeEngine) finish(r *sched.Request) {
	if e.reply != nil {
		e.reply(r)
	} else {
		okReply(r)
	}
	r.Done(r)
}

// completeAll completes every pending request, in order.
func (e *fakeEngine) completeAll() int {
	e.mu.Lock()
	p := e.pending
	e.pending = nil
	e.mu.Unlock()
	for _, r := range p {
		e.finish(r)
	}
	return len(p)
}

func (e *fakeEngine) last(t *testing.T) *sched.Request {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.seen) == 0 {
		t.Fatal("no request reached the engine")
	}
	return e.seen[len(e.seen)-1]
}

func (e *fakeEngine) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen)
}
