package main

import (
	"flag"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// netFnSensorEvent and cmdGetSensorReading address Get Sensor Reading
// (IPMI v2.0 35.14).
const (
	netFnSensorEvent    = 0x04
	cmdGetSensorReading = 0x2d
)

// runAwaitSensor polls Get Sensor Reading of sensor -num through
// /dev/ipmi0 until its raw reading is -value, then exits 0; after
// -timeout it fails. The host's test harness drives the simulated BMC and
// sets that reading when its fault timeline is over, so a guest script can
// keep its load running exactly as long as the host's timeline lasts,
// whatever the relative speed of the guest and the host:
//
//	ipmiprobe await-sensor -num 3 -value 0xee -timeout 5m
//
// Each poll waits for its own reply (a BMC under a fault answers slowly or
// with an error completion code, which only means "not yet").
func runAwaitSensor(args []string) error {
	fs := flag.NewFlagSet("await-sensor", flag.ContinueOnError)
	num := fs.Uint("num", 3, "sensor number")
	value := fs.Uint("value", 0xee, "raw reading that ends the wait")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	every := fs.Duration("every", 500*time.Millisecond, "pause between polls")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *num > 0xff || *value > 0xff {
		return fmt.Errorf("await-sensor: -num and -value are bytes")
	}
	d, err := newDev()
	if err != nil {
		return err
	}
	defer d.Close()
	end := time.Now().Add(*timeout)
	polls, last := 0, "no reply yet"
	for msgid := int64(1); time.Now().Before(end); msgid++ {
		polls++
		if e := d.Send(netFnSensorEvent, cmdGetSensorReading, []byte{byte(*num)}, msgid); e != 0 {
			last = "send: " + errName(e)
			time.Sleep(*every)
			continue
		}
		for {
			r := d.Next(end)
			if r.errno == unix.ETIMEDOUT {
				break
			}
			if (r.errno != 0 && r.errno != unix.EMSGSIZE) || r.recv.MsgID != msgid || r.recv.RecvType != 1 {
				continue // a stale reply to a poll given up on
			}
			switch {
			case len(r.data) < 2:
				last = fmt.Sprintf("reply %x", r.data)
			case r.data[0] != 0:
				last = fmt.Sprintf("cc %#02x", r.data[0])
			case r.data[1] == byte(*value):
				fmt.Printf("await-sensor: sensor %#x read %#x after %d polls\n", *num, r.data[1], polls)
				return nil
			default:
				last = fmt.Sprintf("reading %#x", r.data[1])
			}
			break
		}
		time.Sleep(*every)
	}
	return fmt.Errorf("await-sensor: sensor %#x not %#x after %v and %d polls (last: %s)", *num, *value, *timeout, polls, last)
}
