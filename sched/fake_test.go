package sched_test

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// errFakeTimeout is what the fake transport returns for a silent BMC, shaped
// like kcs timeouts: it wraps os.ErrDeadlineExceeded.
var errFakeTimeout = fmt.Errorf("fake transport: BMC did not answer: %w", os.ErrDeadlineExceeded)

// fakeTransport answers every message with completion code 0 and echoes the
// request data. hook, if set, runs first (on the engine goroutine) and may
// block or return an error to simulate a slow or dead BMC.
type fakeTransport struct {
	hook func(call int, msg []byte) error

	calls atomic.Int64
	mu    sync.Mutex
	seen  [][]byte // copies of every message, in transport order
}

func (f *fakeTransport) Transact(msg, resp []byte, deadline time.Time) ([]byte, error) {
	n := int(f.calls.Add(1))
	f.mu.Lock()
	f.seen = append(f.seen, append([]byte(nil), msg...))
	f.mu.Unlock()
	if f.hook != nil {
		if err := f.hook(n, msg); err != nil {
			return resp[:0], err
		}
	}
	resp = append(resp[:0], msg[0]|1<<2, msg[1], 0)
	return append(resp, msg[2:]...), nil
}

// gate blocks the first transaction until released, so tests can fill the
// queues while the engine is busy.
type gate struct {
	entered chan struct{}
	release chan struct{}
}

// heldEngine starts an engine on a gated fake transport and submits one
// normal request from owner, returning once the transport holds it: the
// engine is busy, so whatever a test submits next queues behind exactly one
// transaction in flight until the test closes g.release. The engine is
// closed when the test ends. The transport is returned for its counters.
func heldEngine(t *testing.T, cfg sched.Config, owner sched.Owner) (*gate, *fakeTransport, *sched.Engine, *recorder) {
	t.Helper()
	g := newGate()
	ft := &fakeTransport{hook: g.hook}
	e := sched.New(ft, cfg)
	t.Cleanup(func() { e.Close() })
	rc := newRecorder()
	if err := rc.submit(e, rc.request(owner, sched.LaneNormal, 0, far())); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	return g, ft, e, rc
}

func newGate() *gate {
	return &gate{entered: make(chan struct{}), release: make(chan struct{})}
}

// hook blocks call 1 until release is closed.
func (g *gate) hook(call int, _ []byte) error {
	if call == 1 {
		close(g.entered)
		<-g.release
	}
	return nil
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// recorder collects completions and counts Done calls per request.
type recorder struct {
	mu    sync.Mutex
	order []*sched.Request
	count map[*sched.Request]int
	all   sync.WaitGroup
}

func newRecorder() *recorder { return &recorder{count: make(map[*sched.Request]int)} }

func (rc *recorder) done(r *sched.Request) {
	rc.mu.Lock()
	rc.order = append(rc.order, r)
	rc.count[r]++
	first := rc.count[r] == 1
	rc.mu.Unlock()
	if first {
		rc.all.Done()
	}
}

// request builds a request tagged with (owner, seq) in its data bytes.
func (rc *recorder) request(owner sched.Owner, lane sched.Lane, seq int, deadline time.Time) *sched.Request {
	return &sched.Request{
		Owner:    owner,
		Lane:     lane,
		Deadline: deadline,
		Msg:      []byte{0x06 << 2, 0x22, byte(owner), byte(seq), byte(seq >> 8)},
		Resp:     make([]byte, 0, 16),
		Done:     rc.done,
	}
}

// submit submits r and, on success, expects one Done call.
func (rc *recorder) submit(e *sched.Engine, r *sched.Request) error {
	rc.all.Add(1)
	err := e.Submit(r)
	if err != nil {
		rc.all.Done()
	}
	return err
}

func (rc *recorder) snapshot() []*sched.Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*sched.Request(nil), rc.order...)
}

// waitAll waits for every accepted request's first Done, or fails after d.
func (rc *recorder) waitAll(d time.Duration) bool {
	ch := make(chan struct{})
	go func() { rc.all.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}
