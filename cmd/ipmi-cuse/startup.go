package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times;
// 100 on every architecture Linux supports.
const clockTicks = 100

// atMain is how old the process was when main() began (from the service
// manager's fork: its sandbox set-up, the exec and Go's start-up) and the
// CPU time it had used by then. With the same figures when the daemon
// serves (see startupAttrs), a slow restart shows where its time went.
var atMain struct{ age, cpu time.Duration }

// noteMain records atMain; main calls it first.
func noteMain() {
	atMain.age, _ = processAge()
	atMain.cpu = cpuUsed()
}

// startupAttrs are log attributes saying how long the process took to
// serve since its fork, and how much CPU that took, split at main().
func startupAttrs() []any {
	age, err := processAge()
	if err != nil {
		return nil
	}
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return []any{"started_in", r(age), "cpu", r(cpuUsed()), "main_after", r(atMain.age), "cpu_before_main", r(atMain.cpu)}
}

// processAge returns how long ago this process was forked, by
// CLOCK_BOOTTIME, the clock of /proc/PID/stat's start time.
func processAge() (time.Duration, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, fmt.Errorf("process start time: %w", err)
	}
	// The fields after the command name, which is in parentheses and may
	// hold anything: starttime is field 22, the 20th after ")".
	i := bytes.LastIndexByte(b, ')')
	f := bytes.Fields(b[i+1:])
	if i < 0 || len(f) < 20 {
		return 0, fmt.Errorf("process start time: /proc/self/stat is %q", b)
	}
	ticks, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("process start time: %w", err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0, fmt.Errorf("process start time: %w", err)
	}
	return time.Duration(ts.Nano()) - time.Duration(ticks)*time.Second/clockTicks, nil
}

// cpuUsed is the CPU time this process has used, user and system, before
// and after exec.
func cpuUsed() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
