package portwait

import (
	"syscall"
	"time"
)

// sleep pauses the calling goroutine's thread for d. Below a millisecond it
// calls nanosleep directly: time.Sleep rounds short sleeps up to about a
// millisecond when the process is otherwise idle (the runtime's netpoller
// waits in ms). Measured on the 2-core test VM for KCS: time.Sleep(20µs)
// took 1.17ms of wall time, nanosleep(20µs) 118µs, both about 30-50µs of
// CPU per sleep; so short sleeps go to nanosleep, and since one sleep costs
// more CPU than a 20µs spin, each wait spins first. Blocking the thread is
// fine: the transports' hosts are each used by one goroutine (the engine's).
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
