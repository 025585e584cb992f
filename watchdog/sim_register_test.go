package watchdog_test

import (
	"context"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

// firmwareState is how the BMC's watchdog stands when the driver starts.
type firmwareState struct {
	name string
	msgs [][]byte // sent to the BMC before the driver starts
}

// osLoadSet is what a BIOS "OS boot watchdog" option leaves: timer use OS
// Load, action hard reset, 300 s.
var osLoadSet = []byte{0x06 << 2, watchdog.CmdSetWatchdog, 0x03, 0x01, 0x00, 0x00, 0xB8, 0x0B}

var firmwareStates = []firmwareState{
	{"untouched", nil},
	{"armed by firmware and running", [][]byte{osLoadSet, {0x06 << 2, watchdog.CmdResetWatchdog}}},
	{"armed by firmware and stopped", [][]byte{osLoadSet}},
}

// TestSimRegister runs the start-up sequence against the simulated BMC,
// through KCS and the engine, for each state the firmware can leave the
// timer in and each parameter set, and checks what Get Watchdog Timer
// then shows (what ipmitool mc watchdog get prints): the firmware's timer
// never survives.
func TestSimRegister(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	type want struct {
		running    bool
		action     watchdog.Action
		preAction  watchdog.PreAction
		pretimeout time.Duration
		initial    time.Duration
	}
	for _, params := range []struct {
		name string
		cfg  watchdog.Config
		want want
	}{
		{"defaults (timeout 10)", watchdog.Config{}, want{initial: 10 * time.Second}},
		{"timeout 30 pretimeout 5 pre_int", watchdog.Config{Timeout: 30 * time.Second, Pretimeout: 5 * time.Second, PreAction: watchdog.PreMsgInt, Action: watchdog.ActionReset},
			want{initial: 30 * time.Second}},
		{"nowayout", watchdog.Config{NoWayOut: true, Action: watchdog.ActionReset}, want{initial: 10 * time.Second}},
		{"start_now", watchdog.Config{StartNow: true, Timeout: 60 * time.Second, Action: watchdog.ActionReset},
			want{running: true, action: watchdog.ActionReset, initial: 60 * time.Second}},
		{"start_now pretimeout 5 pre_int power_off", watchdog.Config{StartNow: true, Timeout: 60 * time.Second, Pretimeout: 5 * time.Second,
			PreAction: watchdog.PreMsgInt, Action: watchdog.ActionPowerOff},
			want{running: true, action: watchdog.ActionPowerOff, preAction: watchdog.PreMsgInt, pretimeout: 5 * time.Second, initial: 60 * time.Second}},
		{"start_now action none", watchdog.Config{StartNow: true, Action: watchdog.ActionNone}, want{initial: 10 * time.Second}},
	} {
		for _, fw := range firmwareStates {
			t.Run(params.name+"/"+fw.name, func(t *testing.T) {
				s := newSim(t, nil)
				for _, m := range fw.msgs {
					s.do(t, m...)
				}
				before := s.timer(t)
				cfg := params.cfg
				cfg.Submit, cfg.Logger = s.eng.Submit, quiet
				w, err := watchdog.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				if err := w.Register(context.Background()); err != nil {
					t.Fatal(err)
				}
				got := s.timer(t)
				wt := params.want
				if got.Use != 4 || got.DontLog || got.Running != wt.running || got.Action != wt.action ||
					got.PreAction != wt.preAction || got.Pretimeout != wt.pretimeout || got.Initial != wt.initial ||
					got.ExpirationFlags != before.ExpirationFlags {
					t.Fatalf("after start-up: %+v, want SMS/OS %+v (expiration flags %#x kept)", got, wt, before.ExpirationFlags)
				}
				if !wt.running && got.Present != wt.initial {
					t.Fatalf("stopped timer's present countdown %v, want %v", got.Present, wt.initial)
				}
				if wt.running && (got.Present > wt.initial || got.Present < wt.initial-10*time.Second) {
					t.Fatalf("running countdown %v, want just under %v", got.Present, wt.initial)
				}
			})
		}
	}
}

// TestSimRawSetWhileOpen: a client's Set Watchdog Timer through /dev/ipmi0
// while /dev/watchdog is open is not coordinated with the device, as with
// the kernel's ipmi_watchdog and ipmi_devintf: the BMC takes the client's
// settings, and the device's next heartbeat (a Reset) restarts the
// countdown with them, even from a stopped timer; only a magic close (or
// the next Set the device sends, after a pretimeout) puts the device's
// settings back.
func TestSimRawSetWhileOpen(t *testing.T) {
	s := newSim(t, nil)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	w, err := watchdog.New(watchdog.Config{Submit: s.eng.Submit, Action: watchdog.ActionReset, Timeout: 10 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, errno := w.Open(context.Background(), syscall.O_WRONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	if _, errno := f.Write(context.Background(), []byte{0}); errno != 0 {
		t.Fatal(errno)
	}
	if ts := s.timer(t); !ts.Running || ts.Use != 4 || ts.Initial != 10*time.Second {
		t.Fatalf("after the first write: %+v", ts)
	}
	// The client stops the timer with its own settings (OS Load, 300 s).
	s.do(t, osLoadSet...)
	if ts := s.timer(t); ts.Running || ts.Use != 3 {
		t.Fatalf("after the client's Set: %+v", ts)
	}
	if _, errno := f.Write(context.Background(), []byte{0}); errno != 0 {
		t.Fatal(errno)
	}
	if ts := s.timer(t); !ts.Running || ts.Use != 3 || ts.Initial != 300*time.Second || ts.Action != watchdog.ActionReset {
		t.Fatalf("after the next heartbeat: %+v, want the client's settings running", ts)
	}
	if _, errno := f.Write(context.Background(), []byte("V")); errno != 0 {
		t.Fatal(errno)
	}
	f.Release()
	if ts := s.timer(t); ts.Running || ts.Use != 4 || ts.Initial != 10*time.Second || ts.Action != watchdog.ActionNone {
		t.Fatalf("after the magic close: %+v, want the device's stopped settings", ts)
	}
}
