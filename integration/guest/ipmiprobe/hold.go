package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// runHold keeps one /dev/ipmi0 (-dev) file open across daemon restarts and
// upgrades: it sends Get Device ID every interval on that same file and
// waits for each reply, until the duration ends or SIGTERM. It prints
// "hold n= ok= lost= errors= max_gap_ms=" (lost: no reply within the
// wait; errors by errno on stderr), so a test sees whether the file kept
// working and how long it was not served.
func runHold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	interval := fs.Duration("interval", 100*time.Millisecond, "pause between a reply and the next request")
	duration := fs.Duration("for", time.Minute, "how long to keep going")
	wait := fs.Duration("wait", 3*time.Second, "longest wait for one reply")
	fs.StringVar(&devPath, "dev", devPath, "device to hold")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := newDev()
	if err != nil {
		return err
	}
	defer d.Close()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	var n, ok, lost int
	errs := map[string]int{}
	lastOK := time.Now()
	var maxGap time.Duration
	end := time.Now().Add(*duration)
	for msgid := int64(1); time.Now().Before(end); msgid++ {
		select {
		case <-term:
			end = time.Now()
			continue
		default:
		}
		n++
		if e := d.Send(0x06, 0x01, nil, msgid); e != 0 {
			errs["send_"+errName(e)]++
			time.Sleep(*interval)
			continue
		}
		r := d.Next(time.Now().Add(*wait))
		switch {
		case r.errno == unix.ETIMEDOUT:
			lost++
		case r.errno != 0:
			errs["recv_"+errName(r.errno)]++
		case r.recv.MsgID != msgid:
			// A reply to an earlier, lost request turned up late.
			errs["stale_reply"]++
		default:
			ok++
			if g := time.Since(lastOK); g > maxGap {
				maxGap = g
			}
			lastOK = time.Now()
		}
		time.Sleep(*interval)
	}
	fmt.Printf("hold n=%d ok=%d lost=%d errors=%d max_gap_ms=%d\n", n, ok, lost, n-ok-lost, maxGap.Milliseconds())
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(os.Stderr, "info: hold %s=%d\n", k, errs[k])
	}
	return nil
}
