package ioctl_test

import (
	"bytes"
	"sync"
	"syscall"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl/iotest"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// fakeBridge records what the device hands it.
type fakeBridge struct {
	mu       sync.Mutex
	errno    syscall.Errno
	sent     []ioctl.BridgeRequest
	events   []sched.Owner
	released []sched.Owner
}

func (b *fakeBridge) Send(r ioctl.BridgeRequest) syscall.Errno {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.errno != 0 {
		return b.errno
	}
	b.sent = append(b.sent, r)
	return 0
}

func (b *fakeBridge) GetsEvents(o sched.Owner) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, o)
}

func (b *fakeBridge) Release(o sched.Owner) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.released = append(b.released, o)
}

func noSubmit(*sched.Request) error { return sched.ErrClosed }

func ipmb(ch int16, sa, lun uint8) []byte {
	return ioctl.IPMBAddr{AddrType: ioctl.IPMBAddrType, Channel: ch, SlaveAddr: sa, LUN: lun}.Encode()
}

// TestBridgeSend: IPMB, broadcast and LAN sends reach the Bridge with the
// timing of SETTIME or of the file's defaults; the Bridge's errno is the
// ioctl's; without a Bridge they fail with EINVAL.
func TestBridgeSend(t *testing.T) {
	lan := ioctl.LANAddr{AddrType: ioctl.LANAddrType, Channel: 1, SessionHandle: 3, RemoteSWID: 0x81, LocalSWID: 0x41, LUN: 2}.Encode()
	bcast := ioctl.IPMBAddr{AddrType: ioctl.IPMBBroadcastAddrType, Channel: 0, SlaveAddr: 0x72}.Encode()
	tests := []struct {
		name        string
		addr        []byte
		settime     bool
		retries     int32
		ms          uint32
		defRetries  int32
		defMs       uint32
		wantRetries int32
		wantMs      uint32
	}{
		{name: "ipmb defaults", addr: ipmb(0, 0x72, 0), wantRetries: -1, wantMs: 0},
		{name: "ipmb file timing", addr: ipmb(0, 0x72, 0), defRetries: 1, defMs: 500, wantRetries: 1, wantMs: 500},
		{name: "ipmb settime", addr: ipmb(0, 0x72, 0), settime: true, retries: 0, ms: 100, defRetries: 3, defMs: 700, wantRetries: 0, wantMs: 100},
		{name: "broadcast", addr: bcast, wantRetries: -1},
		{name: "lan", addr: lan, wantRetries: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := &fakeBridge{}
			d := ioctl.NewDevice(ioctl.Config{Submit: noSubmit, Bridge: br})
			f, _ := d.Open(t.Context(), 0)
			c := iotest.NewClient(f)
			if tt.defRetries != 0 || tt.defMs != 0 {
				c.SetTimingParms(tt.defRetries, tt.defMs)
			} else {
				c.SetTimingParms(-1, 0)
			}
			var errno syscall.Errno
			if tt.settime {
				errno = c.SendSettime(tt.addr, 99, 0x06, 0x01, []byte{7}, tt.retries, tt.ms)
			} else {
				errno = c.Send(tt.addr, 99, 0x06, 0x01, []byte{7})
			}
			if errno != 0 {
				t.Fatalf("send: %v", errno)
			}
			if len(br.sent) != 1 {
				t.Fatalf("bridge got %d requests", len(br.sent))
			}
			r := br.sent[0]
			if r.Owner != f.(*ioctl.File).Owner() || r.MsgID != 99 || r.NetFn != 6 || r.Cmd != 1 || !bytes.Equal(r.Data, []byte{7}) ||
				r.Retries != tt.wantRetries || r.RetryTimeMs != tt.wantMs || r.Addr.AddrType != int32(tt.addr[0]) {
				t.Fatalf("bridge request %+v", r)
			}
		})
	}
	t.Run("errno passes through", func(t *testing.T) {
		br := &fakeBridge{errno: syscall.EAGAIN}
		d := ioctl.NewDevice(ioctl.Config{Submit: noSubmit, Bridge: br})
		f, _ := d.Open(t.Context(), 0)
		if errno := iotest.NewClient(f).Send(ipmb(0, 0x72, 0), 1, 6, 1, nil); errno != syscall.EAGAIN {
			t.Fatalf("errno %v, want EAGAIN", errno)
		}
	})
	t.Run("no bridge", func(t *testing.T) {
		d := ioctl.NewDevice(ioctl.Config{Submit: noSubmit})
		f, _ := d.Open(t.Context(), 0)
		if errno := iotest.NewClient(f).Send(ipmb(0, 0x72, 0), 1, 6, 1, nil); errno != syscall.EINVAL {
			t.Fatalf("errno %v, want EINVAL", errno)
		}
	})
}

// TestBridgeDelivery: Deliver, DeliverEvent, CmdReceiver, MyAddress and
// the GetsEvents/Release notifications.
func TestBridgeDelivery(t *testing.T) {
	br := &fakeBridge{}
	d := ioctl.NewDevice(ioctl.Config{Submit: noSubmit, Bridge: br, MaxMsgsPerUser: 2})
	f1, _ := d.Open(t.Context(), 0)
	f2, _ := d.Open(t.Context(), 0)
	c1, c2 := iotest.NewClient(f1), iotest.NewClient(f2)
	o1, o2 := f1.(*ioctl.File).Owner(), f2.(*ioctl.File).Owner()

	if d.EventListeners() != 0 {
		t.Fatal("listeners before any SET_GETS_EVENTS")
	}
	c2.SetGetsEvents(true)
	if d.EventListeners() != 1 || len(br.events) != 1 || br.events[0] != o2 {
		t.Fatalf("listeners %d, GetsEvents calls %v", d.EventListeners(), br.events)
	}
	ev := ioctl.Message{RecvType: ioctl.AsyncEventRecvType,
		Addr:  ioctl.SystemInterfaceAddr{AddrType: ioctl.SystemInterfaceAddrType, Channel: ioctl.BMCChannel}.Encode(),
		NetFn: 0x07, Cmd: 0x35, Data: bytes.Repeat([]byte{1}, 16)}
	if n := d.DeliverEvent(ev); n != 1 {
		t.Fatalf("event delivered to %d files", n)
	}
	if _, errno := c1.Receive(); errno != syscall.EAGAIN {
		t.Fatalf("file without gets_events got something: %v", errno)
	}
	got, errno := c2.Receive()
	if errno != 0 || got.RecvType != 2 || got.NetFn != 7 || got.Cmd != 0x35 || len(got.Data) != 16 || len(got.Addr) != 8 {
		t.Fatalf("event: %v %+v", errno, got)
	}

	// Replies end an in-flight message; unsolicited messages do not.
	if errno := c1.Send(ipmb(0, 0x72, 0), 1, 6, 1, nil); errno != 0 {
		t.Fatal(errno)
	}
	if errno := c1.Send(ipmb(0, 0x72, 0), 2, 6, 1, nil); errno != 0 {
		t.Fatal(errno)
	}
	if errno := c1.Send(ipmb(0, 0x72, 0), 3, 6, 1, nil); errno != syscall.EBUSY {
		t.Fatalf("third send with MaxMsgsPerUser 2: %v", errno)
	}
	rsp := ioctl.Message{RecvType: ioctl.ResponseRecvType, Addr: ipmb(0, 0x72, 0), MsgID: 1, NetFn: 7, Cmd: 1, Data: []byte{0}}
	if !d.Deliver(o1, rsp) {
		t.Fatal("Deliver to an open file failed")
	}
	if _, errno := c1.Receive(); errno != 0 {
		t.Fatal(errno)
	}
	if errno := c1.Send(ipmb(0, 0x72, 0), 3, 6, 1, nil); errno != 0 {
		t.Fatalf("send after a reply freed a slot: %v", errno)
	}

	if errno := c1.RegisterChans(0x30, 0x01, 1<<0); errno != 0 {
		t.Fatal(errno)
	}
	if o, ok := d.CmdReceiver(0x30, 0x01, 0); !ok || o != o1 {
		t.Fatalf("CmdReceiver ch0 = %v %v", o, ok)
	}
	if _, ok := d.CmdReceiver(0x30, 0x01, 1); ok {
		t.Fatal("CmdReceiver on an unregistered channel")
	}
	if a, l := d.MyAddress(0); a != 0x20 || l != 2 {
		t.Fatalf("MyAddress = %#x %d", a, l)
	}

	f1.Release()
	if d.Deliver(o1, rsp) {
		t.Fatal("Deliver to a closed file succeeded")
	}
	if len(br.released) != 1 || br.released[0] != o1 {
		t.Fatalf("Release calls %v", br.released)
	}
	if _, ok := d.CmdReceiver(0x30, 0x01, 0); ok {
		t.Fatal("registration survived close")
	}
}
