package bt

import (
	"syscall"
	"time"
)

// sleep pauses the calling thread for d. Below a millisecond it calls
// nanosleep directly, because time.Sleep rounds short sleeps up to about a
// millisecond in an otherwise idle process (measured for kcs; see
// kcs/sleep_linux.go).
func sleep(d time.Duration) {
	if d >= time.Millisecond {
		time.Sleep(d)
		return
	}
	ts := syscall.NsecToTimespec(int64(d))
	for {
		var rem syscall.Timespec
		if err := syscall.Nanosleep(&ts, &rem); err != syscall.EINTR {
			return
		}
		ts = rem
	}
}
