package watchdog

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/cuse/cusetest"
	"github.com/ipmi-cuse/ipmi-cuse/internal/ioc"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// TestIoctls covers the generic watchdog API's answers (Config.GenericAPI);
// TestIoctlsKernel covers ipmi_watchdog's.
func TestIoctls(t *testing.T) {
	type check func(t *testing.T, w *Watchdog, e *fakeEngine, arg []byte)
	intIs := func(want int32) check {
		return func(t *testing.T, _ *Watchdog, _ *fakeEngine, arg []byte) {
			t.Helper()
			if got, _ := DecodeInt(arg); got != want {
				t.Errorf("int written %d, want %d", got, want)
			}
		}
	}
	sentCmds := func(want ...byte) check {
		return func(t *testing.T, _ *Watchdog, e *fakeEngine, _ []byte) {
			t.Helper()
			if got := e.cmds(); !bytes.Equal(got, want) {
				t.Errorf("commands % x, want % x", got, want)
			}
		}
	}
	lastSet := func(want ...byte) check {
		return func(t *testing.T, _ *Watchdog, e *fakeEngine, _ []byte) {
			t.Helper()
			if got := e.lastSet(t); !bytes.Equal(got, want) {
				t.Errorf("Set data % x, want % x", got, want)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		setup  func(w *Watchdog, e *fakeEngine, f *cusetest.Kernel, ff any)
		cmd    uint32
		arg    []byte // initial user memory at Arg (nil: 4 zero bytes)
		errno  syscall.Errno
		rounds int
		checks []check
	}{
		{name: "GETSUPPORT", cmd: IoctlGetSupport, arg: make([]byte, 40), rounds: 2, checks: []check{
			func(t *testing.T, _ *Watchdog, _ *fakeEngine, arg []byte) {
				info, _ := DecodeInfo(arg)
				if info.Options != 0x8380 || info.FirmwareVersion != 1 || string(info.Identity[:5]) != "IPMI\x00" {
					t.Errorf("info %+v", info)
				}
			}, sentCmds()}},
		{name: "GETSTATUS fresh", cmd: IoctlGetStatus, arg: []byte{0xff, 0xff, 0xff, 0xff}, rounds: 2, checks: []check{intIs(0)}},
		{name: "GETBOOTSTATUS clean", cmd: IoctlGetBootStatus, rounds: 2, checks: []check{intIs(0), sentCmds(CmdGetWatchdog)}},
		{name: "GETBOOTSTATUS card reset", cmd: IoctlGetBootStatus, rounds: 2,
			setup: func(_ *Watchdog, e *fakeEngine, _ *cusetest.Kernel, _ any) {
				e.getData = []byte{0x04, 0x01, 0, 0x10, 100, 0, 0, 0}
			}, checks: []check{intIs(OptCardReset)}},
		{name: "GETTEMP", cmd: IoctlGetTemp, errno: syscall.ENOTTY, rounds: 1},
		{name: "unknown", cmd: IOC(ioc.Read, 'W', 11, 4), errno: syscall.ENOTTY, rounds: 1},
		{name: "IPMI ioctl", cmd: 0x8028690d, errno: syscall.ENOTTY, rounds: 1},
		{name: "KEEPALIVE starts", cmd: IoctlKeepalive, rounds: 1,
			checks: []check{sentCmds(CmdSetWatchdog, CmdResetWatchdog), lastSet(0x44, 0x31, 2, 0, 100, 0)}},
		{name: "SETOPTIONS enable", cmd: IoctlSetOptions, arg: EncodeInt(SetOptEnableCard), rounds: 2,
			checks: []check{sentCmds(CmdSetWatchdog, CmdResetWatchdog), lastSet(0x44, 0x31, 2, 0, 100, 0)}},
		{name: "SETOPTIONS disable", cmd: IoctlSetOptions, arg: EncodeInt(SetOptDisableCard), rounds: 2,
			checks: []check{sentCmds(CmdSetWatchdog), lastSet(0x04, 0, 0, 0, 100, 0)}},
		{name: "SETOPTIONS none", cmd: IoctlSetOptions, arg: EncodeInt(0), rounds: 2, checks: []check{sentCmds()}},
		{name: "SETTIMEOUT", cmd: IoctlSetTimeout, arg: EncodeInt(30), rounds: 2,
			checks: []check{intIs(30), sentCmds(CmdSetWatchdog), lastSet(0x04, 0, 0, 0, 0x2C, 0x01),
				func(t *testing.T, w *Watchdog, _ *fakeEngine, _ []byte) {
					if w.st.timeout != 30*time.Second || w.st.pretimeout != 2*time.Second {
						t.Errorf("settings %v/%v", w.st.timeout, w.st.pretimeout)
					}
				}}},
		{name: "SETTIMEOUT running restarts", cmd: IoctlSetTimeout, arg: EncodeInt(60), rounds: 2,
			setup: func(w *Watchdog, e *fakeEngine, _ *cusetest.Kernel, _ any) {
				w.opMu.Lock()
				_ = w.startLocked(context.Background())
				w.opMu.Unlock()
				e.reset()
			}, checks: []check{intIs(60), sentCmds(CmdSetWatchdog), lastSet(0x44, 0x31, 2, 0, 0x58, 0x02)}},
		{name: "SETTIMEOUT drops pretimeout", cmd: IoctlSetTimeout, arg: EncodeInt(2), rounds: 2,
			checks: []check{intIs(2), func(t *testing.T, w *Watchdog, _ *fakeEngine, _ []byte) {
				if w.st.pretimeout != 0 {
					t.Errorf("pretimeout %v, want 0", w.st.pretimeout)
				}
			}}},
		{name: "SETTIMEOUT zero", cmd: IoctlSetTimeout, arg: EncodeInt(0), errno: syscall.EINVAL, rounds: 2, checks: []check{sentCmds()}},
		{name: "SETTIMEOUT negative", cmd: IoctlSetTimeout, arg: EncodeInt(-5), errno: syscall.EINVAL, rounds: 2},
		{name: "SETTIMEOUT too long", cmd: IoctlSetTimeout, arg: EncodeInt(6554), errno: syscall.EINVAL, rounds: 2},
		{name: "SETTIMEOUT BMC refuses", cmd: IoctlSetTimeout, arg: EncodeInt(20), errno: syscall.EINVAL, rounds: 2,
			setup: func(_ *Watchdog, e *fakeEngine, _ *cusetest.Kernel, _ any) { e.setCC = 0xCC }},
		{name: "SETTIMEOUT engine timeout", cmd: IoctlSetTimeout, arg: EncodeInt(20), errno: syscall.EIO, rounds: 2,
			setup: func(_ *Watchdog, e *fakeEngine, _ *cusetest.Kernel, _ any) { e.reqErr = sched.ErrDeadline }},
		{name: "GETTIMEOUT", cmd: IoctlGetTimeout, rounds: 2, checks: []check{intIs(10), sentCmds()}},
		{name: "SETPRETIMEOUT", cmd: IoctlSetPretimeout, arg: EncodeInt(5), rounds: 2,
			checks: []check{intIs(5), lastSet(0x04, 0, 0, 0, 100, 0), func(t *testing.T, w *Watchdog, _ *fakeEngine, _ []byte) {
				if w.st.pretimeout != 5*time.Second {
					t.Errorf("pretimeout %v", w.st.pretimeout)
				}
			}}},
		{name: "SETPRETIMEOUT not below timeout", cmd: IoctlSetPretimeout, arg: EncodeInt(10), errno: syscall.EINVAL, rounds: 2, checks: []check{sentCmds()}},
		{name: "SETPRETIMEOUT negative", cmd: IoctlSetPretimeout, arg: EncodeInt(-1), errno: syscall.EINVAL, rounds: 2},
		{name: "GETPRETIMEOUT", cmd: IoctlGetPretimeout, rounds: 2, checks: []check{intIs(2)}},
		{name: "GETTIMELEFT", cmd: IoctlGetTimeLeft, rounds: 2,
			setup: func(_ *Watchdog, e *fakeEngine, _ *cusetest.Kernel, _ any) {
				e.getData = []byte{0x44, 0x31, 2, 0, 100, 0, 0x4B, 0x00} // 75 × 100 ms
			}, checks: []check{intIs(7), sentCmds(CmdGetWatchdog)}},
		{name: "GETTIMELEFT BMC error", cmd: IoctlGetTimeLeft, errno: syscall.EINVAL, rounds: 2,
			setup: func(_ *Watchdog, e *fakeEngine, _ *cusetest.Kernel, _ any) { e.getCC, e.getData = 0xC1, []byte{} }},
		{name: "GETTIMELEFT short response", cmd: IoctlGetTimeLeft, errno: syscall.EIO, rounds: 2,
			setup: func(_ *Watchdog, e *fakeEngine, _ *cusetest.Kernel, _ any) { e.getData = []byte{0x44} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, e, _ := newTest(t, func(c *Config) { c.GenericAPI = true })
			k := newKernel(t)
			f := open(t, w)
			defer f.Release()
			if tc.setup != nil {
				tc.setup(w, e, k, f)
			}
			arg := tc.arg
			if arg == nil {
				arg = make([]byte, 4)
			}
			errno := k.Ioctl(context.Background(), f, tc.cmd, mapArg(k, arg), 0)
			if errno != tc.errno {
				t.Fatalf("errno %v, want %v", errno, tc.errno)
			}
			if k.Rounds != tc.rounds {
				t.Errorf("rounds %d, want %d", k.Rounds, tc.rounds)
			}
			for _, c := range tc.checks {
				c(t, w, e, arg)
			}
			for _, r := range e.all() {
				if r.lane != sched.LanePriority || r.owner != 7 || r.deadline.IsZero() {
					t.Errorf("request % x: lane %v owner %d deadline %v", r.msg, r.lane, r.owner, r.deadline)
				}
			}
		})
	}
}

func TestGetStatusBits(t *testing.T) {
	w, _, _ := newTest(t, func(c *Config) { c.GenericAPI = true })
	k := newKernel(t)
	f := open(t, w)
	defer f.Release()
	status := func() int32 {
		t.Helper()
		b := make([]byte, 4)
		if errno := k.Ioctl(context.Background(), f, IoctlGetStatus, mapArg(k, b), 0); errno != 0 {
			t.Fatal(errno)
		}
		v, _ := DecodeInt(b)
		return v
	}
	if _, errno := f.Write(context.Background(), []byte("V")); errno != 0 {
		t.Fatal(errno)
	}
	if got := status(); got != OptMagicClose|OptKeepalivePing {
		t.Fatalf("status after write V %#x, want MAGICCLOSE|KEEPALIVEPING", got)
	}
	if got := status(); got != OptMagicClose {
		t.Fatalf("status again %#x, want MAGICCLOSE only (ping bit clears on read)", got)
	}
}

func TestMagicClose(t *testing.T) {
	for _, tc := range []struct {
		name     string
		nowayout bool
		writes   []string
		stopped  bool
		warned   bool
	}{
		{"V stops", false, []string{"V"}, true, false},
		{"V among other bytes", false, []string{"xxVxx"}, true, false},
		{"V then plain write rearms nothing", false, []string{"V", "x"}, false, true},
		{"no V keeps running", false, []string{"1"}, false, true},
		{"nowayout ignores V", true, []string{"V"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, e, logs := newTest(t, func(c *Config) { c.NoWayOut = tc.nowayout })
			f := open(t, w)
			for _, s := range tc.writes {
				n, errno := f.Write(context.Background(), []byte(s))
				if errno != 0 || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v", s, n, errno)
				}
			}
			if c := e.cmds(); c[0] != CmdSetWatchdog || c[1] != CmdResetWatchdog {
				t.Fatalf("first write sent % x, want Set then Reset", c)
			}
			e.reset()
			f.Release()
			if tc.stopped {
				if got := e.cmds(); !bytes.Equal(got, []byte{CmdSetWatchdog}) {
					t.Fatalf("close sent % x, want one Set", got)
				}
				if s := e.lastSet(t); s[0] != 0x04 {
					t.Fatalf("close Set timer use %#x, want 0x04 (stop)", s[0])
				}
				if w.Stats().Running {
					t.Fatal("still running after magic close")
				}
			} else {
				if got := e.cmds(); !bytes.Equal(got, []byte{CmdResetWatchdog}) {
					t.Fatalf("close sent % x, want one Reset (heartbeat)", got)
				}
				if !w.Stats().Running {
					t.Fatal("stopped without magic close")
				}
			}
			if got := len(logs.find("unexpected close")) > 0; got != tc.warned {
				t.Fatalf("unexpected-close log %v, want %v", got, tc.warned)
			}
			// The timer is free again.
			f2 := open(t, w)
			f2.Release()
		})
	}
}

func TestCloseWithoutStartStartsTimer(t *testing.T) {
	// As the kernel: close without 'V' heartbeats, and the first heartbeat
	// after open starts the timer.
	w, e, _ := newTest(t, nil)
	f := open(t, w)
	f.Release()
	if got := e.cmds(); !bytes.Equal(got, []byte{CmdSetWatchdog, CmdResetWatchdog}) {
		t.Fatalf("close sent % x, want Set, Reset", got)
	}
}

func TestWriteEmptyAndErrors(t *testing.T) {
	w, e, _ := newTest(t, nil)
	f := open(t, w)
	defer f.Release()
	if n, errno := f.Write(context.Background(), nil); n != 0 || errno != 0 || len(e.cmds()) != 0 {
		t.Fatalf("write(0) = %d, %v, sent % x", n, errno, e.cmds())
	}
	if _, errno := f.Write(context.Background(), []byte("x")); errno != 0 {
		t.Fatal(errno)
	}
	e.mu.Lock()
	e.resetCCs = []byte{0xC0}
	e.mu.Unlock()
	if _, errno := f.Write(context.Background(), []byte("x")); errno != syscall.EINVAL {
		t.Fatalf("Reset CC 0xC0: errno %v, want EINVAL", errno)
	}
	e.mu.Lock()
	e.submitErr = sched.ErrClosed
	e.mu.Unlock()
	if _, errno := f.Write(context.Background(), []byte("x")); errno != syscall.EIO {
		t.Fatalf("engine closed: errno %v, want EIO", errno)
	}
}

func TestOneOpener(t *testing.T) {
	w, _, _ := newTest(t, nil)
	f := open(t, w)
	if _, errno := w.Open(context.Background(), 0); errno != syscall.EBUSY {
		t.Fatalf("second open: %v, want EBUSY", errno)
	}
	if err := w.Run(context.Background()); !errors.Is(err, ErrBusy) {
		t.Fatalf("Run while open: %v, want ErrBusy", err)
	}
	f.Release()
	f = open(t, w)
	f.Release()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	eventually(t, "Run to claim the timer", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.user == userBuiltin
	})
	if _, errno := w.Open(context.Background(), 0); errno != syscall.EBUSY {
		t.Fatalf("open while Run: %v, want EBUSY", errno)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	open(t, w).Release()
}

func TestRead(t *testing.T) {
	t.Run("nonblock EAGAIN", func(t *testing.T) {
		w, _, _ := newTest(t, giveData)
		f := open(t, w)
		defer f.Release()
		if n, errno := f.Read(context.Background(), make([]byte, 8), true); n != 0 || errno != syscall.EAGAIN {
			t.Fatalf("Read = %d, %v, want EAGAIN", n, errno)
		}
	})
	t.Run("zero length", func(t *testing.T) {
		w, _, _ := newTest(t, giveData)
		f := open(t, w)
		defer f.Release()
		if n, errno := f.Read(context.Background(), nil, false); n != 0 || errno != 0 {
			t.Fatalf("Read(0) = %d, %v", n, errno)
		}
	})
	t.Run("blocks until pretimeout, one byte each", func(t *testing.T) {
		w, _, _ := newTest(t, giveData)
		f := open(t, w)
		defer f.Release()
		var returned atomic.Bool
		type res struct {
			n     int
			errno syscall.Errno
			b     byte
		}
		done := make(chan res, 1)
		go func() {
			dst := []byte{0xAA, 0xAA}
			n, errno := f.Read(context.Background(), dst, false)
			returned.Store(true)
			done <- res{n, errno, dst[0]}
		}()
		time.Sleep(20 * time.Millisecond)
		if returned.Load() {
			t.Fatal("Read returned before any pretimeout")
		}
		w.Pretimeout()
		r := <-done
		if r.n != 1 || r.errno != 0 || r.b != 0 {
			t.Fatalf("Read = %d, %v, byte %#x; want 1 byte 0", r.n, r.errno, r.b)
		}
		if n, errno := f.Read(context.Background(), make([]byte, 1), true); errno != syscall.EAGAIN {
			t.Fatalf("second read = %d, %v; want EAGAIN (one read per pretimeout)", n, errno)
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		w, _, _ := newTest(t, giveData)
		f := open(t, w)
		defer f.Release()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan syscall.Errno, 1)
		go func() {
			_, errno := f.Read(ctx, make([]byte, 1), false)
			done <- errno
		}()
		cancel()
		if errno := <-done; errno != syscall.EINTR {
			t.Fatalf("errno %v, want EINTR", errno)
		}
	})
	t.Run("pretimeout before open forgotten", func(t *testing.T) {
		w, _, _ := newTest(t, giveData)
		w.Pretimeout()
		f := open(t, w)
		defer f.Release()
		if _, errno := f.Read(context.Background(), make([]byte, 1), true); errno != syscall.EAGAIN {
			t.Fatalf("errno %v, want EAGAIN", errno)
		}
	})
}

func TestPoll(t *testing.T) {
	w, _, _ := newTest(t, giveData)
	f := open(t, w)
	defer f.Release()
	var wakes atomic.Int32
	if got := f.Poll(func() { wakes.Add(1) }); got != 0 {
		t.Fatalf("Poll = %#x, want 0", got)
	}
	w.Pretimeout()
	if wakes.Load() != 1 {
		t.Fatalf("wake called %d times, want 1", wakes.Load())
	}
	if got := f.Poll(nil); got != pollIn|pollRdNorm {
		t.Fatalf("Poll after pretimeout = %#x, want POLLIN|POLLRDNORM", got)
	}
	w.Pretimeout() // wake was one-shot and not re-armed
	if wakes.Load() != 1 {
		t.Fatalf("wake called %d times after a second pretimeout, want 1", wakes.Load())
	}
	if n, errno := f.Read(context.Background(), make([]byte, 1), true); n != 1 || errno != 0 {
		t.Fatalf("Read = %d, %v", n, errno)
	}
	if got := f.Poll(nil); got != 0 {
		t.Fatalf("Poll after read = %#x, want 0", got)
	}
}

func TestRearmOn0x80(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ccs   []byte
		errno syscall.Errno
		cmds  []byte
	}{
		{"one re-arm", []byte{0x80}, 0, []byte{0x22, 0x24, 0x22}},
		{"three re-arms", []byte{0x80, 0x80, 0x80}, 0, []byte{0x22, 0x24, 0x22, 0x24, 0x22, 0x24, 0x22}},
		{"gives up after three", []byte{0x80, 0x80, 0x80, 0x80}, syscall.EIO, []byte{0x22, 0x24, 0x22, 0x24, 0x22, 0x24, 0x22}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, e, _ := newTest(t, nil)
			k := newKernel(t)
			f := open(t, w)
			defer f.Release()
			if errno := k.Ioctl(context.Background(), f, IoctlKeepalive, mapArg(k, make([]byte, 4)), 0); errno != 0 {
				t.Fatal(errno)
			}
			e.reset()
			e.mu.Lock()
			e.resetCCs = tc.ccs
			e.mu.Unlock()
			if errno := k.Ioctl(context.Background(), f, IoctlKeepalive, mapArg(k, make([]byte, 4)), 0); errno != tc.errno {
				t.Fatalf("errno %v, want %v", errno, tc.errno)
			}
			if got := e.cmds(); !bytes.Equal(got, tc.cmds) {
				t.Fatalf("commands % x, want % x", got, tc.cmds)
			}
			if s := e.lastSet(t); !bytes.Equal(s, []byte{0x44, 0x31, 2, 0, 100, 0}) {
				t.Fatalf("re-arm Set % x", s)
			}
		})
	}
}

func TestHeartbeatAfterPretimeoutResendsSet(t *testing.T) {
	for _, ipmi10 := range []bool{false, true} {
		name := "ipmi 1.5"
		want := []byte{CmdSetWatchdog}
		if ipmi10 {
			name, want = "ipmi 1.0", []byte{CmdSetWatchdog, CmdResetWatchdog}
		}
		t.Run(name, func(t *testing.T) {
			w, e, logs := newTest(t, func(c *Config) { c.IPMI10 = ipmi10 })
			f := open(t, w)
			defer f.Release()
			if _, errno := f.Write(context.Background(), []byte("x")); errno != 0 {
				t.Fatal(errno)
			}
			w.Pretimeout()
			e.reset()
			if _, errno := f.Write(context.Background(), []byte("x")); errno != 0 {
				t.Fatal(errno)
			}
			if got := e.cmds(); !bytes.Equal(got, want) {
				t.Fatalf("heartbeat after pretimeout sent % x, want % x", got, want)
			}
			e.reset()
			if _, errno := f.Write(context.Background(), []byte("x")); errno != 0 {
				t.Fatal(errno)
			}
			if got := e.cmds(); !bytes.Equal(got, []byte{CmdResetWatchdog}) {
				t.Fatalf("next heartbeat sent % x, want a bare Reset", got)
			}
			recs := logs.find("pretimeout")
			if len(recs) != 1 || recs[0].level.String() != "ERROR" || recs[0].attrs["since_last_pat"] == "" {
				t.Fatalf("pretimeout log %+v, want one error line with since_last_pat", recs)
			}
			if w.Stats().Pretimeouts != 1 {
				t.Fatalf("Pretimeouts = %d", w.Stats().Pretimeouts)
			}
		})
	}
}

func TestSetOptionsNowayoutGeneric(t *testing.T) {
	w, e, _ := newTest(t, func(c *Config) { c.NoWayOut, c.GenericAPI = true, true })
	k := newKernel(t)
	f := open(t, w)
	defer f.Release()
	if errno := k.Ioctl(context.Background(), f, IoctlSetOptions, mapArg(k, EncodeInt(SetOptEnableCard)), 0); errno != 0 {
		t.Fatal(errno)
	}
	e.reset()
	if errno := k.Ioctl(context.Background(), f, IoctlSetOptions, mapArg(k, EncodeInt(SetOptDisableCard)), 0); errno != syscall.EBUSY {
		t.Fatalf("DISABLECARD under nowayout: %v, want EBUSY", errno)
	}
	if len(e.cmds()) != 0 || !w.Stats().Running {
		t.Fatalf("sent % x, running %v", e.cmds(), w.Stats().Running)
	}
}

func TestKeepaliveAfterDisableIsNoop(t *testing.T) {
	w, e, _ := newTest(t, nil)
	k := newKernel(t)
	f := open(t, w)
	defer f.Release()
	if errno := k.Ioctl(context.Background(), f, IoctlSetOptions, mapArg(k, EncodeInt(SetOptDisableCard)), 0); errno != 0 {
		t.Fatal(errno)
	}
	e.reset()
	if errno := k.Ioctl(context.Background(), f, IoctlKeepalive, mapArg(k, make([]byte, 4)), 0); errno != 0 {
		t.Fatal(errno)
	}
	if len(e.cmds()) != 0 {
		t.Fatalf("keepalive on a disabled timer sent % x (a Reset would start it)", e.cmds())
	}
}

func TestBootStatusCached(t *testing.T) {
	w, e, _ := newTest(t, func(c *Config) { c.GenericAPI = true })
	k := newKernel(t)
	f := open(t, w)
	defer f.Release()
	for range 3 {
		if errno := k.Ioctl(context.Background(), f, IoctlGetBootStatus, mapArg(k, make([]byte, 4)), 0); errno != 0 {
			t.Fatal(errno)
		}
	}
	if got := e.cmds(); !bytes.Equal(got, []byte{CmdGetWatchdog}) {
		t.Fatalf("sent % x, want one Get", got)
	}
}

// giveData is the kernel's preop_give_data.
func giveData(c *Config) { c.PreOp = PreOpGiveData }
