package msghandler

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/kcsbmc"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl/iotest"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// waitLong bounds every wait for something asynchronous; generous for a
// loaded 2-core machine. Tests assert outcomes, never durations.
const waitLong = 20 * time.Second

// recTransport records every message the engine sends and can stand in for
// the BMC on chosen commands.
type recTransport struct {
	t        sched.Transport
	override func(msg, resp []byte) ([]byte, bool) // optional

	mu   sync.Mutex
	seen [][]byte
}

func (r *recTransport) Transact(msg, resp []byte, dl time.Time) ([]byte, error) {
	r.mu.Lock()
	r.seen = append(r.seen, append([]byte(nil), msg...))
	r.mu.Unlock()
	if r.override != nil {
		if out, ok := r.override(msg, resp); ok {
			return out, nil
		}
	}
	return r.t.Transact(msg, resp, dl)
}

// sent returns the recorded messages with netfn/cmd.
func (r *recTransport) sent(netfn, cmd uint8) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]byte
	for _, m := range r.seen {
		if m[0]>>2 == netfn && m[1] == cmd {
			out = append(out, m)
		}
	}
	return out
}

// warnCounter is a slog handler that counts warnings.
type warnCounter struct {
	n atomic.Int64
}

func (w *warnCounter) Enabled(context.Context, slog.Level) bool { return true }
func (w *warnCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		w.n.Add(1)
	}
	return nil
}
func (w *warnCounter) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnCounter) WithGroup(string) slog.Handler      { return w }

// stack is the real in-process stack: simulated BMC behind KCS registers,
// the KCS host, the engine with the attention hooks, the device and the
// handler.
type stack struct {
	t     *testing.T
	bmc   *bmcsim.BMC
	host  *kcs.Host
	rec   *recTransport
	eng   *sched.Engine
	dev   *ioctl.Device
	h     *Handler
	warns *warnCounter
	atn   bool // the engine handles ATN with the BMC's real SMS_ATN
}

type stackOpts struct {
	noAttention bool // no ATN hooks: only polling finds events
	bmc         bmcsim.Config
	override    func(msg, resp []byte) ([]byte, bool)
	autoTick    time.Duration // 0: ticks only by hand (h.tick)
	attention   func() bool   // replaces the KCS SMS_ATN check
	onPretime   func()
}

func newStack(t *testing.T, o stackOpts) *stack {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.bmc.Logger == nil {
		o.bmc.Logger = quiet
	}
	s := &stack{t: t, warns: &warnCounter{}, atn: !o.noAttention && o.attention == nil}
	s.bmc = bmcsim.New(o.bmc)
	s.host = kcs.New(kcsbmc.New(s.bmc), kcs.Config{WaitTimeout: 2 * time.Second, TransactionTimeout: 5 * time.Second, Logger: quiet})
	s.rec = &recTransport{t: s.host, override: o.override}
	tick := o.autoTick
	if tick == 0 {
		tick = time.Hour
	}
	s.h = New(Config{Logger: slog.New(s.warns), TickInterval: tick, OnPretimeout: o.onPretime})
	scfg := sched.Config{Logger: quiet, AttentionInterval: 2 * time.Millisecond}
	if !o.noAttention {
		scfg.Attention = AttentionCheck(s.host)
		if o.attention != nil {
			scfg.Attention = o.attention
		}
		scfg.OnAttention = s.h.HandleAttention
	}
	s.eng = sched.New(s.rec, scfg)
	s.dev = ioctl.NewDevice(ioctl.Config{Submit: s.eng.Submit, Bridge: s.h, Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := s.h.Start(ctx, s.eng.Submit, s.dev); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		s.h.Close()
		s.eng.Close()
	})
	return s
}

func (s *stack) open() *iotest.Client {
	s.t.Helper()
	f, errno := s.dev.Open(context.Background(), 0)
	if errno != 0 {
		s.t.Fatalf("open: %v", errno)
	}
	return iotest.NewClient(f)
}

func owner(c *iotest.Client) sched.Owner { return c.F.(*ioctl.File).Owner() }

// waitFor polls cond until it holds or fails the test after waitLong.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// receive waits for one message on c.
func receive(t *testing.T, c *iotest.Client) iotest.Received {
	t.Helper()
	var got iotest.Received
	waitFor(t, "a message", func() bool {
		var errno syscall.Errno
		got, errno = c.Receive()
		if errno != 0 && errno != syscall.EAGAIN {
			t.Fatalf("receive: %v", errno)
		}
		return errno == 0
	})
	return got
}

// settle lets the engine finish what is queued and the BMC's attention
// drain: the BMC shows no flag (when the engine handles ATN), and a request
// submitted now completes (so anything submitted before it has too).
func (s *stack) settle() {
	s.t.Helper()
	if s.atn {
		waitFor(s.t, "BMC attention to clear", func() bool { return !s.bmc.Attention() })
	}
	done := make(chan struct{})
	r := &sched.Request{Owner: 7, Deadline: time.Now().Add(waitLong), Msg: []byte{netFnApp << 2, cmdGetDeviceID},
		Resp: make([]byte, 0, 32), Done: func(*sched.Request) { close(done) }}
	if err := s.eng.Submit(r); err != nil {
		s.t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(waitLong):
		s.t.Fatal("engine did not drain")
	}
}

// slotArmed reports whether every in-use slot of owner has had its Send
// Message reply (its real retry timer runs), and how many slots it has.
func (s *stack) slotsArmed(o sched.Owner) (n int, armed bool) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	armed = true
	for i := range s.h.seq {
		e := &s.h.seq[i]
		if e.inUse && e.owner == o {
			n++
			if e.timeoutMs > e.retryMs {
				armed = false
			}
		}
	}
	return n, armed
}

// waitArmed waits until owner's slots all run their retry timer.
func (s *stack) waitArmed(o sched.Owner) {
	s.t.Helper()
	waitFor(s.t, "Send Message replies", func() bool { _, ok := s.slotsArmed(o); return ok })
}

func ipmbAddr(ch int16, sa, lun uint8) []byte {
	return ioctl.IPMBAddr{AddrType: ioctl.IPMBAddrType, Channel: ch, SlaveAddr: sa, LUN: lun}.Encode()
}
