package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// runSendInFlight puts one IPMI SEND ioctl in flight in the daemon, for a
// test that kills or upgrades the daemon meanwhile, and reports how it
// ended. With the BMC slowed down, an idle daemon runs the transaction on
// its CUSE reader before it answers SEND (sched.ServeInline), so SEND
// itself stays in flight for the BMC's delay. It prints the boot-time
// clock (/proc/uptime's) at which SEND started and returned with its
// errno, then the reply it received (msgid, completion code) and whether
// any second message came within -extra: "answered exactly once" is one
// reply with its msgid and no second. Once the file -trigger exists it
// signals its thread every 200 ms (SIGURG, as wdread) while SEND blocks,
// so a SEND nobody will ever answer ends with EINTR instead of hanging.
func runSendInFlight(args []string) error {
	fs := flag.NewFlagSet("sendinflight", flag.ContinueOnError)
	fs.StringVar(&devPath, "dev", devPath, "IPMI device")
	trigger := fs.String("trigger", "/tmp/send.go", "interrupt a blocked SEND once this file exists")
	wait := fs.Duration("wait", 60*time.Second, "longest wait for the reply")
	extra := fs.Duration("extra", 5*time.Second, "how long to watch for a second reply")
	if err := fs.Parse(args); err != nil {
		return err
	}
	runtime.LockOSThread()
	d, err := newDev()
	if err != nil {
		return err
	}
	defer d.Close()
	pid, tid := unix.Getpid(), unix.Gettid()
	var sending atomic.Bool
	sending.Store(true)
	go func() {
		for sending.Load() {
			if _, err := os.Stat(*trigger); err == nil {
				unix.Tgkill(pid, tid, unix.SIGURG)
				time.Sleep(200 * time.Millisecond)
				continue
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	const msgid = 4242
	fmt.Println("sendinflight: sending")
	start := boottime()
	e := d.Send(0x06, 0x01, nil, msgid)
	end := boottime()
	sending.Store(false)
	fmt.Printf("sendinflight: send start=%.2f end=%.2f errno=%s\n", start, end, errName(e))
	if e != 0 {
		r := d.Next(time.Now().Add(*extra))
		fmt.Printf("sendinflight: reply none; then %s\n", r)
		return nil
	}
	r := d.Next(time.Now().Add(*wait))
	if r.errno != 0 {
		fmt.Printf("sendinflight: reply none (%s)\n", errName(r.errno))
		return nil
	}
	cc := -1
	if len(r.data) > 0 {
		cc = int(r.data[0])
	}
	fmt.Printf("sendinflight: reply msgid=%d cc=%#02x at=%.2f\n", r.recv.MsgID, cc, boottime())
	if r2 := d.Next(time.Now().Add(*extra)); r2.errno == unix.ETIMEDOUT {
		fmt.Println("sendinflight: second none")
	} else {
		fmt.Printf("sendinflight: second %s\n", r2)
	}
	return nil
}

// boottime is CLOCK_BOOTTIME in seconds, the clock of /proc/uptime.
func boottime() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return float64(ts.Nano()) / 1e9
}
