// Command ipmiprobe runs inside the testbed's guest (built static and added
// with testbed.Session.GuestBins) and exercises /dev/ipmi0 directly, so
// the kernel driver and ipmi-cuse can be compared on things no packaged
// client does:
//
//	ipmiprobe uroot              u-root's pkg/ipmi client: Get Device ID, chassis, SEL, watchdog, raw
//	ipmiprobe badinput [-oversized-last]  raw ioctls with bad pointers, lengths, addresses, floods, dying clients
//	ipmiprobe bench -n N -depth D  Get Device ID round trips, D outstanding at a time
//	ipmiprobe micro -n N         the pieces of a round trip, timed separately
//	ipmiprobe wdioc              /dev/watchdog's answers to the generic watchdog ioctls
//	ipmiprobe hold -for D        one file kept open across daemon restarts, Get Device ID every -interval
//	ipmiprobe wdread             a read of /dev/watchdog kept in flight, then interrupted (see wdread.go)
//	ipmiprobe iopl-exec parent PORT  whether iopl survives fork+exec into a process without capabilities
//
// Every line on stdout is "case: result" and is meant to be identical in
// both modes; lines on stderr start with "info:" and carry what may differ
// (timings, the daemon's /proc figures).
package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
)

// devPath is the device every subcommand opens; bench's -dev changes it.
var devPath = "/dev/ipmi0"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ipmiprobe uroot|badinput|bench|micro|child|flood|pat|msghandler|wdioc|wakeups|await-sensor [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "uroot":
		err = runURoot()
	case "badinput":
		err = runBadInput(os.Args[2:])
	case "bench":
		err = runBench(os.Args[2:])
	case "micro":
		err = runMicro(os.Args[2:])
	case "child":
		err = runChild(os.Args[2:])
	case "hold":
		err = runHold(os.Args[2:])
	case "wdread":
		err = runWDRead(os.Args[2:])
	case "sendinflight":
		err = runSendInFlight(os.Args[2:])
	case "iopl-exec":
		err = runIoplExec(os.Args[2:])
	case "flood", "pat":
		err = runSlowBMC(os.Args[1], os.Args[2:])
	case "msghandler":
		err = runMsgHandler(os.Args[2:])
	case "wdioc":
		err = runWatchdogIoctls()
	case "wakeups":
		err = runWakeups(os.Args[2:])
	case "await-sensor":
		err = runAwaitSensor(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ipmiprobe:", err)
		os.Exit(1)
	}
}

// Layout of the arena: page 0 holds the ioctl argument structs and address
// buffers, page 1 data buffers, page 2 has no access at all and page 3 is
// read-only, so "bad pointer" cases point at memory that is mapped but
// unreadable, or readable but not writable, not only at NULL; and a struct
// at the end of page 1 straddles into the no-access page.
const (
	pageSize   = 4096
	offReq     = 0    // struct ipmi_req / ipmi_req_settime (48)
	offAddr    = 64   // the address a request is sent to (40)
	offRecv    = 128  // struct ipmi_recv (48)
	offRecvAdr = 192  // the address buffer RECEIVE writes (40)
	offArg     = 256  // small arguments (int, cmdspec, timing parms)
	offArg2    = 320  // a second small argument
	offData    = 4096 // request data (up to 300 bytes)
	offRData   = 4608 // reply data buffer
	offNone    = 2 * pageSize
	offRO      = 3 * pageSize
)

// arena is off-heap memory whose user addresses are passed to the ioctls.
type arena struct {
	b    []byte
	base uintptr
}

func newArena() (*arena, error) {
	b, err := unix.Mmap(-1, 0, 4*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap arena: %w", err)
	}
	if err := unix.Mprotect(b[offRO:], unix.PROT_READ); err != nil {
		return nil, fmt.Errorf("mprotect read-only page: %w", err)
	}
	if err := unix.Mprotect(b[offNone:offNone+pageSize], unix.PROT_NONE); err != nil {
		return nil, fmt.Errorf("mprotect no-access page: %w", err)
	}
	return &arena{b: b, base: uintptr(unsafe.Pointer(&b[0]))}, nil
}

// at returns the user address of offset off.
func (a *arena) at(off int) uintptr { return a.base + uintptr(off) }

// put copies data to offset off and returns its user address.
func (a *arena) put(off int, data []byte) uintptr {
	copy(a.b[off:], data)
	return a.at(off)
}

// sysAddr is the system-interface address every well-formed request uses.
func sysAddr(lun uint8) []byte {
	return ioctl.SystemInterfaceAddr{AddrType: ioctl.SystemInterfaceAddrType, Channel: ioctl.BMCChannel, LUN: lun}.Encode()
}

// ioctlRaw issues one ioctl and returns its errno (0 on success).
func ioctlRaw(fd int, cmd, arg uintptr) syscall.Errno {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), cmd, arg)
	return e
}

// errName is "ok" or the errno's C name.
func errName(e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", int(e))
}
