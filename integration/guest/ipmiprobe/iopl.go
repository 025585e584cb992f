package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"github.com/u-root/u-root/pkg/memio"
	"golang.org/x/sys/unix"
)

// runIoplExec answers, in the guest, whether an I/O privilege level set
// with iopl(3) survives fork+exec into a process without capabilities (an
// upgraded daemon after the privilege drop): "iopl-exec parent PORT" sets
// iopl on a locked thread, drops every capability on every thread (with
// SECBIT_NOROOT, so exec gives none back), then starts "iopl-exec child
// PORT" twice: forked from that thread, and from another locked thread that
// never called iopl. The child reports its capabilities and reads the port
// with an in instruction without calling iopl (a fault kills it with
// SIGSEGV), then tries iopl(3) itself.
func runIoplExec(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: iopl-exec parent|child PORT")
	}
	var port uint16
	if _, err := fmt.Sscanf(args[1], "0x%x", &port); err != nil {
		return fmt.Errorf("port %q: %w", args[1], err)
	}
	if args[0] == "child" {
		capEff := "?"
		if b, err := os.ReadFile("/proc/self/status"); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
					capEff = strings.TrimSpace(v)
				}
			}
		}
		fmt.Printf("child: CapEff=%s\n", capEff)
		runtime.LockOSThread()
		var v memio.Uint8
		if err := (&memio.ArchPort{}).In(port, &v); err != nil {
			fmt.Printf("child: in: %v\n", err)
		} else {
			fmt.Printf("child: in %#x = %#02x without calling iopl\n", port, uint8(v))
		}
		fmt.Printf("child: iopl(3) = %v\n", syscall.Iopl(3))
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	spawn := func(withIopl bool) string {
		res := make(chan string, 1)
		go func() {
			runtime.LockOSThread() // this thread dies with the goroutine
			if withIopl {
				if err := syscall.Iopl(3); err != nil {
					res <- "iopl: " + err.Error()
					return
				}
			}
			if err := dropCaps(); err != nil {
				res <- "drop: " + err.Error()
				return
			}
			r, w, _ := os.Pipe()
			pid, err := syscall.ForkExec(exe, []string{exe, "iopl-exec", "child", args[1]},
				&syscall.ProcAttr{Files: []uintptr{0, w.Fd(), w.Fd()}})
			w.Close()
			if err != nil {
				res <- "fork: " + err.Error()
				return
			}
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
			b := make([]byte, 4096)
			n, _ := r.Read(b)
			res <- strings.TrimSpace(string(b[:n])) + fmt.Sprintf(" [exit %v]", ws)
		}()
		return <-res
	}
	fmt.Printf("forked from the thread with iopl: %s\n", strings.ReplaceAll(spawn(true), "\n", "; "))
	fmt.Printf("forked from a thread without iopl: %s\n", strings.ReplaceAll(spawn(false), "\n", "; "))
	return nil
}

// dropCaps empties every capability set on every thread, after
// SECBIT_NOROOT|SECBIT_NOROOT_LOCKED so an exec as root gets none back.
func dropCaps() error {
	const secbits = 0x1 | 0x2 // SECBIT_NOROOT | SECBIT_NOROOT_LOCKED
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_SECUREBITS, secbits, 0); e != 0 && e != syscall.EPERM {
		return fmt.Errorf("securebits: %w", e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	return nil
}
