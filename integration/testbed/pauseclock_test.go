package testbed

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestPausableClock checks that a paused clock stands still and holds its
// callbacks, and that Resume runs them with the rest of their delays;
// the bounds are generous (ordering and "not before", not exact times).
func TestPausableClock(t *testing.T) {
	t.Run("pause holds callbacks", func(t *testing.T) {
		c := NewPausableClock()
		var fired atomic.Int32
		c.AfterFunc(50*time.Millisecond, func() { fired.Add(1) })
		c.Pause()
		t0 := c.Now()
		time.Sleep(150 * time.Millisecond)
		if fired.Load() != 0 {
			t.Fatal("callback ran while paused")
		}
		if !c.Now().Equal(t0) {
			t.Fatalf("paused clock moved: %v → %v", t0, c.Now())
		}
		c.Resume()
		deadline := time.Now().Add(5 * time.Second)
		for fired.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if fired.Load() != 1 {
			t.Fatalf("callback ran %d times after Resume, want 1", fired.Load())
		}
		if el := c.Now().Sub(t0); el < 0 || el > 5*time.Second {
			t.Fatalf("clock after resume moved %v", el)
		}
	})
	t.Run("clock excludes paused time", func(t *testing.T) {
		c := NewPausableClock()
		w0, c0 := time.Now(), c.Now()
		c.Pause()
		time.Sleep(100 * time.Millisecond)
		c.Resume()
		if lag := time.Since(w0) - c.Now().Sub(c0); lag < 100*time.Millisecond {
			t.Fatalf("clock lags wall time by %v, want at least the 100ms paused", lag)
		}
	})
	t.Run("stop", func(t *testing.T) {
		c := NewPausableClock()
		var fired atomic.Int32
		s := c.AfterFunc(20*time.Millisecond, func() { fired.Add(1) })
		c.Pause()
		if !s.Stop() {
			t.Fatal("Stop of a pending callback returned false")
		}
		c.Resume()
		time.Sleep(100 * time.Millisecond)
		if fired.Load() != 0 || s.Stop() {
			t.Fatal("stopped callback ran or stayed pending")
		}
	})
}
