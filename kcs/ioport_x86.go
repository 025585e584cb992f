//go:build linux && (amd64 || 386)

package kcs

import (
	"fmt"
	"runtime"
	"syscall"

	"github.com/u-root/u-root/pkg/memio"
)

// OpenArchPort returns a Port using in/out instructions (memio.ArchPort)
// at cfg's addresses. This is the fastest access: no system call per
// register access.
//
// The I/O privilege level that iopl(3) raises belongs to one OS thread, not
// the process (Linux emulates iopl with a per-thread I/O bitmap), and Go
// moves goroutines between threads. So OpenArchPort calls iopl on a locked
// thread to report a refusal (EPERM without CAP_SYS_RAWIO, or a kernel
// without iopl emulation) early, then raises it on every thread of the
// process at once (syscall.AllThreadsSyscall); a thread inherits it from
// the thread that creates it, so from then on every thread the runtime has
// or starts holds it, and any goroutine may use the port: nothing has to be
// locked to a thread, and work is not handed between threads to reach the
// hardware. Where the runtime cannot do that (a binary built with cgo), the
// port is bound per thread instead: it must be used through a Host, which
// binds its goroutine to one thread and calls BindThread there; any other
// direct use must do the same (see ThreadBinder and IOPort.ThreadBound).
func OpenArchPort(cfg IOConfig) (*IOPort, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := iopl3(); err != nil {
		return nil, err
	}
	p, err := NewIOPort(&memio.ArchPort{}, cfg)
	if err != nil {
		return nil, err
	}
	if !allThreadsIopl() {
		p.bind = iopl3
	}
	return p, nil
}

// allThreadsIopl raises the I/O privilege level of every thread of the
// process. It reports false when the runtime refuses (ENOTSUP with cgo).
func allThreadsIopl() bool {
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_IOPL, 3, 0, 0)
	return errno == 0
}

// iopl3 raises the calling thread's I/O privilege level to 3.
func iopl3() error {
	if err := syscall.Iopl(3); err != nil {
		return fmt.Errorf("kcs: iopl(3) for KCS I/O ports (needs root/CAP_SYS_RAWIO; try /dev/port): %w", err)
	}
	return nil
}

// OpenArchAccess returns in/out instruction access (memio.ArchPort) for
// other port-I/O system interfaces (BT), and bind, which grants the calling
// OS thread access (iopl). Like OpenArchPort it checks iopl once on a
// locked thread; the user must call bind from the locked thread that makes
// every access (see ThreadBinder).
func OpenArchAccess() (rw memio.PortReadWriter, bind func() error, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := iopl3(); err != nil {
		return nil, nil, err
	}
	return &memio.ArchPort{}, iopl3, nil
}
