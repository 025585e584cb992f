package portwait

import (
	"fmt"
	"testing"
	"time"
)

// far is a deadline no test reaches.
func far() time.Time { return time.Now().Add(time.Hour) }

// TestBackoff: after the spin each pause sleeps MinSleep, doubling up to
// MaxSleep, and counts every sleep and the time it asked for.
func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		name     string
		min, max time.Duration
		pauses   int
		want     time.Duration // total sleep asked
	}{
		{name: "doubles then caps", min: time.Microsecond, max: 8 * time.Microsecond, pauses: 6,
			want: (1 + 2 + 4 + 8 + 8 + 8) * time.Microsecond},
		{name: "min equals max", min: 3 * time.Microsecond, max: 3 * time.Microsecond, pauses: 4,
			want: 12 * time.Microsecond},
		{name: "one pause", min: 5 * time.Microsecond, max: time.Millisecond, pauses: 1,
			want: 5 * time.Microsecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				c  Counters
				w  Wait
				p  = Policy{Spin: time.Nanosecond, MinSleep: tc.min, MaxSleep: tc.max}
				dl = far()
			)
			// The first miss starts the spin: that pause returns at once.
			if !w.Pause(p, dl, &c) || c.Sleeps.Load() != 0 {
				t.Fatal("the first pause did not spin")
			}
			time.Sleep(time.Microsecond) // past the 1ns spin from here on
			for i := range tc.pauses {
				if !w.Pause(p, dl, &c) {
					t.Fatalf("pause %d ended the wait before its deadline", i)
				}
			}
			if n := c.Sleeps.Load(); n != uint64(tc.pauses) {
				t.Errorf("Sleeps = %d, want %d", n, tc.pauses)
			}
			if d := time.Duration(c.SleepNanos.Load()); d != tc.want {
				t.Errorf("SleepNanos = %v, want %v", d, tc.want)
			}
		})
	}
}

// TestSpinDoesNotSleep: while the spin lasts a pause returns at once,
// without sleeping, until the deadline ends the wait.
func TestSpinDoesNotSleep(t *testing.T) {
	var (
		c  Counters
		w  Wait
		p  = Policy{Spin: time.Hour, MinSleep: time.Microsecond, MaxSleep: time.Millisecond}
		dl = time.Now().Add(2 * time.Millisecond)
	)
	for w.Pause(p, dl, &c) {
	}
	if time.Now().Before(dl) {
		t.Error("the wait ended before its deadline")
	}
	if n := c.Sleeps.Load(); n != 0 {
		t.Errorf("%d sleeps during the spin, want 0", n)
	}
}

// TestDeadline: a wait ends at the earlier of the caller's deadline and
// the limit counted from the first miss, never before it, and no sleep
// goes past it.
func TestDeadline(t *testing.T) {
	for _, tc := range []struct {
		name  string
		dl    time.Duration // from the start; 0: already passed
		limit time.Duration
		want  time.Duration // the wait lasts at least this long
	}{
		{name: "deadline passed", dl: 0, want: 0},
		{name: "deadline passed, limit ignored", dl: 0, limit: time.Hour, want: 0},
		{name: "caller's deadline first", dl: 3 * time.Millisecond, limit: time.Hour, want: 3 * time.Millisecond},
		{name: "limit first", dl: time.Hour, limit: 3 * time.Millisecond, want: 3 * time.Millisecond},
		{name: "no limit", dl: 3 * time.Millisecond, want: 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Counters
			start := time.Now()
			dl := start.Add(tc.dl)
			if tc.dl == 0 {
				dl = start.Add(-time.Second)
			}
			// MinSleep far beyond any deadline here: each sleep is cut
			// to what is left of the wait.
			var w Wait
			p := Policy{Spin: time.Nanosecond, MinSleep: time.Minute, MaxSleep: time.Minute, Limit: tc.limit}
			pauses := 0
			for w.Pause(p, dl, &c) {
				pauses++
			}
			if got := time.Since(start); got < tc.want {
				t.Errorf("the wait ended after %v, want at least %v", got, tc.want)
			}
			if tc.want == 0 && pauses != 0 {
				t.Errorf("%d pauses past a passed deadline, want 0", pauses)
			}
			if asked := time.Duration(c.SleepNanos.Load()); asked > tc.want {
				t.Errorf("asked to sleep %v in all, more than the wait's %v", asked, tc.want)
			}
		})
	}
}

// BenchmarkWait is the cost a wait adds to the polls themselves: nothing
// but a zeroed Wait when the condition holds at once (misses=0), one clock
// read per miss while it spins.
func BenchmarkWait(b *testing.B) {
	p := Policy{Spin: time.Hour, MinSleep: time.Microsecond, MaxSleep: time.Millisecond, Limit: 5 * time.Second}
	dl := far()
	for _, misses := range []int{0, 1, 4} {
		b.Run(fmt.Sprintf("misses=%d", misses), func(b *testing.B) {
			var c Counters
			for b.Loop() {
				var w Wait
				for range misses {
					if !w.Pause(p, dl, &c) {
						b.Fatal("the wait ended")
					}
				}
			}
		})
	}
}
