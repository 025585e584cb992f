package bmcsim

import (
	"testing"
	"time"
)

// setWD sends Set Watchdog Timer.
func setWD(t *testing.T, b *BMC, use, actions, pre, clear byte, countdown uint16) {
	t.Helper()
	mustOK(t, b, NetFnApp, CmdSetWatchdogTimer, use, actions, pre, clear, byte(countdown), byte(countdown>>8))
}

type wdState struct {
	running  bool
	expFlags byte
	present  uint16
}

func getWD(t *testing.T, b *BMC) wdState {
	t.Helper()
	r := mustOK(t, b, NetFnApp, CmdGetWatchdogTimer)
	if len(r) != 8 {
		t.Fatalf("Get Watchdog Timer returned % x", r)
	}
	return wdState{running: r[0]&0x40 != 0, expFlags: r[3], present: uint16(r[6]) | uint16(r[7])<<8}
}

func TestWatchdogLifecycle(t *testing.T) {
	b, c := newManual(t)
	if cc, _ := do(t, b, NetFnApp, CmdResetWatchdogTimer); cc != 0x80 {
		t.Fatalf("reset before set: %#x, want 0x80", cc)
	}
	// SMS/OS use, pretimeout 3 s with messaging interrupt, hard reset, 10 s.
	setWD(t, b, 0x04, 0x31, 3, 0, 100)
	if s := getWD(t, b); s.running || s.present != 100 {
		t.Fatalf("after set: %+v", s)
	}
	c.Advance(time.Minute)
	if st := b.Stats(); st.TimeoutsFired != 0 {
		t.Fatal("a set but never started watchdog expired")
	}
	mustOK(t, b, NetFnApp, CmdResetWatchdogTimer)
	if s := getWD(t, b); !s.running || s.present != 100 {
		t.Fatalf("after reset: %+v", s)
	}
	c.Advance(6900 * time.Millisecond)
	if b.Attention() || b.Stats().PretimeoutsFired != 0 {
		t.Fatal("pretimeout before its time")
	}
	if s := getWD(t, b); s.present != 31 {
		t.Fatalf("present countdown %d, want 31", s.present)
	}
	c.Advance(200 * time.Millisecond)
	if !b.Attention() || b.Stats().PretimeoutsFired != 1 {
		t.Fatalf("no pretimeout: stats %+v", b.Stats())
	}
	// The pretimeout sets its flag and, logged, fills the event buffer.
	if f := mustOK(t, b, NetFnApp, CmdGetMessageFlags); f[0] != FlagPretimeout|FlagEventBuffer {
		t.Fatalf("flags %#x", f[0])
	}
	if ev := mustOK(t, b, NetFnApp, CmdReadEventMessageBuffer); ev[10] != 0x23 || ev[13] != 0xC8 {
		t.Fatalf("event % x", ev)
	}
	mustOK(t, b, NetFnApp, CmdClearMessageFlags, FlagPretimeout)
	if b.Attention() {
		t.Fatal("attention after clearing the pretimeout flag")
	}
	c.Advance(2800 * time.Millisecond)
	if b.Stats().TimeoutsFired != 0 {
		t.Fatal("expired early")
	}
	c.Advance(200 * time.Millisecond)
	st := b.Stats()
	if st.TimeoutsFired != 1 || st.LastAction != ActionHardReset || st.HardResets != 1 || st.PretimeoutsFired != 1 {
		t.Fatalf("after expiry: %+v", st)
	}
	if s := getWD(t, b); s.running || s.expFlags != 0x10 || s.present != 0 {
		t.Fatalf("after expiry: %+v", s)
	}
	if rc := mustOK(t, b, NetFnChassis, CmdGetSystemRestartCause); rc[0] != 0x04 {
		t.Fatalf("restart cause %#x, want 4 (watchdog)", rc[0])
	}
	// SEL: pretimeout interrupt (offset 8), then hard reset (offset 1).
	recs := b.SELRecords()
	if len(recs) != 2 {
		t.Fatalf("%d SEL records, want 2", len(recs))
	}
	for i, off := range []byte{0x08, 0x01} {
		r := recs[i]
		if r[2] != 0x02 || r[10] != 0x23 || r[12] != 0x6F || r[13]&0x0F != off || r[14] != 0x34 {
			t.Fatalf("SEL record %d: % x", i, r)
		}
	}
	// Clearing the expiration flag.
	setWD(t, b, 0x04, 0x00, 0, 0x10, 100)
	if s := getWD(t, b); s.expFlags != 0 {
		t.Fatalf("expiration flags %#x after clear", s.expFlags)
	}
}

func TestWatchdogPatsKeepItAlive(t *testing.T) {
	b, c := newManual(t)
	setWD(t, b, 0x04, 0x33, 2, 0, 50) // power cycle after 5 s
	mustOK(t, b, NetFnApp, CmdResetWatchdogTimer)
	for range 30 {
		c.Advance(2 * time.Second)
		mustOK(t, b, NetFnApp, CmdResetWatchdogTimer)
	}
	st := b.Stats()
	if st.TimeoutsFired != 0 || st.PretimeoutsFired != 0 || st.WatchdogResets != 31 {
		t.Fatalf("stats %+v", st)
	}
	if !st.LastPat.Equal(t0.Add(60 * time.Second)) {
		t.Fatalf("last pat %v", st.LastPat)
	}
}

func TestWatchdogVariants(t *testing.T) {
	tests := []struct {
		name      string
		use       byte
		actions   byte
		pre       byte
		wantSEL   int
		wantPre   uint64
		wantDowns uint64
	}{
		{name: "no action logs expiry", use: 0x04, actions: 0x00, wantSEL: 1},
		{name: "dont log", use: 0x84, actions: 0x02, wantSEL: 0, wantDowns: 1},
		{name: "power down with nmi pretimeout", use: 0x03, actions: 0x22, pre: 1, wantSEL: 2, wantPre: 1, wantDowns: 1},
		{name: "pretimeout interval without type", use: 0x04, actions: 0x00, pre: 1, wantSEL: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, c := newManual(t)
			setWD(t, b, tc.use, tc.actions, tc.pre, 0, 30)
			mustOK(t, b, NetFnApp, CmdResetWatchdogTimer)
			c.Advance(3 * time.Second)
			st := b.Stats()
			if st.TimeoutsFired != 1 || st.PretimeoutsFired != tc.wantPre || st.PowerDowns != tc.wantDowns {
				t.Fatalf("stats %+v", st)
			}
			if n := len(b.SELRecords()); n != tc.wantSEL {
				t.Fatalf("%d SEL records, want %d", n, tc.wantSEL)
			}
			if !b.Chassis().PowerOn != (tc.wantDowns == 1) {
				t.Fatalf("chassis %+v", b.Chassis())
			}
		})
	}
}

func TestWatchdogSetSemantics(t *testing.T) {
	b, c := newManual(t)
	setWD(t, b, 0x04, 0x01, 0, 0, 100)
	mustOK(t, b, NetFnApp, CmdResetWatchdogTimer)
	c.Advance(5 * time.Second)
	// "don't stop" while running: new countdown, keeps running.
	setWD(t, b, 0x44, 0x01, 0, 0, 80)
	if s := getWD(t, b); !s.running || s.present != 80 {
		t.Fatalf("after set with don't-stop: %+v", s)
	}
	// Set without "don't stop" stops it.
	setWD(t, b, 0x04, 0x01, 0, 0, 80)
	if s := getWD(t, b); s.running {
		t.Fatal("set without don't-stop left it running")
	}
	c.Advance(time.Minute)
	if b.Stats().TimeoutsFired != 0 {
		t.Fatal("stopped watchdog expired")
	}
	// Cold reset makes it uninitialised again.
	mustOK(t, b, NetFnApp, CmdResetWatchdogTimer)
	mustOK(t, b, NetFnApp, CmdColdReset)
	if s := getWD(t, b); s.running {
		t.Fatal("running after cold reset")
	}
	if cc, _ := do(t, b, NetFnApp, CmdResetWatchdogTimer); cc != 0x80 {
		t.Fatalf("reset after cold reset: %#x, want 0x80", cc)
	}
	c.Advance(time.Minute)
	if b.Stats().TimeoutsFired != 0 {
		t.Fatal("watchdog expired after cold reset")
	}
}

// TestWatchdogScaledClock runs the watchdog on the wall clock, 100 times
// faster: a 10 s countdown must expire well within the generous bound.
func TestWatchdogScaledClock(t *testing.T) {
	b := New(Config{TimeScale: 100, Logger: quiet})
	setWD(t, b, 0x04, 0x31, 2, 0, 100)
	mustOK(t, b, NetFnApp, CmdResetWatchdogTimer)
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().TimeoutsFired == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no expiry after 10 s of wall time (1000 s BMC time): %+v", b.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := b.Stats()
	if st.PretimeoutsFired != 1 || st.LastAction != ActionHardReset {
		t.Fatalf("stats %+v", st)
	}
}
