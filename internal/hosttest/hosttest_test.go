//go:build linux

package hosttest

import (
	"runtime"
	"testing"
)

// TestThreadCheck: accesses from the bound thread count nothing, one from
// a thread that was never bound counts. Two goroutines locked to their
// threads at once are on two different threads.
func TestThreadCheck(t *testing.T) {
	var c ThreadCheck
	bound, done := make(chan struct{}), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := c.BindThread(); err != nil {
			t.Error(err)
		}
		c.Check()
		close(bound)
		<-done // keep this thread to ourselves while the other checks
	}()
	<-bound
	if n := c.WrongThread(); n != 0 {
		t.Errorf("WrongThread = %d after an access from the bound thread, want 0", n)
	}
	other := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		c.Check()
		close(other)
	}()
	<-other
	close(done)
	if n := c.WrongThread(); n != 1 {
		t.Errorf("WrongThread = %d after an access from another thread, want 1", n)
	}
	if n := c.Binds(); n != 1 {
		t.Errorf("Binds = %d, want 1", n)
	}
}

// TestOnOneGoroutine: step runs n times, and the first error ends it.
func TestOnOneGoroutine(t *testing.T) {
	calls := 0
	if err := OnOneGoroutine(3, func() error { calls++; return nil }); err != nil || calls != 3 {
		t.Errorf("got %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	errStop := testErr("stop")
	err := OnOneGoroutine(5, func() error {
		if calls++; calls == 2 {
			return errStop
		}
		return nil
	})
	if err != errStop || calls != 2 {
		t.Errorf("got %v after %d calls, want %v after 2", err, calls, errStop)
	}
}

type testErr string

func (e testErr) Error() string { return string(e) }
