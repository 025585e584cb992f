package watchdog

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

// TestHandoverMagicClose: /dev/watchdog opened, started and written 'V' in
// one process; after the hand-over the other process's file closes with
// the magic close (one Set that stops the timer), and without sending
// anything at the hand-over itself.
func TestHandoverMagicClose(t *testing.T) {
	w, _, _ := newTest(t, nil)
	f := open(t, w)
	if _, errno := f.Write(context.Background(), []byte("V")); errno != 0 {
		t.Fatal(errno)
	}
	st := w.ExportState()
	if !st.FileOpen || !st.ExpectClose || !st.Running || st.Stats.Pats != 1 {
		t.Fatalf("exported %+v", st)
	}

	w2, e2, _ := newTest(t, nil)
	g, err := w2.ImportState(st)
	if err != nil || g == nil {
		t.Fatalf("ImportState = %v, %v; want the open file", g, err)
	}
	if got := w2.ExportState(); !reflect.DeepEqual(got, st) {
		t.Errorf("re-exported %+v, want %+v", got, st)
	}
	if len(e2.cmds()) != 0 {
		t.Fatalf("import sent % x to the BMC, want nothing", e2.cmds())
	}
	// The opener is still the only one.
	if _, errno := w2.Open(context.Background(), 0); errno == 0 {
		t.Error("second open succeeded after the hand-over")
	}
	g.Release()
	if got := e2.cmds(); !bytes.Equal(got, []byte{CmdSetWatchdog}) || e2.lastSet(t)[0] != 0x04 {
		t.Fatalf("magic close after hand-over sent % x", got)
	}
}

// TestHandoverRunKeepsTimer: the built-in patter stopped with ErrHandover
// sends nothing more (no stop), whatever the nowayout setting.
func TestHandoverRunKeepsTimer(t *testing.T) {
	w, e, _ := newTest(t, func(c *Config) { c.PatInterval = time.Hour })
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	eventually(t, "armed", func() bool { return w.Stats().Running })
	n := len(e.cmds())
	cancel(ErrHandover)
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := e.cmds(); len(got) != n {
		t.Fatalf("handing over sent % x, want nothing", got[n:])
	}
	if !w.ExportState().Running {
		t.Error("state says stopped after a hand-over")
	}
}

func TestHandoverRefusesBadState(t *testing.T) {
	good := State{Timeout: 10 * time.Second, Action: ActionReset}
	for _, tc := range []struct {
		name string
		mod  func(*State)
	}{
		{"timeout", func(s *State) { s.Timeout = 0 }},
		{"pretimeout", func(s *State) { s.Pretimeout = 20 * time.Second }},
		{"action", func(s *State) { s.Action = 9 }},
		{"preaction", func(s *State) { s.PreAction = 9 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			tc.mod(&s)
			w, _, _ := newTest(t, nil)
			if _, err := w.ImportState(s); !errors.Is(err, ErrState) {
				t.Errorf("ImportState = %v, want ErrState", err)
			}
		})
	}
	t.Run("in use", func(t *testing.T) {
		w, _, _ := newTest(t, nil)
		f := open(t, w)
		defer f.Release()
		if _, err := w.ImportState(good); !errors.Is(err, ErrState) {
			t.Errorf("ImportState while open = %v, want ErrState", err)
		}
	})
}
