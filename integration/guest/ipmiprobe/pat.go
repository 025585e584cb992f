package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
)

// IPMI watchdog commands (netfn App) and the completion code of a Reset
// on a BMC that lost its settings (IPMI v2.0 §27.5).
const (
	cmdResetWatchdog = 0x22
	cmdSetWatchdog   = 0x24
	ccNotInitialised = 0x80
)

// errPatWait is a pat that got no reply within -wait.
var errPatWait = errors.New("no reply")

// runPat is a userspace watchdog daemon on /dev/ipmi0, like bmc-watchdog or
// a loop of `ipmitool mc watchdog reset`: it arms the BMC watchdog (SMS/OS,
// hard reset, messaging-interrupt pretimeout), then pats it with Reset
// Watchdog Timer, sleeping -interval after each pat's reply, until SIGTERM
// or -duration. A pat answered 0x80 (the BMC rebooted and lost its
// settings) re-arms with Set and pats again. At the end it stops the timer
// and prints one line:
//
//	pat n=N ok=O rearm=R errors=E p50_ms=P p99_ms=Q max_ms=X max_gap_ms=G
//
// where a pat's latency runs from its SEND to its reply, and the gap is
// the time between two consecutive pats the BMC accepted.
func runPat(args []string) error {
	fs := flag.NewFlagSet("pat", flag.ContinueOnError)
	interval := fs.Duration("interval", 2*time.Second, "sleep between a pat's reply and the next pat")
	timeout := fs.Int("timeout", 20, "watchdog countdown, seconds")
	pretimeout := fs.Int("pretimeout", 10, "pretimeout, seconds before expiry (0: none)")
	duration := fs.Duration("duration", time.Hour, "stop after this long (SIGTERM stops earlier)")
	wait := fs.Duration("wait", 5*time.Minute, "longest wait for one reply")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, *duration)
	defer cancel2()
	d, err := newDev()
	if err != nil {
		return err
	}
	defer d.Close()
	p := &patter{d: d, wait: *wait}
	pre, intType := byte(*pretimeout), byte(0x30) // messaging interrupt
	if *pretimeout == 0 {
		intType = 0
	}
	count := uint16(*timeout * 10)
	arm := []byte{0x44, intType | 0x01, pre, 0, byte(count), byte(count >> 8)}
	stopSet := []byte{0x04, 0x00, 0, 0, byte(count), byte(count >> 8)}
	if cc, _, err := p.do(cmdSetWatchdog, arm); err != nil || cc != 0 {
		return fmt.Errorf("pat: arming the watchdog: cc %#x, %v", cc, err)
	}
	var lat []time.Duration
	var last time.Time
	var maxGap time.Duration
	n, ok, rearm, errs := 0, 0, 0, 0
	for ctx.Err() == nil {
		cc, d, err := p.do(cmdResetWatchdog, nil)
		n++
		lat = append(lat, d)
		if d > time.Second {
			fmt.Fprintf(os.Stderr, "info: pat %d took %v (cc %#x, %v)\n", n, d.Round(time.Millisecond), cc, err)
		}
		if err == nil && cc == ccNotInitialised {
			rearm++
			fmt.Fprintf(os.Stderr, "info: pat %d: 0x80, re-arming\n", n)
			if cc2, _, err2 := p.do(cmdSetWatchdog, arm); err2 == nil && cc2 == 0 {
				cc, _, err = p.do(cmdResetWatchdog, nil)
			}
		}
		if err == nil && cc == 0 {
			ok++
			now := time.Now()
			if !last.IsZero() {
				maxGap = max(maxGap, now.Sub(last))
			}
			last = now
		} else {
			errs++
		}
		select {
		case <-ctx.Done():
		case <-time.After(*interval):
		}
	}
	if cc, _, err := p.do(cmdSetWatchdog, stopSet); err != nil || cc != 0 {
		fmt.Fprintf(os.Stderr, "info: stopping the watchdog: cc %#x, %v\n", cc, err)
	}
	slices.Sort(lat)
	fmt.Printf("pat n=%d ok=%d rearm=%d errors=%d p50_ms=%.0f p99_ms=%.0f max_ms=%.0f max_gap_ms=%.0f\n",
		n, ok, rearm, errs, pctMS(lat, 0.5), pctMS(lat, 0.99), pctMS(lat, 1), float64(maxGap)/float64(time.Millisecond))
	return nil
}

// patter sends one watchdog command at a time on its own file.
type patter struct {
	d     dev
	wait  time.Duration
	msgid int64
}

// do sends netfn App cmd with data and waits for its reply; it returns
// the completion code and the round-trip time. Stale replies (to a
// request given up on earlier) are skipped by msgid.
func (p *patter) do(cmd uint8, data []byte) (byte, time.Duration, error) {
	p.msgid++
	start := time.Now()
	if e := p.d.Send(ioctl.NetFnApp, cmd, data, p.msgid); e != 0 {
		return 0, time.Since(start), fmt.Errorf("send: %s", errName(e))
	}
	end := start.Add(p.wait)
	for {
		left := time.Until(end)
		if left <= 0 {
			return 0, time.Since(start), errPatWait
		}
		ok, err := p.d.Wait(left)
		if err != nil {
			return 0, time.Since(start), err
		}
		if !ok {
			continue
		}
		r := p.d.Take(64)
		if r.errno != 0 && r.errno != unix.EMSGSIZE {
			continue
		}
		if r.recv.MsgID != p.msgid || r.recv.RecvType != 1 {
			continue
		}
		d := time.Since(start)
		if len(r.data) == 0 {
			return 0, d, fmt.Errorf("empty reply")
		}
		return r.data[0], d, nil
	}
}

// runSlowBMC dispatches the slow-BMC watchdog scenario's subcommands:
//
//	ipmiprobe flood -clients C -depth D -duration T   application requests, many outstanding
//	ipmiprobe pat -interval I -timeout S -pretimeout P   a /dev/ipmi0 watchdog daemon
func runSlowBMC(sub string, args []string) error {
	if sub == "flood" {
		return runFlood(args)
	}
	return runPat(args)
}
