package watchdog

import (
	"bytes"
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// TestRegisterSends pins the exact commands ipmi_watchdog's registration
// sends, per parameter set: a stop Set (0x04: SMS/OS, no "don't stop", no
// "don't log"; action and pre-action none; pretimeout 0; no expiration
// flag cleared; the timeout) or, with start_now, a running Set followed by
// a Reset (IPMI ≥ 1.5: "don't stop"; IPMI 1.0: a Set stops, the Reset
// starts it).
func TestRegisterSends(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mod     func(*Config)
		cmds    []byte
		set     []byte
		running bool
	}{
		{"default stops", nil, []byte{CmdSetWatchdog}, []byte{0x04, 0x00, 0, 0, 100, 0}, false},
		{"default stops, pretimeout not sent", func(c *Config) { c.Pretimeout, c.PreAction = 5*time.Second, PreMsgInt },
			[]byte{CmdSetWatchdog}, []byte{0x04, 0x00, 0, 0, 100, 0}, false},
		{"timeout 300 stops", func(c *Config) { c.Timeout = 300 * time.Second },
			[]byte{CmdSetWatchdog}, []byte{0x04, 0x00, 0, 0, 0xB8, 0x0B}, false},
		{"nowayout still stops", func(c *Config) { c.NoWayOut = true },
			[]byte{CmdSetWatchdog}, []byte{0x04, 0x00, 0, 0, 100, 0}, false},
		{"start_now", func(c *Config) { c.StartNow = true },
			[]byte{CmdSetWatchdog, CmdResetWatchdog}, []byte{0x44, 0x01, 0, 0, 100, 0}, true},
		{"start_now pretimeout msg-int", func(c *Config) { c.StartNow, c.Pretimeout, c.PreAction = true, 5*time.Second, PreMsgInt },
			[]byte{CmdSetWatchdog, CmdResetWatchdog}, []byte{0x44, 0x31, 5, 0, 100, 0}, true},
		{"start_now pretimeout without pre-action", func(c *Config) { c.StartNow, c.Pretimeout = true, 5*time.Second },
			[]byte{CmdSetWatchdog, CmdResetWatchdog}, []byte{0x44, 0x01, 5, 0, 100, 0}, true},
		{"start_now power cycle", func(c *Config) { c.StartNow, c.Action = true, ActionPowerCycle },
			[]byte{CmdSetWatchdog, CmdResetWatchdog}, []byte{0x44, 0x03, 0, 0, 100, 0}, true},
		{"start_now action none stays stopped", func(c *Config) { c.StartNow, c.Action = true, ActionNone },
			[]byte{CmdSetWatchdog}, []byte{0x04, 0x00, 0, 0, 100, 0}, false},
		{"start_now IPMI 1.0", func(c *Config) { c.StartNow, c.IPMI10 = true, true },
			[]byte{CmdSetWatchdog, CmdResetWatchdog}, []byte{0x04, 0x01, 0, 0, 100, 0}, true},
		{"IPMI 1.0 stops", func(c *Config) { c.IPMI10 = true },
			[]byte{CmdSetWatchdog}, []byte{0x04, 0x00, 0, 0, 100, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, e, _ := newTest(t, func(c *Config) {
				c.Pretimeout, c.PreAction = 0, PreNone
				if tc.mod != nil {
					tc.mod(c)
				}
			})
			if err := w.Register(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := e.cmds(); !bytes.Equal(got, tc.cmds) {
				t.Fatalf("commands % x, want % x", got, tc.cmds)
			}
			if got := e.lastSet(t); !bytes.Equal(got, tc.set) {
				t.Fatalf("Set data % x, want % x", got, tc.set)
			}
			if got := w.Stats().Running; got != tc.running {
				t.Fatalf("running %v, want %v", got, tc.running)
			}
		})
	}
}

func TestRegisterError(t *testing.T) {
	w, e, _ := newTest(t, nil)
	e.setCC = 0xCC
	if err := w.Register(context.Background()); err == nil {
		t.Fatal("Register: no error for a refused Set")
	}
}

// TestActionNoneIsStopped: as ipmi_watchdog, the device's start with
// action none sends a stopping Set and never a Reset, so the timer does
// not run; the generic API and the built-in patter run it.
func TestActionNoneIsStopped(t *testing.T) {
	for _, generic := range []bool{false, true} {
		w, e, _ := newTest(t, func(c *Config) { c.Action, c.GenericAPI = ActionNone, generic })
		f := open(t, w)
		if _, errno := f.Write(context.Background(), []byte("x")); errno != 0 {
			t.Fatal(errno)
		}
		if _, errno := f.Write(context.Background(), []byte("x")); errno != 0 {
			t.Fatal(errno)
		}
		want := []byte{CmdSetWatchdog}
		if generic {
			want = []byte{CmdSetWatchdog, CmdResetWatchdog, CmdResetWatchdog}
		}
		if got := e.cmds(); !bytes.Equal(got, want) || w.Stats().Running != generic {
			t.Errorf("generic %v: sent % x (running %v), want % x", generic, got, w.Stats().Running, want)
		}
		f.Release()
	}
}

// TestIoctlsKernel: the answers ipmi_watchdog gives where the generic API
// differs.
func TestIoctlsKernel(t *testing.T) {
	ctx := context.Background()
	t.Run("GETSUPPORT identity", func(t *testing.T) {
		w, _, _ := newTest(t, nil)
		k := newKernel(t)
		f := open(t, w)
		defer f.Release()
		b := make([]byte, SizeofInfo)
		if errno := k.Ioctl(ctx, f, IoctlGetSupport, mapArg(k, b), 0); errno != 0 {
			t.Fatal(errno)
		}
		info, _ := DecodeInfo(b)
		want := Info{Options: 0, FirmwareVersion: 1}
		copy(want.Identity[:], "IPMI")
		if info != want {
			t.Fatalf("info %+v, want %+v", info, want)
		}
	})
	t.Run("GETSTATUS always 0", func(t *testing.T) {
		w, _, _ := newTest(t, nil)
		k := newKernel(t)
		f := open(t, w)
		defer f.Release()
		if _, errno := f.Write(ctx, []byte("V")); errno != 0 {
			t.Fatal(errno)
		}
		b := []byte{0xff, 0xff, 0xff, 0xff}
		if errno := k.Ioctl(ctx, f, IoctlGetStatus, mapArg(k, b), 0); errno != 0 {
			t.Fatal(errno)
		}
		if v, _ := DecodeInt(b); v != 0 {
			t.Fatalf("status %#x, want 0", v)
		}
	})
	for _, cmd := range []uint32{IoctlGetBootStatus, IoctlGetTimeLeft, IoctlGetTemp} {
		w, e, _ := newTest(t, nil)
		k := newKernel(t)
		f := open(t, w)
		if errno := k.Ioctl(ctx, f, cmd, mapArg(k, make([]byte, 4)), 0); errno != syscall.ENOTTY || k.Rounds != 1 || len(e.cmds()) != 0 {
			t.Errorf("ioctl %#x: %v in %d rounds, sent % x; want ENOTTY in 1, nothing sent", cmd, errno, k.Rounds, e.cmds())
		}
		f.Release()
	}
	t.Run("DISABLECARD stops under nowayout", func(t *testing.T) {
		w, e, _ := newTest(t, func(c *Config) { c.NoWayOut = true })
		k := newKernel(t)
		f := open(t, w)
		defer f.Release()
		if _, errno := f.Write(ctx, []byte("x")); errno != 0 {
			t.Fatal(errno)
		}
		e.reset()
		if errno := k.Ioctl(ctx, f, IoctlSetOptions, mapArg(k, EncodeInt(SetOptDisableCard)), 0); errno != 0 {
			t.Fatal(errno)
		}
		if got := e.cmds(); !bytes.Equal(got, []byte{CmdSetWatchdog}) || e.lastSet(t)[0] != 0x04 || w.Stats().Running {
			t.Fatalf("sent % x, running %v; want one stopping Set", got, w.Stats().Running)
		}
	})
	t.Run("ENABLECARD errors ignored, first write starts again", func(t *testing.T) {
		w, e, _ := newTest(t, nil)
		k := newKernel(t)
		f := open(t, w)
		defer f.Release()
		e.setCC = 0xCC
		if errno := k.Ioctl(ctx, f, IoctlSetOptions, mapArg(k, EncodeInt(SetOptEnableCard)), 0); errno != 0 {
			t.Fatalf("ENABLECARD with a refused Set: %v, want 0 (ipmi_watchdog ignores it)", errno)
		}
		e.setCC = 0
		e.reset()
		if _, errno := f.Write(ctx, []byte("x")); errno != 0 {
			t.Fatal(errno)
		}
		if got := e.cmds(); !bytes.Equal(got, []byte{CmdSetWatchdog, CmdResetWatchdog}) {
			t.Fatalf("first write after ENABLECARD sent % x, want Set, Reset", got)
		}
	})
}

// TestPreOp: what a pretimeout does on the device side for each preop.
func TestPreOp(t *testing.T) {
	for _, tc := range []struct {
		name      string
		preAction PreAction
		preOp     PreOp
		generic   bool
		readable  bool
		panics    int32
	}{
		{"none", PreMsgInt, PreOpNone, false, false, 0},
		{"give data", PreMsgInt, PreOpGiveData, false, true, 0},
		{"give data without pre-action", PreNone, PreOpGiveData, false, false, 0},
		{"give data with NMI becomes none", PreNMI, PreOpGiveData, false, false, 0},
		{"panic once", PreMsgInt, PreOpPanic, false, false, 1},
		{"panic without pre-action", PreNone, PreOpPanic, false, false, 0},
		{"generic API always readable", PreMsgInt, PreOpNone, true, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var panics atomic.Int32
			w, _, _ := newTest(t, func(c *Config) {
				c.PreAction, c.PreOp, c.GenericAPI = tc.preAction, tc.preOp, tc.generic
				c.Panic = func() { panics.Add(1) }
			})
			f := open(t, w)
			defer f.Release()
			var woken atomic.Bool
			f.Poll(func() { woken.Store(true) })
			w.Pretimeout()
			w.Pretimeout()
			n, errno := f.Read(context.Background(), make([]byte, 1), true)
			if got := n == 1 && errno == 0; got != tc.readable || woken.Load() != tc.readable {
				t.Errorf("read %d, %v, poll woken %v; want readable %v", n, errno, woken.Load(), tc.readable)
			}
			if got := panics.Load(); got != tc.panics {
				t.Errorf("Panic called %d times, want %d", got, tc.panics)
			}
			if w.Stats().Pretimeouts != 2 {
				t.Errorf("pretimeouts %d, want 2", w.Stats().Pretimeouts)
			}
		})
	}
}

// TestLeave: the panic_wdt_timeout equivalent re-arms a running timer with
// the panic timeout and no pretimeout, and leaves a stopped one alone.
func TestLeave(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mod   func(*Config)
		start bool
		cmds  []byte
		set   []byte
	}{
		{"running", nil, true, []byte{CmdSetWatchdog}, []byte{0x44, 0x01, 0, 0, 0xF6, 0x09}},
		{"running IPMI 1.0", func(c *Config) { c.IPMI10 = true }, true, []byte{CmdSetWatchdog, CmdResetWatchdog}, []byte{0x04, 0x01, 0, 0, 0xF6, 0x09}},
		{"stopped", nil, false, nil, nil},
		{"disabled", func(c *Config) { c.PanicTimeout = 0 }, true, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, e, _ := newTest(t, func(c *Config) {
				c.PanicTimeout = DefaultPanicTimeout
				if tc.mod != nil {
					tc.mod(c)
				}
			})
			if tc.start {
				w.opMu.Lock()
				_ = w.startLocked(context.Background())
				w.opMu.Unlock()
			}
			e.reset()
			if err := w.Leave(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := e.cmds(); !bytes.Equal(got, tc.cmds) {
				t.Fatalf("sent % x, want % x", got, tc.cmds)
			}
			if tc.set != nil {
				if got := e.lastSet(t); !bytes.Equal(got, tc.set) {
					t.Fatalf("Set % x, want % x", got, tc.set)
				}
			}
		})
	}
}

func TestParsePreOp(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want PreOp
		ok   bool
	}{
		{"none", PreOpNone, true}, {"preop_none", PreOpNone, true}, {"panic", PreOpPanic, true},
		{"preop_panic", PreOpPanic, true}, {"give-data", PreOpGiveData, true}, {"preop_give_data", PreOpGiveData, true},
		{"give", 0, false}, {"", 0, false},
	} {
		got, err := ParsePreOp(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePreOp(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok {
			if back, err := ParsePreOp(got.String()); err != nil || back != got {
				t.Errorf("round trip %v: %v, %v", got, back, err)
			}
		}
	}
}

// TestLeaveAfterExport: a hand-over's old process leaves the timer to the
// next one.
func TestLeaveAfterExport(t *testing.T) {
	w, e, _ := newTest(t, func(c *Config) { c.PanicTimeout = DefaultPanicTimeout })
	w.opMu.Lock()
	_ = w.startLocked(context.Background())
	w.opMu.Unlock()
	e.reset()
	_ = w.ExportState()
	if err := w.Leave(context.Background()); err != nil || len(e.cmds()) != 0 {
		t.Fatalf("Leave after ExportState: %v, sent % x", err, e.cmds())
	}
}

// TestRegisterAfterImport: the process an upgrade hands the timer to does
// not stop or restart it.
func TestRegisterAfterImport(t *testing.T) {
	w, e, _ := newTest(t, func(c *Config) { c.StartNow = true })
	if _, err := w.ImportState(State{Running: true, Action: ActionReset, Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := w.Register(context.Background()); err != nil || len(e.cmds()) != 0 {
		t.Fatalf("Register after ImportState: %v, sent % x", err, e.cmds())
	}
	if !w.Stats().Running {
		t.Fatal("the imported running timer is no longer running")
	}
}

// TestOpenWaitsForRelease: a CUSE close(2) returns before the daemon runs
// the file's RELEASE, so a watchdog daemon's quick reopen must wait for
// it, not fail with EBUSY as it would not under the kernel.
func TestOpenWaitsForRelease(t *testing.T) {
	ctx := context.Background()
	t.Run("release in progress", func(t *testing.T) {
		w, e, _ := newTest(t, nil)
		f := open(t, w)
		if _, errno := f.Write(ctx, []byte("V")); errno != 0 {
			t.Fatal(errno)
		}
		inSet, unblock := make(chan struct{}), make(chan struct{})
		e.mu.Lock()
		e.onSubmit = func(r *sched.Request) {
			if r.Msg[1] == CmdSetWatchdog {
				close(inSet)
				<-unblock
			}
		}
		e.mu.Unlock()
		go f.Release()
		<-inSet // the release's stopping Set is at the BMC
		done := make(chan syscall.Errno, 1)
		go func() {
			f2, errno := w.Open(ctx, 0)
			if errno == 0 {
				f2.Release()
			}
			done <- errno
		}()
		select {
		case errno := <-done:
			t.Fatalf("open returned %v while the release ran", errno)
		case <-time.After(2 * releaseGrace):
		}
		e.mu.Lock()
		e.onSubmit = nil
		e.mu.Unlock()
		close(unblock)
		if errno := <-done; errno != 0 {
			t.Fatalf("open after the release: %v", errno)
		}
	})
	t.Run("release not started yet", func(t *testing.T) {
		w, _, _ := newTest(t, nil)
		f := open(t, w)
		done := make(chan syscall.Errno, 1)
		go func() {
			f2, errno := w.Open(ctx, 0)
			if errno == 0 {
				f2.Release()
			}
			done <- errno
		}()
		f.Release() // the open may run before or after: either way it gets in
		if errno := <-done; errno != 0 {
			t.Fatalf("open racing the release: %v", errno)
		}
	})
	t.Run("really busy", func(t *testing.T) {
		w, _, _ := newTest(t, nil)
		f := open(t, w)
		defer f.Release()
		if _, errno := w.Open(ctx, 0); errno != syscall.EBUSY {
			t.Fatalf("second open: %v, want EBUSY", errno)
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, errno := w.Open(cctx, 0); errno != syscall.EINTR {
			t.Fatalf("interrupted open: %v, want EINTR", errno)
		}
	})
}
