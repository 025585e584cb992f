package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
)

// floodCmds are the application requests a flood client cycles through:
// all answered by any BMC with no side effect, each with its own command
// number so a reply carrying the wrong msgid shows as a netfn/cmd mismatch.
var floodCmds = []struct{ netfn, cmd uint8 }{
	{ioctl.NetFnApp, 0x01}, // Get Device ID
	{ioctl.NetFnApp, 0x04}, // Get Self Test Results
	{ioctl.NetFnApp, 0x08}, // Get Device GUID
	{ioctl.NetFnApp, 0x37}, // Get System GUID
}

// floodClient is one open /dev/ipmi0 with its own counters.
type floodClient struct {
	id          int64
	sent        int
	ebusy       int            // SEND refused with EBUSY (per-user limit: backpressure)
	sendErr     map[string]int // SEND refused with another errno
	answered    int
	misrouted   int // reply for a msgid this client has not outstanding, or wrong netfn/cmd
	lost        int // outstanding when the drain deadline passed
	recvErr     int
	cc          map[byte]int
	outstanding map[int64]floodReq
	lat         []time.Duration
}

type floodReq struct {
	netfn, cmd uint8
	at         time.Time
}

// runFlood keeps -depth application requests outstanding on each of
// -clients open files for -duration, then stops sending and waits up to
// -drain for every reply. It checks that each accepted request gets
// exactly one reply with its own msgid and netfn/cmd, and prints one
// summary line:
//
//	flood clients=C depth=D sent=S answered=A lost=L misrouted=M ebusy=B send_errors=E recv_errors=R cc_00=.. cc_c3=.. ... p50_ms=P p99_ms=Q max_ms=X
//
// EBUSY is the per-user limit on outstanding requests (backpressure), not
// an error: the client waits for a reply and sends again. SIGUSR1 ends the
// sending early (the drain follows), so a script can tie the flood to an
// event instead of a guessed duration.
func runFlood(args []string) error {
	fs := flag.NewFlagSet("flood", flag.ContinueOnError)
	clients := fs.Int("clients", 8, "open files sending at once")
	depth := fs.Int("depth", 32, "requests outstanding per file")
	duration := fs.Duration("duration", 30*time.Second, "how long to keep sending")
	drain := fs.Duration("drain", 150*time.Second, "how long to wait for the last replies after sending stops")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *clients < 1 || *depth < 1 {
		return fmt.Errorf("flood: -clients and -depth must be positive")
	}
	cs := make([]*floodClient, *clients)
	errs := make([]error, *clients)
	stop := time.Now().Add(*duration)
	var stopped atomic.Bool
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		if _, ok := <-usr1; ok {
			stopped.Store(true)
		}
	}()
	var wg sync.WaitGroup
	for i := range cs {
		cs[i] = &floodClient{id: int64(i), sendErr: map[string]int{}, cc: map[byte]int{}, outstanding: map[int64]floodReq{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = cs[i].run(*depth, stop, *drain, &stopped)
		}()
	}
	wg.Wait()
	var tot floodClient
	tot.sendErr, tot.cc = map[string]int{}, map[byte]int{}
	for _, c := range cs {
		tot.sent += c.sent
		tot.ebusy += c.ebusy
		tot.answered += c.answered
		tot.misrouted += c.misrouted
		tot.lost += c.lost
		tot.recvErr += c.recvErr
		tot.lat = append(tot.lat, c.lat...)
		for k, v := range c.sendErr {
			tot.sendErr[k] += v
		}
		for k, v := range c.cc {
			tot.cc[k] += v
		}
	}
	nSendErr := 0
	for _, v := range tot.sendErr {
		nSendErr += v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "flood clients=%d depth=%d sent=%d answered=%d lost=%d misrouted=%d ebusy=%d send_errors=%d recv_errors=%d",
		*clients, *depth, tot.sent, tot.answered, tot.lost, tot.misrouted, tot.ebusy, nSendErr, tot.recvErr)
	ccs := make([]int, 0, len(tot.cc))
	for k := range tot.cc {
		ccs = append(ccs, int(k))
	}
	slices.Sort(ccs)
	for _, k := range ccs {
		fmt.Fprintf(&b, " cc_%02x=%d", k, tot.cc[byte(k)])
	}
	slices.Sort(tot.lat)
	fmt.Fprintf(&b, " p50_ms=%.0f p99_ms=%.0f max_ms=%.0f", pctMS(tot.lat, 0.5), pctMS(tot.lat, 0.99), pctMS(tot.lat, 1))
	fmt.Println(b.String())
	for k, v := range tot.sendErr {
		fmt.Fprintf(os.Stderr, "info: flood send errors %s=%d\n", k, v)
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// pctMS is the q-quantile of sorted durations in milliseconds (q=1: max).
func pctMS(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	return float64(d[min(len(d)-1, int(q*float64(len(d))))]) / float64(time.Millisecond)
}

// run is one client's loop: keep depth requests outstanding until stop or
// until stopped is set, then drain until every reply came or drain passed.
func (c *floodClient) run(depth int, stop time.Time, drain time.Duration, stopped *atomic.Bool) error {
	d, err := newDev()
	if err != nil {
		return err
	}
	defer d.Close()
	seq := int64(0)
	var deadline time.Time
	for {
		now := time.Now()
		sending := now.Before(stop) && !stopped.Load()
		if !sending && deadline.IsZero() {
			deadline = now.Add(drain)
		}
		if !sending && len(c.outstanding) == 0 {
			return nil
		}
		if !sending && now.After(deadline) {
			c.lost += len(c.outstanding)
			return nil
		}
		for sending && len(c.outstanding) < depth {
			fc := floodCmds[seq%int64(len(floodCmds))]
			id := c.id<<32 | seq
			e := d.Send(fc.netfn, fc.cmd, nil, id)
			if e == unix.EBUSY {
				c.ebusy++
				break
			}
			if e != 0 {
				c.sendErr[errName(e)]++
				// Do not spin on a refusing device.
				time.Sleep(10 * time.Millisecond)
				break
			}
			c.outstanding[id] = floodReq{fc.netfn, fc.cmd, time.Now()}
			c.sent++
			seq++
		}
		if len(c.outstanding) == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ok, err := d.Wait(100 * time.Millisecond)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		d.Drain(64, func(r reply) bool {
			if r.errno != 0 && r.errno != unix.EMSGSIZE {
				c.recvErr++
				return false
			}
			q, ok := c.outstanding[r.recv.MsgID]
			if !ok || r.recv.RecvType != 1 || r.recv.Msg.NetFn != q.netfn+1 || r.recv.Msg.Cmd != q.cmd || len(r.data) == 0 {
				c.misrouted++
				if ok {
					delete(c.outstanding, r.recv.MsgID)
				}
				return true
			}
			delete(c.outstanding, r.recv.MsgID)
			c.answered++
			c.cc[r.data[0]]++
			c.lat = append(c.lat, time.Since(q.at))
			return true
		})
	}
}
