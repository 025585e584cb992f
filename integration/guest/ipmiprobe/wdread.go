package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// runWDRead puts a request in flight in the daemon and keeps it there: it
// opens the watchdog device and blocks in read(2), which the daemon
// answers only at a pretimeout. Once the file named by -trigger exists it
// signals its reading thread every 200 ms (SIGURG, which Go ignores, so
// the signal only interrupts the system call: the kernel then sends
// FUSE_INTERRUPT for the request to whoever serves the device) and prints
// how the read ended and how long after the trigger. A daemon that
// answers the interrupt makes read return EINTR; a request whose answer
// nobody can send any more (lost with a crashed daemon) stays blocked
// until the process is killed. It closes the device with the magic 'V'.
func runWDRead(args []string) error {
	fs := flag.NewFlagSet("wdread", flag.ContinueOnError)
	path := fs.String("dev", "/dev/watchdog", "watchdog device")
	trigger := fs.String("trigger", "/tmp/wdread.go", "start interrupting once this file exists")
	if err := fs.Parse(args); err != nil {
		return err
	}
	runtime.LockOSThread()
	fd, err := unix.Open(*path, unix.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", *path, err)
	}
	defer unix.Close(fd)
	// A magic close, as a watchdog daemon leaving on purpose does: an
	// unexpected close pats the timer (ipmi_watchdog starts it then), and
	// the BMC would reset the machine 10 s later.
	defer unix.Write(fd, []byte("V"))
	pid, tid := unix.Getpid(), unix.Gettid()
	started := make(chan time.Time, 1)
	go func() {
		for {
			if _, err := os.Stat(*trigger); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		started <- time.Now()
		for {
			unix.Tgkill(pid, tid, unix.SIGURG)
			time.Sleep(200 * time.Millisecond)
		}
	}()
	fmt.Println("wdread: reading")
	buf := make([]byte, 1)
	for {
		n, err := unix.Read(fd, buf)
		var t0 time.Time
		select {
		case t0 = <-started:
			started <- t0
		default:
		}
		if err == unix.EINTR && t0.IsZero() {
			continue // interrupted before the trigger: read again
		}
		after := "before the trigger"
		if !t0.IsZero() {
			after = fmt.Sprintf("%.1f s after the trigger", time.Since(t0).Seconds())
		}
		if err != nil {
			fmt.Printf("wdread: read ended with %v, %s\n", err, after)
		} else {
			fmt.Printf("wdread: read %d bytes, %s\n", n, after)
		}
		return nil
	}
}
