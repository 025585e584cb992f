package main

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/u-root/u-root/pkg/ipmi"
)

// runURoot drives /dev/ipmi0 through u-root's pkg/ipmi, the Go client the
// acceptance criteria name: it uses the Go runtime's poller on the device
// (SetReadDeadline, RawConn.Read), random 63-bit msgids and RECEIVE_MSG_TRUNC.
// It prints every result or error; none of them depends on timing.
func runURoot() error {
	d, err := ipmi.Open(0)
	if err != nil {
		return fmt.Errorf("ipmi.Open(0): %w", err)
	}
	defer d.Close()

	show := func(name string, v any, err error) {
		if err != nil {
			fmt.Printf("%s: error: %v\n", name, err)
			return
		}
		fmt.Printf("%s: %+v\n", name, v)
	}
	id, err := d.GetDeviceID()
	show("GetDeviceID", id, err)
	cs, err := d.GetChassisStatus()
	show("GetChassisStatus", cs, err)
	sel, err := d.GetSELInfo()
	show("GetSELInfo", sel, err)
	wd, err := d.WatchdogRunning()
	show("WatchdogRunning", wd, err)
	raw := func(name string, b ...byte) {
		r, err := d.RawCmd(b)
		show(name, fmt.Sprintf("% x", r), err)
	}
	raw("RawCmd_get_device_id", 0x06, 0x01)
	raw("RawCmd_get_self_test", 0x06, 0x04)
	raw("RawCmd_invalid_cmd", 0x06, 0xf0)
	raw("RawCmd_invalid_netfn", 0x30, 0x01)
	raw("RawCmd_get_sel_info", 0x0a, 0x40)
	raw("RawCmd_get_message_owned_by_driver", 0x06, 0x33)
	raw("RawCmd_response_netfn", 0x07, 0x01)
	raw("RawCmd_too_long", append([]byte{0x06, 0x01}, bytes.Repeat([]byte{0}, 271)...)...)
	lan, err := d.GetLanConfig(1, 0)
	show("GetLanConfig", fmt.Sprintf("% x", lan), err)

	// Several clients at once, each with its own file: every one must get
	// its own replies (u-root rejects a reply whose msgid is not its own).
	const clients, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ipmi.Open(0)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for range each {
				got, err := c.GetDeviceID()
				if err == nil && id != nil && *got != *id {
					err = fmt.Errorf("device ID %+v, want %+v", got, id)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n == 0 {
			fmt.Printf("concurrent_first_error: %v\n", err)
		}
		n++
	}
	fmt.Printf("concurrent: %d clients x %d GetDeviceID, %d errors\n", clients, each, n)
	return nil
}
