package iotest_test

import (
	"bytes"
	"syscall"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl/iotest"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// TestClientRoundTrip: a system-interface request and its reply through the
// fake process, and the errors a caller sees.
func TestClientRoundTrip(t *testing.T) {
	d := ioctl.NewDevice(ioctl.Config{Submit: func(r *sched.Request) error {
		r.Resp = append(r.Resp[:0], r.Msg[0]|4, r.Msg[1], 0x00)
		r.Resp = append(r.Resp, r.Msg[2:]...)
		r.Done(r)
		return nil
	}})
	f, _ := d.Open(t.Context(), 0)
	c := iotest.NewClient(f)
	if _, errno := c.Receive(); errno != syscall.EAGAIN {
		t.Fatalf("empty queue: %v", errno)
	}
	si := ioctl.SystemInterfaceAddr{AddrType: ioctl.SystemInterfaceAddrType, Channel: ioctl.BMCChannel}.Encode()
	if errno := c.Send(si, 42, 0x06, 0x01, []byte{9, 8}); errno != 0 {
		t.Fatal(errno)
	}
	got, errno := c.Receive()
	if errno != 0 || got.RecvType != 1 || got.MsgID != 42 || got.NetFn != 7 || got.Cmd != 1 || !bytes.Equal(got.Data, []byte{0, 9, 8}) ||
		!bytes.Equal(got.Addr, si) {
		t.Fatalf("got %v %+v", errno, got)
	}
	if errno := c.Send(si, 1, 0x06, 0x33, nil); errno != syscall.EINVAL {
		t.Fatalf("Get Message from a user: %v, want EINVAL", errno)
	}
	if errno := c.Register(6, 1); errno != 0 {
		t.Fatal(errno)
	}
	if errno := c.Unregister(6, 1); errno != 0 {
		t.Fatal(errno)
	}
	if errno := c.SetMaintenanceMode(7); errno != syscall.EINVAL {
		t.Fatalf("maintenance mode 7: %v", errno)
	}
}
