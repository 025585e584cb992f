package watchdog

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/cuse/cusetest"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// sent is one request as the fake engine saw it.
type sent struct {
	owner    sched.Owner
	lane     sched.Lane
	deadline time.Time
	msg      []byte
}

// fakeEngine answers watchdog commands synchronously, inside Submit (the
// engine may call Done before Submit returns).
type fakeEngine struct {
	mu        sync.Mutex
	reqs      []sent
	resetCCs  []byte // completion codes for successive Resets; 0 once used up
	setCC     byte
	getCC     byte
	getData   []byte // Get Watchdog Timer data; default a stopped timer
	reqErr    error  // set as Request.Err on every request
	submitErr error  // returned by Submit
	onSubmit  func(*sched.Request)
}

func (e *fakeEngine) Submit(r *sched.Request) error {
	e.mu.Lock()
	if e.submitErr != nil {
		e.mu.Unlock()
		return e.submitErr
	}
	e.reqs = append(e.reqs, sent{r.Owner, r.Lane, r.Deadline, append([]byte(nil), r.Msg...)})
	hook := e.onSubmit
	var cc byte
	var data []byte
	switch r.Msg[1] {
	case CmdResetWatchdog:
		if len(e.resetCCs) > 0 {
			cc, e.resetCCs = e.resetCCs[0], e.resetCCs[1:]
		}
	case CmdSetWatchdog:
		cc = e.setCC
	case CmdGetWatchdog:
		cc = e.getCC
		data = e.getData
		if data == nil {
			data = []byte{0x04, 0x01, 0, 0, 100, 0, 100, 0}
		}
	}
	reqErr := e.reqErr
	e.mu.Unlock()
	if hook != nil {
		hook(r)
	}
	r.Resp = append(r.Resp[:0], r.Msg[0]|4, r.Msg[1], cc)
	r.Resp = append(r.Resp, data...)
	r.Err = reqErr
	r.Done(r)
	return nil
}

// cmds returns the command bytes sent so far, in order.
func (e *fakeEngine) cmds() []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	var c []byte
	for _, r := range e.reqs {
		c = append(c, r.msg[1])
	}
	return c
}

// all returns a copy of every request sent.
func (e *fakeEngine) all() []sent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]sent(nil), e.reqs...)
}

// lastSet returns the data bytes of the last Set Watchdog Timer.
func (e *fakeEngine) lastSet(t *testing.T) []byte {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.reqs) - 1; i >= 0; i-- {
		if e.reqs[i].msg[1] == CmdSetWatchdog {
			return e.reqs[i].msg[2:]
		}
	}
	t.Fatal("no Set Watchdog Timer was sent")
	return nil
}

func (e *fakeEngine) reset() {
	e.mu.Lock()
	e.reqs = nil
	e.mu.Unlock()
}

// logRec is one captured log record.
type logRec struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

// logCapture is a slog.Handler that keeps records for assertions.
type logCapture struct {
	mu   sync.Mutex
	recs []logRec
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	rec := logRec{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	r.Attrs(func(a slog.Attr) bool { rec.attrs[a.Key] = a.Value.String(); return true })
	c.mu.Lock()
	c.recs = append(c.recs, rec)
	c.mu.Unlock()
	return nil
}
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCapture) WithGroup(string) slog.Handler      { return c }

// find returns the records whose message contains s.
func (c *logCapture) find(s string) []logRec {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRec
	for _, r := range c.recs {
		if strings.Contains(r.msg, s) {
			out = append(out, r)
		}
	}
	return out
}

// newTest returns a Watchdog over a fake engine with a log capture.
func newTest(t *testing.T, mod func(*Config)) (*Watchdog, *fakeEngine, *logCapture) {
	t.Helper()
	e := &fakeEngine{}
	logs := &logCapture{}
	cfg := Config{
		Submit:     e.Submit,
		Owner:      7,
		Timeout:    10 * time.Second,
		Pretimeout: 2 * time.Second,
		Action:     ActionReset,
		PreAction:  PreMsgInt,
		Logger:     slog.New(logs),
	}
	if mod != nil {
		mod(&cfg)
	}
	w, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w, e, logs
}

// argBase is where the fake process keeps the ioctl argument.
const argBase = 0x7000_0000

// newKernel returns a fake kernel (cuse/cusetest) that fails the test when
// an ioctl takes more than 4 rounds; every WDIOC command needs at most 2.
func newKernel(t *testing.T) *cusetest.Kernel {
	k := cusetest.NewKernel(t, nil)
	k.MaxRounds = 4
	return k
}

// mapArg maps b at argBase in k's memory (kept, so writes show in b) and
// returns argBase, the ioctl argument.
func mapArg(k *cusetest.Kernel, b []byte) uint64 {
	k.Mem.Map(argBase, b)
	return argBase
}

// open opens the device or fails the test.
func open(t *testing.T, w *Watchdog) cuse.File {
	t.Helper()
	f, errno := w.Open(context.Background(), syscall.O_RDWR)
	if errno != 0 {
		t.Fatalf("Open: %v", errno)
	}
	return f
}

// eventually polls cond until it holds or a generous bound passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// discard is a logger that drops everything.
func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
