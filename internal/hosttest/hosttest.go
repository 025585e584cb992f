//go:build linux

// Package hosttest holds what the tests of the register-polling transport
// hosts (kcs, bt) share: a stand-in for a port whose access right belongs
// to one OS thread (in/out after iopl), a churn that keeps the runtime
// moving goroutines between threads, and the CPU and wall time per
// transaction their polling benchmarks report.
package hosttest

import (
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ThreadCheck records the OS threads a port was bound to (as iopl grants
// access) and counts register accesses from any other. A test port embeds
// it, which gives the port BindThread, and calls Check on every access.
type ThreadCheck struct {
	mu       sync.Mutex
	bound    map[int]bool
	binds    atomic.Int64
	wrongTID atomic.Int64
}

// BindThread grants the calling OS thread access (kcs.ThreadBinder).
func (c *ThreadCheck) BindThread() error {
	c.binds.Add(1)
	c.mu.Lock()
	if c.bound == nil {
		c.bound = map[int]bool{}
	}
	c.bound[unix.Gettid()] = true
	c.mu.Unlock()
	return nil
}

// Check counts an access from a thread that was never bound.
func (c *ThreadCheck) Check() {
	c.mu.Lock()
	ok := c.bound[unix.Gettid()]
	c.mu.Unlock()
	if !ok {
		c.wrongTID.Add(1)
	}
}

// Binds returns how many times BindThread was called.
func (c *ThreadCheck) Binds() int64 { return c.binds.Load() }

// WrongThread returns how many accesses came from a thread never bound:
// with in/out after iopl, each would have faulted.
func (c *ThreadCheck) WrongThread() int64 { return c.wrongTID.Load() }

// Churn starts n goroutines that keep the runtime handing Ps between OS
// threads (a blocking system call gives the P to another thread), so a
// goroutine that is not locked to its thread soon runs on another. The
// goroutines stop when the test ends.
func Churn(t testing.TB, n int) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	for range n {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
					_ = unix.Nanosleep(&unix.Timespec{Nsec: 50_000}, nil)
					runtime.Gosched()
				}
			}
		}()
	}
}

// OnOneGoroutine calls step n times from one new goroutine, 100µs apart
// (long enough for the churn to move an unlocked goroutine), as an engine
// calls its host, and returns the first error.
func OnOneGoroutine(n int, step func() error) error {
	errc := make(chan error, 1)
	go func() {
		for range n {
			if err := step(); err != nil {
				errc <- err
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
		errc <- nil
	}()
	return <-errc
}

// PollCPU calls transact for each round of b.Loop and reports the
// process CPU time (cpu-ns/tx) and the wall time (wall-ns/tx) per call:
// what a host's polling costs, which on a slow BMC should stay far below
// the time it waits.
func PollCPU(b *testing.B, transact func() error) {
	b.ReportAllocs()
	cpu0, wall0 := cpuTime(b), time.Now()
	for b.Loop() {
		if err := transact(); err != nil {
			b.Fatal(err)
		}
	}
	cpu, wall := cpuTime(b)-cpu0, time.Since(wall0)
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/tx")
	b.ReportMetric(float64(wall.Nanoseconds())/float64(b.N), "wall-ns/tx")
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
