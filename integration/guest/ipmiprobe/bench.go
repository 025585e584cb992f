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
	fs.StringVar(&devPath, "dev", devPath, "device to measure")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *depth < 1 {
		return fmt.Errorf("bench: -n and -depth must be positive")
	}
	d, err := newDev()
	if err != nil {
		return err
	}
	defer d.Close()
	if _, errs, err := pipeline(d, *warmup, *depth); err != nil || errs > 0 {
		return fmt.Errorf("bench warm-up: %d errors, %v", errs, err)
	}
	start := time.Now()
	lat, errs, err := pipeline(d, *n, *depth)
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
func pipeline(d dev, n, depth int) ([]time.Duration, int, error) {
	start := make([]time.Time, n)
	lat := make([]time.Duration, 0, n)
	sent, done, errs := 0, 0, 0
	send := func() {
		start[sent] = time.Now()
		if e := d.Send(ioctl.NetFnApp, 0x01, nil, int64(sent)); e != 0 {
			errs++
			done++
		}
		sent++
	}
	for sent < n && sent-done < depth {
		send()
	}
	for done < n {
		ok, err := d.Wait(10 * time.Second)
		if err != nil {
			return nil, errs, err
		}
		if !ok {
			return nil, errs, fmt.Errorf("bench: no reply within 10 s (%d of %d done)", done, n)
		}
		d.Drain(64, func(r reply) bool {
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
			return true
		})
	}
	return lat, errs, nil
}

// runMicro times the pieces of a round trip separately, n times each, to
// show where a slow round trip spends its time: an ioctl that needs one
// CUSE retry round (GET_TIMING_PARMS), RECEIVE on an empty queue (copy-in
// round, then EAGAIN), poll() with nothing queued, SEND alone (its replies
// drained untimed), and a whole Get Device ID round trip. It prints one
// "micro OP avg_us=A" line per piece.
func runMicro(args []string) error {
	fs := flag.NewFlagSet("micro", flag.ContinueOnError)
	n := fs.Int("n", 200, "calls per piece")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := newDev()
	if err != nil {
		return err
	}
	defer d.Close()
	timeIt := func(name string, f func(i int) error) error {
		start := time.Now()
		for i := range *n {
			if err := f(i); err != nil {
				return fmt.Errorf("micro %s: %w", name, err)
			}
		}
		fmt.Printf("micro %s avg_us=%.1f\n", name, float64(time.Since(start))/float64(*n)/float64(time.Microsecond))
		return nil
	}
	errOf := func(e, want unix.Errno) error {
		if e != want {
			return fmt.Errorf("got %s, want %s", errName(e), errName(want))
		}
		return nil
	}
	steps := []struct {
		name string
		f    func(i int) error
	}{
		{"get_timing_parms", func(int) error {
			return errOf(ioctlRaw(d.fd, ioctl.IoctlGetTimingParms, d.a.at(offArg)), 0)
		}},
		{"receive_empty", func(int) error {
			return errOf(d.Take(64).errno, unix.EAGAIN)
		}},
		{"poll_empty", func(int) error {
			_, err := waitReadable(d.fd, 0)
			return err
		}},
		{"round_trip", func(i int) error {
			return errOf(d.RoundTrip(int64(i)).errno, 0)
		}},
	}
	for _, s := range steps {
		if err := timeIt(s.name, s.f); err != nil {
			return err
		}
	}
	// SEND alone: batches of 50 timed, each drained untimed.
	var sendTime time.Duration
	for b := 0; b < *n; b += 50 {
		start := time.Now()
		for i := range 50 {
			if e := d.Send(ioctl.NetFnApp, 0x01, nil, int64(b+i)); e != 0 {
				return fmt.Errorf("micro send_only: %s", errName(e))
			}
		}
		sendTime += time.Since(start)
		for got := 0; got < 50; {
			if _, err := d.Wait(10 * time.Second); err != nil {
				return err
			}
			d.Drain(64, func(r reply) bool {
				if r.errno != 0 {
					return false
				}
				got++
				return true
			})
		}
	}
	fmt.Printf("micro send_only avg_us=%.1f\n", float64(sendTime)/float64((*n+49)/50*50)/float64(time.Microsecond))
	return nil
}
