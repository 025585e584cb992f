package main

import (
	"fmt"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

// runWatchdogIoctls opens /dev/watchdog as a watchdog daemon does and
// prints what the generic watchdog ioctls answer: WDIOC_GETSUPPORT's
// options, firmware version and identity (what daemons log), the status
// and timeout queries, and the optional ones. Then it writes the magic
// 'V' and closes, which stops the timer again (unless nowayout).
//
//	ipmiprobe wdioc
func runWatchdogIoctls() error {
	fd, err := unix.Open("/dev/watchdog", unix.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/watchdog: %w", err)
	}
	defer unix.Close(fd)
	var info [watchdog.SizeofInfo]byte
	e := ioctlRaw(fd, watchdog.IoctlGetSupport, uintptr(unsafe.Pointer(&info[0])))
	wi, _ := watchdog.DecodeInfo(info[:])
	fmt.Printf("GETSUPPORT: %s options=%#x firmware_version=%d identity=%q\n", errName(e), wi.Options, wi.FirmwareVersion,
		strings.TrimRight(string(wi.Identity[:]), "\x00"))
	for _, q := range []struct {
		name string
		cmd  uintptr
	}{
		{"GETSTATUS", watchdog.IoctlGetStatus},
		{"GETBOOTSTATUS", watchdog.IoctlGetBootStatus},
		{"GETTIMEOUT", watchdog.IoctlGetTimeout},
		{"GETPRETIMEOUT", watchdog.IoctlGetPretimeout},
		{"GETTIMELEFT", watchdog.IoctlGetTimeLeft},
		{"GETTEMP", watchdog.IoctlGetTemp},
	} {
		v := int32(-7)
		e := ioctlRaw(fd, q.cmd, uintptr(unsafe.Pointer(&v)))
		fmt.Printf("%s: %s value=%d\n", q.name, errName(e), v)
	}
	if _, err := unix.Write(fd, []byte("V")); err != nil {
		fmt.Fprintln(os.Stderr, "info: write V:", err)
		return fmt.Errorf("write V: %w", err)
	}
	return nil
}
