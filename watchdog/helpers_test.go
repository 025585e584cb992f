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

// userMem is a fake process address space for the ioctl retry protocol.
type userMem struct {
	regions map[uint64][]byte
}

func (m *userMem) span(base, n uint64) ([]byte, bool) {
	for rb, r := range m.regions {
		if base >= rb && base+n >= base && base+n <= rb+uint64(len(r)) {
			return r[base-rb : base-rb+n], true
		}
	}
	return nil, false
}

const argBase = 0x7000_0000

// fakeKernel runs the unrestricted ioctl protocol of fs/fuse/ioctl.c
// against a cuse.File, serving iovecs from a userMem.
type fakeKernel struct {
	t      *testing.T
	mem    *userMem
	rounds int
}

func newKernel(t *testing.T) *fakeKernel {
	return &fakeKernel{t: t, mem: &userMem{regions: map[uint64][]byte{}}}
}

// arg maps b at argBase (kept, so writes show in b) and returns argBase.
func (k *fakeKernel) arg(b []byte) uint64 {
	k.mem.regions = map[uint64][]byte{argBase: b}
	return argBase
}

// ioctl performs one ioctl(2) and returns the errno the caller sees.
func (k *fakeKernel) ioctl(ctx context.Context, f cuse.File, cmd uint32, arg uint64) syscall.Errno {
	k.t.Helper()
	in := &cuse.IoctlIn{Cmd: cmd, Arg: arg, Flags: 0x2}
	var outIovs []cuse.Iovec
	for k.rounds = 1; ; k.rounds++ {
		if k.rounds > 4 {
			k.t.Fatalf("ioctl %#x: no progress after 4 rounds", cmd)
		}
		out := f.Ioctl(ctx, in)
		if !out.Retry {
			if out.Errno != 0 {
				return out.Errno
			}
			if uint32(len(out.Out)) > in.OutSize {
				return syscall.EIO
			}
			rest := out.Out
			for _, iov := range outIovs {
				n := min(uint64(len(rest)), iov.Len)
				dst, ok := k.mem.span(iov.Base, n)
				if !ok {
					return syscall.EFAULT
				}
				copy(dst, rest[:n])
				rest = rest[n:]
			}
			if out.Result < 0 {
				return syscall.Errno(-out.Result)
			}
			return 0
		}
		var payload []byte
		var outTotal uint64
		for _, iov := range out.InIovs {
			src, ok := k.mem.span(iov.Base, iov.Len)
			if !ok {
				return syscall.EFAULT
			}
			payload = append(payload, src...)
		}
		for _, iov := range out.OutIovs {
			if iov.Len == 0 {
				k.t.Errorf("ioctl %#x: zero-length out iovec", cmd)
			}
			outTotal += iov.Len
		}
		outIovs = out.OutIovs
		in = &cuse.IoctlIn{Cmd: cmd, Arg: arg, Flags: 0x2, In: payload, OutSize: uint32(outTotal)}
	}
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
