package main

import (
	"flag"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
)

// runBench measures Get Device ID round trips through /dev/ipmi0 in one
// process: SEND_COMMAND, poll, RECEIVE_MSG_TRUNC, with -depth requests
// outstanding at a time (1: strictly sequential). Each request's latency
// runs from just before its SEND to just after its RECEIVE. It prints one
// line:
//
//	bench depth=D n=N errors=E elapsed_ms=T req_per_s=R p50_us=P p99_us=Q
func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	n := fs.Int("n", 1000, "measured requests")
	depth := fs.Int("depth", 1, "requests outstanding at a time")
	warmup := fs.Int("warmup", 50, "unmeasured requests first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *depth < 1 {
		return fmt.Errorf("bench: -n and -depth must be positive")
	}
	a, err := newArena()
	if err != nil {
		return err
	}
	fd, err := openDev()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, errs, err := pipeline(a, fd, *warmup, *depth); err != nil || errs > 0 {
		return fmt.Errorf("bench warm-up: %d errors, %v", errs, err)
	}
	start := time.Now()
	lat, errs, err := pipeline(a, fd, *n, *depth)
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	slices.Sort(lat)
	pct := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Microsecond)
	}
	fmt.Printf("bench depth=%d n=%d errors=%d elapsed_ms=%.1f req_per_s=%.0f p50_us=%.0f p99_us=%.0f\n",
		*depth, *n, errs, float64(elapsed)/float64(time.Millisecond), float64(*n)/elapsed.Seconds(), pct(0.50), pct(0.99))
	return nil
}

// pipeline runs n Get Device ID requests with up to depth outstanding and
// returns each one's latency and how many failed (send error, bad reply).
func pipeline(a *arena, fd int, n, depth int) ([]time.Duration, int, error) {
	start := make([]time.Time, n)
	lat := make([]time.Duration, 0, n)
	sent, done, errs := 0, 0, 0
	send := func() {
		start[sent] = time.Now()
		if e := a.send(fd, ioctl.NetFnApp, 0x01, nil, int64(sent)); e != 0 {
			errs++
			done++
		}
		sent++
	}
	for sent < n && sent-done < depth {
		send()
	}
	for done < n {
		rev, err := waitReadable(fd, 10*time.Second)
		if err != nil {
			return nil, errs, err
		}
		if rev&unix.POLLIN == 0 {
			return nil, errs, fmt.Errorf("bench: no reply within 10 s (%d of %d done)", done, n)
		}
		for {
			r := a.receive(fd, ioctl.IoctlReceiveMsgTrunc, ioctl.SizeofAddr, 64)
			if r.errno == unix.EAGAIN {
				break
			}
			done++
			id := r.recv.MsgID
			if r.errno != 0 || id < 0 || id >= int64(sent) || len(r.data) == 0 || r.data[0] != 0 {
				errs++
			} else {
				lat = append(lat, time.Since(start[id]))
			}
			for sent < n && sent-done < depth {
				send()
			}
		}
	}
	return lat, errs, nil
}
