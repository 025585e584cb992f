package ioctl

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// hotKernel plays the kernel's side of the unrestricted ioctl protocol over
// a few fixed buffers without allocating, so that what a round trip
// allocates is what the device allocates. It reuses one IoctlIn for every
// round, as the CUSE server's reader does (cuse.Config.InlineIoctl).
type hotKernel struct {
	regions []hotRegion
	in      cuse.IoctlIn
	payload []byte
	outIovs [8]cuse.Iovec
	nOut    int
	rounds  int
}

type hotRegion struct {
	base uint64
	b    []byte
}

func (k *hotKernel) span(base, n uint64) []byte {
	for _, r := range k.regions {
		if base >= r.base && base+n <= r.base+uint64(len(r.b)) {
			return r.b[base-r.base : base-r.base+n]
		}
	}
	return nil
}

// ioctl runs one ioctl(2) to its end and returns the caller's errno.
func (k *hotKernel) ioctl(f *File, cmd uint32, arg uint64) syscall.Errno {
	k.in.Cmd, k.in.Arg, k.in.Flags, k.in.In, k.in.OutSize = cmd, arg, 2, nil, 0
	k.rounds = 0
	for {
		k.rounds++
		out := f.Ioctl(context.Background(), &k.in)
		if !out.Retry {
			if out.Errno != 0 {
				return out.Errno
			}
			rest := out.Out
			for _, iov := range k.outIovs[:k.nOut] {
				n := min(uint64(len(rest)), iov.Len)
				b := k.span(iov.Base, n)
				if b == nil {
					return syscall.EFAULT
				}
				copy(b, rest[:n])
				rest = rest[n:]
			}
			if out.Result < 0 {
				return syscall.Errno(-out.Result)
			}
			return 0
		}
		k.payload = k.payload[:0]
		for _, iov := range out.InIovs {
			b := k.span(iov.Base, iov.Len)
			if b == nil {
				return syscall.EFAULT
			}
			k.payload = append(k.payload, b...)
		}
		var outSize uint64
		k.nOut = copy(k.outIovs[:], out.OutIovs)
		for _, iov := range out.OutIovs {
			outSize += iov.Len
		}
		k.in.In, k.in.OutSize = k.payload, uint32(outSize)
	}
}

// getDeviceIDBMC answers like a BMC's Get Device ID (15 bytes), for any
// request, without allocating.
type getDeviceIDBMC struct{}

func (getDeviceIDBMC) Transact(msg, resp []byte, _ time.Time) ([]byte, error) {
	return append(resp[:0], msg[0]|4, msg[1], 0, 0x20, 0x01, 0x00, 0x48, 0x02, 0x9f, 0x57, 0x01, 0x00, 0x00, 0x00, 0x00), nil
}

// roundTrip is one client round trip on a file, as cbench and ipmitool
// make it: SEND_COMMAND (with data or not), poll, RECEIVE_MSG_TRUNC into
// the buffers it used last time.
type roundTrip struct {
	k     *hotKernel
	f     *File
	req   []byte // the SEND struct, at argBase
	recv  []byte // the RECEIVE struct, at argBase+0x100
	wake  func()
	woken chan struct{}
}

func newRoundTrip(tb testing.TB, dev *Device, dataLen int) *roundTrip {
	f, errno := dev.open()
	if errno != 0 {
		tb.Fatalf("open: %v", errno)
	}
	rt := &roundTrip{k: &hotKernel{payload: make([]byte, 0, 1024)}, f: f}
	rt.woken = make(chan struct{}, 1)
	rt.wake = func() {
		select {
		case rt.woken <- struct{}{}:
		default:
		}
	}
	req := Req{Addr: addrBase, AddrLen: SizeofSystemInterface, MsgID: 1, Msg: Msg{NetFn: NetFnApp, Cmd: 0x01}}
	data := make([]byte, MaxMsgLength)
	if dataLen > 0 {
		req.Msg.Data, req.Msg.DataLen = dataBase, uint16(dataLen)
	}
	rt.req = req.Encode()
	rt.recv = Recv{Addr: raddrBase, AddrLen: SizeofAddr, Msg: Msg{DataLen: MaxMsgLength, Data: rdataBase}}.Encode()
	rt.k.regions = []hotRegion{
		{argBase, rt.req},
		{argBase + 0x100, rt.recv},
		{addrBase, sysAddr(0)},
		{dataBase, data},
		{raddrBase, make([]byte, SizeofAddr)},
		{rdataBase, make([]byte, MaxMsgLength)},
	}
	return rt
}

// run makes one round trip and fails tb on any error.
func (rt *roundTrip) run(tb testing.TB) {
	if errno := rt.k.ioctl(rt.f, IoctlSendCommand, argBase); errno != 0 {
		tb.Fatalf("send: %v", errno)
	}
	for rt.f.Poll(rt.wake)&pollIn == 0 {
		// Not served inline (the engine was busy): wait for the reply.
		select {
		case <-rt.woken:
		case <-time.After(10 * time.Second):
			tb.Fatal("no reply within 10 s")
		}
	}
	if errno := rt.k.ioctl(rt.f, IoctlReceiveMsgTrunc, argBase+0x100); errno != 0 {
		tb.Fatalf("receive: %v", errno)
	}
	if rt.recv[0] != ResponseRecvType || rt.recv[32] != NetFnApp|1 {
		tb.Fatalf("receive wrote % x", rt.recv)
	}
}

// newInlineDevice is the daemon's hot path without CUSE: a device whose
// SEND is served on the caller's goroutine by an idle engine.
func newInlineDevice(tb testing.TB) *Device {
	// A transaction slower than InlineMax (a descheduled test) would send
	// the next request through the engine's goroutine.
	eng := sched.New(getDeviceIDBMC{}, sched.Config{InlineMax: time.Hour})
	tb.Cleanup(func() { eng.Close() })
	return NewDevice(Config{Submit: eng.Submit, Inline: eng.ServeInline})
}

// TestRoundTripAllocs bounds what one round trip allocates in the ioctl
// layer and the engine, served inline as the daemon serves an idle KCS
// BMC. Allocation counts do not depend on the machine's speed.
func TestRoundTripAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("coverage and the race detector change allocation counts")
	}
	for _, tc := range []struct {
		name    string
		dataLen int
		max     float64
	}{
		// Nothing: the pending request (with its message, response,
		// reply and bound Done func inside) comes back from pendingPool
		// once its reply is received. Before: 2 (the pending and its
		// Done func), and before that 13 and 14 (the pending, its
		// message and response buffers, the reply with its address and
		// data, the queue's array, the retry iovec lists and the
		// receive's output).
		{"Get Device ID", 0, 0},
		{"with 4 data bytes", 4, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newRoundTrip(t, newInlineDevice(t), tc.dataLen)
			rt.run(t) // the first receive cannot use declared buffers
			n := testing.AllocsPerRun(200, func() { rt.run(t) })
			t.Logf("%.1f allocations per round trip", n)
			if n > tc.max {
				t.Errorf("%.1f allocations per round trip, want at most %.0f", n, tc.max)
			}
		})
	}
}

// BenchmarkRoundTrip measures one inline round trip (SEND, poll, RECEIVE)
// through the ioctl layer and the engine, without CUSE.
func BenchmarkRoundTrip(b *testing.B) {
	for _, tc := range []struct {
		name    string
		dataLen int
	}{{"no-data", 0}, {"data-4", 4}} {
		b.Run(tc.name, func(b *testing.B) {
			rt := newRoundTrip(b, newInlineDevice(b), tc.dataLen)
			rt.run(b)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				rt.run(b)
			}
		})
	}
}
