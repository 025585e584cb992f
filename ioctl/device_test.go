package ioctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/cuse/cusetest"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// Fake user addresses.
const (
	argBase   = 0x10000
	addrBase  = 0x20000
	dataBase  = 0x30000
	raddrBase = 0x40000
	rdataBase = 0x50000
	unmapped  = 0xdead0000
)

type env struct {
	t   *testing.T
	dev *Device
	eng *fakeEngine
	k   *cusetest.Kernel
	mem *cusetest.Memory
	now time.Time
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	e := &env{t: t, eng: &fakeEngine{sync: true}, mem: cusetest.NewMemory(), now: time.Unix(1_000_000, 0)}
	e.k = cusetest.NewKernel(t, e.mem)
	if cfg.Submit == nil {
		cfg.Submit = e.eng.Submit
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return e.now }
	}
	e.dev = NewDevice(cfg)
	return e
}

func (e *env) open() *File {
	e.t.Helper()
	f, errno := e.dev.Open(context.Background(), 2)
	if errno != 0 {
		e.t.Fatalf("open: %v", errno)
	}
	return f.(*File)
}

func sysAddr(lun uint8) []byte {
	return SystemInterfaceAddr{AddrType: SystemInterfaceAddrType, Channel: BMCChannel, LUN: lun}.Encode()
}

// sendReq maps addr and data (nil = not mapped) and issues SEND_COMMAND with
// req, whose pointers the caller sets (addrBase/dataBase/0/unmapped).
func (e *env) sendReq(f *File, req Req, addr, data []byte) syscall.Errno {
	e.t.Helper()
	e.mem.Map(argBase, req.Encode())
	if addr != nil {
		e.mem.Map(addrBase, append([]byte(nil), addr...))
	}
	if data != nil {
		e.mem.Map(dataBase, append([]byte(nil), data...))
	}
	return e.k.Ioctl(context.Background(), f, IoctlSendCommand, argBase, 0)
}

// send sends a well-formed request to addr.
func (e *env) send(f *File, addr []byte, msgID int64, netfn, cmd uint8, data []byte) syscall.Errno {
	e.t.Helper()
	req := Req{Addr: addrBase, AddrLen: uint32(len(addr)), MsgID: msgID, Msg: Msg{NetFn: netfn, Cmd: cmd, DataLen: uint16(len(data))}}
	if len(data) > 0 {
		req.Msg.Data = dataBase
	}
	return e.sendReq(f, req, addr, data)
}

type received struct {
	errno      syscall.Errno
	structMem  []byte // the 48 bytes at argBase after the call
	recv       Recv   // decoded structMem
	addr, data []byte // the user's buffers after the call
}

// recv issues RECEIVE_MSG(_TRUNC) with fresh buffers of the given capacity,
// pre-filled with 0xAA so untouched bytes show.
func (e *env) recv(f *File, trunc bool, addrCap uint32, dataCap uint16) received {
	e.t.Helper()
	r := Recv{RecvType: 0x55, Addr: raddrBase, AddrLen: addrCap, MsgID: 0x77, Msg: Msg{NetFn: 0x66, Cmd: 0x66, DataLen: dataCap, Data: rdataBase}}
	st := e.mem.Map(argBase, r.Encode())
	ab := e.mem.Map(raddrBase, bytes.Repeat([]byte{0xAA}, 40))
	db := e.mem.Map(rdataBase, bytes.Repeat([]byte{0xAA}, 300))
	cmd := uint32(IoctlReceiveMsg)
	if trunc {
		cmd = IoctlReceiveMsgTrunc
	}
	errno := e.k.Ioctl(context.Background(), f, cmd, argBase, 0)
	got, _ := DecodeRecv(st)
	return received{errno: errno, structMem: st, recv: got, addr: ab, data: db}
}

func TestSendReceiveByteExact(t *testing.T) {
	e := newEnv(t, Config{RequestTimeout: 7 * time.Second})
	e.eng.reply = func(r *sched.Request) {
		// Get Device ID reply from the BMC, LUN bits 2 as in the request.
		r.Resp = append(r.Resp[:0], 0x1C|2, 0x01, 0x00, 0x20, 0x81, 0x05, 0x02)
	}
	f := e.open()
	const msgID = -0x1122334455667788 // the full 64 bits must come back
	addr := SystemInterfaceAddr{AddrType: SystemInterfaceAddrType, Channel: BMCChannel, LUN: 2, Pad: 0x5A}.Encode()
	if errno := e.send(f, addr, msgID, 0x06, 0x01, nil); errno != 0 {
		t.Fatalf("send: %v", errno)
	}
	r := e.eng.last(t)
	if !bytes.Equal(r.Msg, []byte{0x06<<2 | 2, 0x01}) {
		t.Errorf("engine got Msg % x, want 1a 01", r.Msg)
	}
	if r.Owner != f.Owner() || r.Lane != sched.LaneNormal {
		t.Errorf("owner/lane = %d/%d, want %d/normal", r.Owner, r.Lane, f.Owner())
	}
	if want := e.now.Add(7 * time.Second); !r.Deadline.Equal(want) {
		t.Errorf("deadline %v, want %v", r.Deadline, want)
	}
	if got := f.Poll(nil); got != pollIn|pollRdNorm {
		t.Errorf("poll = %#x, want POLLIN|POLLRDNORM", got)
	}
	got := e.recv(f, true, 40, 272)
	if got.errno != 0 {
		t.Fatalf("receive: %v", got.errno)
	}
	if e.k.Rounds != 3 {
		t.Errorf("receive took %d rounds, want 3", e.k.Rounds)
	}
	want := Recv{RecvType: 0x55, Addr: raddrBase, AddrLen: 40, MsgID: 0x77, Msg: Msg{DataLen: 272, Data: rdataBase}}
	want.RecvType, want.AddrLen, want.MsgID = ResponseRecvType, 8, msgID
	want.Msg.NetFn, want.Msg.Cmd, want.Msg.DataLen = 0x07, 0x01, 5
	if got.recv != want {
		t.Errorf("struct written back = %+v\nwant %+v", got.recv, want)
	}
	// Address: type 0x0C, channel 0x0F, LUN from the reply, the user's pad
	// byte echoed; nothing past 8 bytes touched.
	wantAddr := append([]byte{0x0C, 0, 0, 0, 0x0F, 0, 2, 0x5A}, bytes.Repeat([]byte{0xAA}, 32)...)
	if !bytes.Equal(got.addr, wantAddr) {
		t.Errorf("addr buffer\n got % x\nwant % x", got.addr, wantAddr)
	}
	wantData := append([]byte{0x00, 0x20, 0x81, 0x05, 0x02}, bytes.Repeat([]byte{0xAA}, 295)...)
	if !bytes.Equal(got.data, wantData) {
		t.Errorf("data buffer\n got % x\nwant % x", got.data[:8], wantData[:8])
	}
	if f.Poll(nil) != 0 {
		t.Error("poll still ready after the only message was received")
	}
	if got := e.recv(f, true, 40, 272); got.errno != syscall.EAGAIN {
		t.Errorf("second receive: %v, want EAGAIN", got.errno)
	}
}

func TestSendRounds(t *testing.T) {
	e := newEnv(t, Config{})
	f := e.open()
	tests := []struct {
		name   string
		data   []byte
		rounds int
	}{
		{"no data", nil, 3},                      // struct; struct+addr; submit
		{"with data", []byte{1, 2, 3}, 3},        // struct; struct+addr+data; submit
		{"272 data bytes", make([]byte, 270), 3}, // the most a SEND may carry (2 go to netfn and cmd)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if errno := e.send(f, sysAddr(0), 1, 0x0A, 0x10, tt.data); errno != 0 {
				t.Fatalf("send: %v", errno)
			}
			if e.k.Rounds != tt.rounds {
				t.Errorf("rounds = %d, want %d", e.k.Rounds, tt.rounds)
			}
			if got, want := e.eng.last(t).Msg, append([]byte{0x0A << 2, 0x10}, tt.data...); !bytes.Equal(got, want) {
				t.Errorf("Msg = % x, want % x", got, want)
			}
			e.recv(f, true, 40, 272)
		})
	}
}

func TestSendErrors(t *testing.T) {
	ipmb := IPMBAddr{AddrType: IPMBAddrType, Channel: 0, SlaveAddr: 0x82}.Encode()
	lan := LANAddr{AddrType: LANAddrType, Channel: 1}.Encode()
	direct := func(ch int16, sa, rs, rq uint8) []byte {
		b := make([]byte, 12)
		copy(b, []byte{IPMBDirectAddrType, 0, 0, 0, byte(ch), byte(ch >> 8), sa, rs, rq})
		return b
	}
	withChan := func(a []byte, ch uint16) []byte {
		b := append([]byte(nil), a...)
		b[4], b[5] = byte(ch), byte(ch>>8)
		return b
	}
	withType := func(a []byte, typ byte) []byte {
		b := append([]byte(nil), a...)
		b[0] = typ
		return b
	}
	sys := sysAddr(0)
	data := make([]byte, 300)
	tests := []struct {
		name   string
		req    Req
		addr   []byte
		data   []byte
		submit error
		want   syscall.Errno
	}{
		{"addr_len > 40", Req{Addr: addrBase, AddrLen: 41, Msg: Msg{NetFn: 6, Cmd: 1}}, make([]byte, 41), nil, nil, syscall.EINVAL},
		{"addr unmapped", Req{Addr: unmapped, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1}}, nil, nil, nil, syscall.EFAULT},
		{"addr NULL", Req{Addr: 0, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1}}, nil, nil, nil, syscall.EFAULT},
		{"addr_len 0", Req{Addr: addrBase, AddrLen: 0, Msg: Msg{NetFn: 6, Cmd: 1}}, sys, nil, nil, syscall.EINVAL},
		{"addr_len 7", Req{Addr: addrBase, AddrLen: 7, Msg: Msg{NetFn: 6, Cmd: 1}}, sys, nil, nil, syscall.EINVAL},
		{"sysintf channel 0", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1}}, withChan(sys, 0), nil, nil, syscall.EINVAL},
		{"ipmb channel 0x0F", Req{Addr: addrBase, AddrLen: 8}, withChan(ipmb, 0x0F), nil, nil, syscall.EINVAL},
		{"ipmb channel 16", Req{Addr: addrBase, AddrLen: 8}, withChan(ipmb, 16), nil, nil, syscall.EINVAL},
		{"ipmb channel -1", Req{Addr: addrBase, AddrLen: 8}, withChan(ipmb, 0xFFFF), nil, nil, syscall.EINVAL},
		{"unknown addr type", Req{Addr: addrBase, AddrLen: 8}, withType(ipmb, 0x02), nil, nil, syscall.EINVAL},
		{"ipmb not bridged", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1}}, ipmb, nil, nil, syscall.EINVAL},
		{"broadcast not bridged", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1}}, withType(ipmb, IPMBBroadcastAddrType), nil, nil, syscall.EINVAL},
		{"lan short", Req{Addr: addrBase, AddrLen: 8}, lan, nil, nil, syscall.EINVAL},
		{"lan not bridged", Req{Addr: addrBase, AddrLen: 12, Msg: Msg{NetFn: 6, Cmd: 1}}, lan, nil, nil, syscall.EINVAL},
		{"ipmb-direct unsupported", Req{Addr: addrBase, AddrLen: 12, Msg: Msg{NetFn: 6, Cmd: 1}}, direct(0, 0x20, 0, 0), nil, nil, syscall.EAFNOSUPPORT},
		{"ipmb-direct odd slave", Req{Addr: addrBase, AddrLen: 12}, direct(0, 0x21, 0, 0), nil, nil, syscall.EINVAL},
		{"ipmb-direct channel 1", Req{Addr: addrBase, AddrLen: 12}, direct(1, 0x20, 0, 0), nil, nil, syscall.EINVAL},
		{"ipmb-direct rs_lun 4", Req{Addr: addrBase, AddrLen: 12}, direct(0, 0x20, 4, 0), nil, nil, syscall.EINVAL},
		{"ipmb-direct short", Req{Addr: addrBase, AddrLen: 8}, direct(0, 0x20, 0, 0), nil, nil, syscall.EINVAL},
		{"data_len 273", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 273, Data: dataBase}}, sys, data, nil, syscall.EMSGSIZE},
		{"bad addr wins over data_len 273", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{DataLen: 273, Data: dataBase}}, withChan(sys, 1), data, nil, syscall.EINVAL},
		{"data_len 271 too long for sysintf", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 271, Data: dataBase}}, sys, data, nil, syscall.EMSGSIZE},
		{"data unmapped", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 4, Data: unmapped}}, sys, nil, nil, syscall.EFAULT},
		{"response netfn", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 7, Cmd: 1}}, sys, nil, nil, syscall.EINVAL},
		{"lun 4", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1}}, sysAddr(4), nil, nil, syscall.EINVAL},
		{"Get Message", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 0x33}}, sys, nil, nil, syscall.EINVAL},
		{"Send Message", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 0x34}}, sys, nil, nil, syscall.EINVAL},
		{"Read Event Message Buffer", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 0x35}}, sys, nil, nil, syscall.EINVAL},
		{"engine closed", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1}}, sys, nil, errors.New("engine closed"), syscall.ENODEV},
		{"engine closed (sched)", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1}}, sys, nil, sched.ErrClosed, syscall.ENODEV},
		{"engine queue full", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1}}, sys, nil, fmt.Errorf("%w: owner 1", sched.ErrQueueFull), syscall.EBUSY},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			e.eng.err = tt.submit
			f := e.open()
			if got := e.sendReq(f, tt.req, tt.addr, tt.data); got != tt.want {
				t.Errorf("send = %v, want %v", got, tt.want)
			}
			if n := e.eng.count(); n != 0 {
				t.Errorf("%d requests reached the engine", n)
			}
			if f.Poll(nil) != 0 {
				t.Error("a rejected send queued a message")
			}
		})
	}

	t.Run("struct unmapped", func(t *testing.T) {
		e := newEnv(t, Config{})
		if got := e.k.Ioctl(context.Background(), e.open(), IoctlSendCommand, unmapped, 0); got != syscall.EFAULT {
			t.Errorf("send = %v, want EFAULT", got)
		}
	})
}

// sendVariant is one of the four SEND ioctls, with an encoder for its struct.
type sendVariant struct {
	name   string
	cmd    uint32
	flags  uint32
	encode func(Req) []byte
}

// encodeCompatReq lays out compat_ipmi_req: addr@0 addr_len@4 msgid@8 (s32)
// msg@12 (netfn, cmd, data_len@14, data@16).
func encodeCompatReq(r Req) []byte {
	b := make([]byte, SizeofCompatReq)
	le.PutUint32(b[0:], uint32(r.Addr))
	le.PutUint32(b[4:], r.AddrLen)
	le.PutUint32(b[8:], uint32(r.MsgID))
	b[12], b[13] = r.Msg.NetFn, r.Msg.Cmd
	le.PutUint16(b[14:], r.Msg.DataLen)
	le.PutUint32(b[16:], uint32(r.Msg.Data))
	return b
}

var sendVariants = []sendVariant{
	{"native", IoctlSendCommand, 0, Req.Encode},
	{"native settime", IoctlSendCommandSettime, 0, func(r Req) []byte {
		return ReqSettime{Req: r, Retries: 1, RetryTimeMs: 100}.Encode()
	}},
	{"compat", IoctlCompatSendCommand, cusetest.FlagCompat | cusetest.Flag32Bit, encodeCompatReq},
	{"compat settime", IoctlCompatSendCommandSettime, cusetest.FlagCompat | cusetest.Flag32Bit, func(r Req) []byte {
		b := make([]byte, SizeofCompatReqSettime)
		copy(b, encodeCompatReq(r))
		le.PutUint32(b[20:], 1)
		le.PutUint32(b[24:], 100)
		return b
	}},
}

// TestSendCopyOrder checks that SEND copies and checks in the kernel's order
// (struct, addr_len, address, address validation, data_len, data), so an
// error the kernel finds before it copies the data wins over a data pointer
// that faults, except for the one case doc.go lists (kernel names the
// kernel's errno there), and that each SEND costs the rounds documented in
// doc.go: 3 with data or without.
func TestSendCopyOrder(t *testing.T) {
	const noAccess = 0xdeadb000 // a data pointer into a page nobody mapped (fits in 32 bits)
	bad55 := IPMBAddr{AddrType: 0x55, Channel: 0, SlaveAddr: 0x20}.Encode()
	tests := []struct {
		name   string
		req    Req
		addr   []byte
		data   []byte // mapped at dataBase when not nil
		want   syscall.Errno
		kernel syscall.Errno // the kernel's answer where it differs (a known difference)
		rounds int
	}{
		// The VM finding: the kernel validates the address before it
		// copies the data. A valid-length address and data_len <= 272
		// are copied in one round, so a bad address with a faulting
		// data pointer gets the data's EFAULT.
		{"bad addr type, data no access", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 1, Data: noAccess}}, bad55, nil, syscall.EFAULT, syscall.EINVAL, 2},
		{"bad sysintf channel, data no access", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 4, Data: noAccess}},
			SystemInterfaceAddr{AddrType: SystemInterfaceAddrType, Channel: 0}.Encode(), nil, syscall.EFAULT, syscall.EINVAL, 2},
		{"bad addr type, data mapped", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 1, Data: dataBase}}, bad55, []byte{7}, syscall.EINVAL, 0, 3},
		{"good addr, data no access", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 1, Data: noAccess}}, sysAddr(0), nil, syscall.EFAULT, 0, 2},
		// addr_len > 40 is checked before the address is copied, < 8 by
		// the validation after it; both before the data, which is not
		// asked for.
		{"addr_len 41, data no access", Req{Addr: addrBase, AddrLen: 41, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 1, Data: noAccess}}, make([]byte, 41), nil, syscall.EINVAL, 0, 2},
		{"addr_len 7, data no access", Req{Addr: addrBase, AddrLen: 7, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 1, Data: noAccess}}, sysAddr(0), nil, syscall.EINVAL, 0, 3},
		{"addr_len 0, data no access", Req{Addr: addrBase, AddrLen: 0, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 1, Data: noAccess}}, sysAddr(0), nil, syscall.EINVAL, 0, 2},
		{"addr no access, data no access", Req{Addr: unmapped, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 1, Data: noAccess}}, nil, nil, syscall.EFAULT, 0, 2},
		// data_len > 272 is checked after the address and before the
		// copy: the data is not asked for.
		{"data_len 273, data no access", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 273, Data: noAccess}}, sysAddr(0), nil, syscall.EMSGSIZE, 0, 3},
		{"bad addr, data_len 273", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 273, Data: noAccess}}, bad55, nil, syscall.EINVAL, 0, 3},
		// Nothing to copy.
		{"data_len 0", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1}}, sysAddr(0), nil, 0, 0, 3},
		{"data_len 0, data no access", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, Data: noAccess}}, sysAddr(0), nil, 0, 0, 3},
		{"data NULL, data_len 300", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 300}}, sysAddr(0), nil, 0, 0, 3},
		// With data: still 3 rounds.
		{"data_len 1", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 1, Data: dataBase}}, sysAddr(0), []byte{7}, 0, 0, 3},
		{"data_len 270", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 270, Data: dataBase}}, sysAddr(0), make([]byte, 270), 0, 0, 3},
		{"addr_len 40, data_len 2", Req{Addr: addrBase, AddrLen: 40, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 2, Data: dataBase}}, append(sysAddr(0), make([]byte, 32)...), []byte{1, 2}, 0, 0, 3},
		// The per-type checks come after the data copy.
		{"data_len 271, data no access", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 271, Data: noAccess}}, sysAddr(0), nil, syscall.EFAULT, 0, 2},
		{"data_len 271", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 271, Data: dataBase}}, sysAddr(0), make([]byte, 271), syscall.EMSGSIZE, 0, 3},
		{"Get Message, data no access", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 0x33, DataLen: 1, Data: noAccess}}, sysAddr(0), nil, syscall.EFAULT, 0, 2},
		{"Get Message, data mapped", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 0x33, DataLen: 1, Data: dataBase}}, sysAddr(0), []byte{1}, syscall.EINVAL, 0, 3},
	}
	for _, v := range sendVariants {
		for _, tt := range tests {
			t.Run(v.name+"/"+tt.name, func(t *testing.T) {
				e := newEnv(t, Config{})
				f := e.open()
				e.mem.Map(argBase, v.encode(tt.req))
				if tt.addr != nil {
					e.mem.Map(addrBase, append([]byte(nil), tt.addr...))
				}
				if tt.data != nil {
					e.mem.Map(dataBase, append([]byte(nil), tt.data...))
				}
				if got := e.k.Ioctl(context.Background(), f, v.cmd, argBase, v.flags); got != tt.want {
					t.Errorf("send = %v, want %v", got, tt.want)
				}
				if tt.kernel != 0 {
					t.Logf("known difference: the kernel answers %v", tt.kernel)
				}
				if e.k.Rounds != tt.rounds {
					t.Errorf("rounds = %d, want %d", e.k.Rounds, tt.rounds)
				}
				wantSubmitted := 0
				if tt.want == 0 {
					wantSubmitted = 1
				}
				if n := e.eng.count(); n != wantSubmitted {
					t.Fatalf("%d requests reached the engine, want %d", n, wantSubmitted)
				}
				if wantSubmitted == 1 {
					want := append([]byte{tt.req.Msg.NetFn << 2, tt.req.Msg.Cmd}, tt.data...)
					if got := e.eng.last(t).Msg; !bytes.Equal(got, want) {
						t.Errorf("Msg = % x, want % x", got, want)
					}
				}
			})
		}
	}
}

// TestSendStructChangesBetweenRounds: the caller rewrites the struct between
// the round that read it and the round that reads the address and data
// (another thread, in a real process).
// send must use what it got in the last round, consistently, never bytes
// laid out for a struct it no longer has.
func TestSendStructChangesBetweenRounds(t *testing.T) {
	tests := []struct {
		name    string
		change  func(r *Req)
		want    syscall.Errno
		wantMsg []byte
	}{
		{"data grows", func(r *Req) { r.Msg.DataLen = 3 }, 0, []byte{0x18, 0x01, 1, 2, 3}},
		{"data goes away", func(r *Req) { r.Msg.Data = 0 }, 0, []byte{0x18, 0x01}},
		{"address goes bad", func(r *Req) { r.AddrLen = 7 }, syscall.EINVAL, nil},
		{"data_len too big", func(r *Req) { r.Msg.DataLen = 273 }, syscall.EMSGSIZE, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			f := e.open()
			req := Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 2, Data: dataBase}}
			st := e.mem.Map(argBase, req.Encode())
			e.mem.Map(addrBase, sysAddr(0))
			e.mem.Map(dataBase, []byte{1, 2, 3})
			c := e.k.Start(f, IoctlSendCommand, argBase, 0)
			// Round 1 asks for the struct, which the kernel copies; round 2
			// asks for struct+addr+data as that struct describes them, and
			// the kernel copies the struct as it is by then.
			for range 1 {
				if _, done := c.Step(context.Background()); done {
					t.Fatalf("done after %d rounds: %v", c.Rounds(), c.Errno())
				}
			}
			tt.change(&req)
			copy(st, req.Encode())
			for {
				if _, done := c.Step(context.Background()); done {
					break
				}
			}
			if c.Errno() != tt.want {
				t.Fatalf("send = %v, want %v", c.Errno(), tt.want)
			}
			if tt.want == 0 {
				if got := e.eng.last(t).Msg; !bytes.Equal(got, tt.wantMsg) {
					t.Errorf("Msg = % x, want % x", got, tt.wantMsg)
				}
			} else if n := e.eng.count(); n != 0 {
				t.Errorf("%d requests reached the engine", n)
			}
		})
	}
}

func TestSendAccepted(t *testing.T) {
	sys := sysAddr(0)
	tests := []struct {
		name    string
		req     Req
		data    []byte
		wantMsg []byte
	}{
		{"data_len ignored without pointer", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 300}}, nil, []byte{0x18, 0x01}},
		{"270 data bytes", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 0x2C, Cmd: 1, DataLen: 270, Data: dataBase}}, make([]byte, 270), append([]byte{0xB0, 1}, make([]byte, 270)...)},
		{"addr_len 40", Req{Addr: addrBase, AddrLen: 40, Msg: Msg{NetFn: 6, Cmd: 1}}, nil, []byte{0x18, 0x01}},
		{"lun 3", Req{Addr: addrBase, AddrLen: 8, Msg: Msg{NetFn: 0x0A, Cmd: 0x40}}, nil, []byte{0x28 | 3, 0x40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			addr := append(sys, make([]byte, 32)...)
			if tt.name == "lun 3" {
				addr = sysAddr(3)
			}
			if got := e.sendReq(e.open(), tt.req, addr, tt.data); got != 0 {
				t.Fatalf("send = %v", got)
			}
			if got := e.eng.last(t).Msg; !bytes.Equal(got, tt.wantMsg) {
				t.Errorf("Msg = % x, want % x", got, tt.wantMsg)
			}
		})
	}
}

func TestSendSettime(t *testing.T) {
	e := newEnv(t, Config{})
	f := e.open()
	rs := ReqSettime{Req: Req{Addr: addrBase, AddrLen: 8, MsgID: 9, Msg: Msg{NetFn: 6, Cmd: 1}}, Retries: 2, RetryTimeMs: 500}
	e.mem.Map(argBase, rs.Encode())
	e.mem.Map(addrBase, sysAddr(0))
	if got := e.k.Ioctl(context.Background(), f, IoctlSendCommandSettime, argBase, 0); got != 0 {
		t.Fatalf("SEND_COMMAND_SETTIME = %v", got)
	}
	if got := e.recv(f, false, 8, 10); got.errno != 0 || got.recv.MsgID != 9 {
		t.Errorf("receive: %v msgid %d", got.errno, got.recv.MsgID)
	}
	// SETTIME's struct is 48 bytes: a 40-byte mapping faults.
	e.mem.Map(argBase, rs.Encode()[:40])
	if got := e.k.Ioctl(context.Background(), f, IoctlSendCommandSettime, argBase, 0); got != syscall.EFAULT {
		t.Errorf("short mapping: %v, want EFAULT", got)
	}
}

func TestLanes(t *testing.T) {
	tests := []struct {
		priority   bool
		netfn, cmd uint8
		want       sched.Lane
	}{
		{true, 0x06, 0x22, sched.LanePriority},
		{true, 0x06, 0x24, sched.LanePriority},
		{true, 0x06, 0x25, sched.LanePriority},
		{true, 0x06, 0x01, sched.LaneNormal},
		{true, 0x0A, 0x22, sched.LaneNormal},
		{false, 0x06, 0x22, sched.LaneNormal},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("prio=%v/%02x-%02x", tt.priority, tt.netfn, tt.cmd), func(t *testing.T) {
			e := newEnv(t, Config{PriorityWatchdogCommands: tt.priority})
			if errno := e.send(e.open(), sysAddr(0), 0, tt.netfn, tt.cmd, nil); errno != 0 {
				t.Fatal(errno)
			}
			if got := e.eng.last(t).Lane; got != tt.want {
				t.Errorf("lane = %d, want %d", got, tt.want)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string { return "timed out" }
func (timeoutErr) Timeout() bool { return true }

func TestResponseFormatting(t *testing.T) {
	long := append([]byte{0x1C, 0x01, 0x00}, make([]byte, 300)...)
	tests := []struct {
		name      string
		cfg       Config
		resp      []byte
		err       error
		wantNetFn uint8
		wantCmd   uint8
		wantLUN   uint8
		wantData  []byte
	}{
		{"normal", Config{}, []byte{0x1C | 1, 0x01, 0x00, 0xAB}, nil, 0x07, 0x01, 1, []byte{0x00, 0xAB}},
		{"bmc error cc", Config{}, []byte{0x1C | 1, 0x01, 0xC1}, nil, 0x07, 0x01, 1, []byte{0xC1}},
		{"netfn mismatch", Config{}, []byte{0x2C, 0x01, 0x00, 0x01}, nil, 0x07, 0x01, 1, []byte{0xFF}},
		{"cmd mismatch", Config{}, []byte{0x1C, 0x02, 0x00}, nil, 0x07, 0x01, 1, []byte{0xFF}},
		{"request netfn echoed", Config{}, []byte{0x18, 0x01, 0x00}, nil, 0x07, 0x01, 1, []byte{0xFF}},
		{"one byte", Config{}, []byte{0x1C}, nil, 0x07, 0x01, 1, []byte{0xFF}},
		{"empty", Config{}, nil, nil, 0x07, 0x01, 1, []byte{0xFF}},
		{"no completion code", Config{}, []byte{0x1C, 0x01}, nil, 0x07, 0x01, 0, []byte{0xFF}},
		{"too long", Config{}, long, nil, 0x07, 0x01, 0, append([]byte{0xC6}, make([]byte, 269)...)},
		{"deadline", Config{}, nil, fmt.Errorf("queued too long: %w", context.DeadlineExceeded), 0x07, 0x01, 1, []byte{0xC3}},
		{"os deadline", Config{}, nil, os.ErrDeadlineExceeded, 0x07, 0x01, 1, []byte{0xC3}},
		{"Timeout() error", Config{}, nil, timeoutErr{}, 0x07, 0x01, 1, []byte{0xC3}},
		{"sched deadline", Config{}, nil, sched.ErrDeadline, 0x07, 0x01, 1, []byte{0xC3}},
		{"sched BMC unresponsive", Config{}, nil, sched.ErrBMCUnresponsive, 0x07, 0x01, 1, []byte{0xFF}},
		{"sched closed", Config{}, nil, sched.ErrClosed, 0x07, 0x01, 1, []byte{0xFF}},
		{"transport failure", Config{}, nil, errors.New("kcs: hosed"), 0x07, 0x01, 1, []byte{0xFF}},
		{"custom mapping", Config{CompletionCode: func(error) uint8 { return 0xD5 }}, nil, errors.New("busy"), 0x07, 0x01, 1, []byte{0xD5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.cfg)
			e.eng.reply = func(r *sched.Request) { r.Resp, r.Err = append(r.Resp[:0], tt.resp...), tt.err }
			f := e.open()
			if errno := e.send(f, sysAddr(1), 42, 0x06, 0x01, nil); errno != 0 {
				t.Fatal(errno)
			}
			got := e.recv(f, false, 40, 300)
			if got.errno != 0 {
				t.Fatalf("receive: %v", got.errno)
			}
			if got.recv.RecvType != ResponseRecvType || got.recv.MsgID != 42 || got.recv.Msg.NetFn != tt.wantNetFn || got.recv.Msg.Cmd != tt.wantCmd {
				t.Errorf("recv = %+v", got.recv)
			}
			if !bytes.Equal(got.addr[:8], sysAddr(tt.wantLUN)) {
				t.Errorf("addr = % x, want % x", got.addr[:8], sysAddr(tt.wantLUN))
			}
			if int(got.recv.Msg.DataLen) != len(tt.wantData) || !bytes.Equal(got.data[:len(tt.wantData)], tt.wantData) {
				t.Errorf("data (%d) = % x, want % x", got.recv.Msg.DataLen, got.data[:min(8, int(got.recv.Msg.DataLen))], tt.wantData[:min(8, len(tt.wantData))])
			}
		})
	}
}

func TestReceive(t *testing.T) {
	// Each case starts with one reply queued: data = [00 01 02 03 04].
	reply := func(r *sched.Request) { r.Resp = append(r.Resp[:0], r.Msg[0]|4, r.Msg[1], 0, 1, 2, 3, 4) }
	untouched := bytes.Repeat([]byte{0xAA}, 40)
	tests := []struct {
		name        string
		trunc       bool
		addrCap     uint32
		dataCap     uint16
		mutate      func(e *env) // after mapping the buffers, before the ioctl
		want        syscall.Errno
		wantWritten bool // struct written back
		wantAddr    bool // address bytes written
		wantData    int  // data bytes written
		wantQueued  bool // message still queued afterwards
	}{
		{"exact fit", false, 8, 5, nil, 0, true, true, 5, false},
		{"addr_len 7", false, 7, 5, nil, syscall.EINVAL, false, false, 0, true},
		{"addr_len 7 trunc", true, 7, 5, nil, syscall.EINVAL, false, false, 0, true},
		{"small data RECEIVE_MSG", false, 8, 4, nil, syscall.EMSGSIZE, false, true, 0, true},
		{"small data TRUNC", true, 8, 4, nil, syscall.EMSGSIZE, true, true, 4, false},
		{"zero data TRUNC", true, 8, 0, nil, syscall.EMSGSIZE, true, true, 0, false},
		{"addr unmapped", true, 8, 5, func(e *env) { e.mem.Unmap(raddrBase) }, syscall.EFAULT, false, false, 0, true},
		// The kernel writes the address before it faults on the data; here
		// the fault comes first (the data range is read ahead so that the
		// message is not consumed), so the address buffer stays untouched.
		{"data unmapped", true, 8, 5, func(e *env) { e.mem.Unmap(rdataBase) }, syscall.EFAULT, false, false, 0, true},
		{"struct unmapped", true, 8, 5, func(e *env) { e.mem.Unmap(argBase) }, syscall.EFAULT, false, false, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			e.eng.reply = reply
			f := e.open()
			if errno := e.send(f, sysAddr(0), 5, 0x06, 0x01, nil); errno != 0 {
				t.Fatal(errno)
			}
			r := Recv{RecvType: 0x55, Addr: raddrBase, AddrLen: tt.addrCap, MsgID: 0x77, Msg: Msg{NetFn: 0x66, Cmd: 0x66, DataLen: tt.dataCap, Data: rdataBase}}
			before := r.Encode()
			st := e.mem.Map(argBase, r.Encode())
			ab := e.mem.Map(raddrBase, bytes.Repeat([]byte{0xAA}, 40))
			db := e.mem.Map(rdataBase, bytes.Repeat([]byte{0xAA}, 300))
			if tt.mutate != nil {
				tt.mutate(e)
			}
			cmd := uint32(IoctlReceiveMsg)
			if tt.trunc {
				cmd = IoctlReceiveMsgTrunc
			}
			if got := e.k.Ioctl(context.Background(), f, cmd, argBase, 0); got != tt.want {
				t.Errorf("receive = %v, want %v", got, tt.want)
			}
			if written := !bytes.Equal(st, before); written != tt.wantWritten {
				t.Errorf("struct written = %v, want %v (% x)", written, tt.wantWritten, st)
			}
			if tt.wantWritten {
				got, _ := DecodeRecv(st)
				want := Recv{RecvType: 1, Addr: raddrBase, AddrLen: 8, MsgID: 5, Msg: Msg{NetFn: 7, Cmd: 1, DataLen: uint16(tt.wantData), Data: rdataBase}}
				if got != want {
					t.Errorf("struct = %+v, want %+v", got, want)
				}
			}
			if wrote := !bytes.Equal(ab, untouched); wrote != tt.wantAddr {
				t.Errorf("addr written = %v, want %v", wrote, tt.wantAddr)
			} else if wrote && (!bytes.Equal(ab[:8], sysAddr(0)) || !bytes.Equal(ab[8:], untouched[8:])) {
				t.Errorf("addr buffer = % x", ab)
			}
			if !bytes.Equal(db[:tt.wantData], []byte{0, 1, 2, 3, 4}[:tt.wantData]) || db[tt.wantData] != 0xAA {
				t.Errorf("data buffer = % x, want %d bytes written", db[:8], tt.wantData)
			}
			if queued := f.Poll(nil) != 0; queued != tt.wantQueued {
				t.Errorf("queued = %v, want %v", queued, tt.wantQueued)
			}
			if tt.wantQueued { // the message put back is intact
				if got := e.recv(f, false, 8, 5); got.errno != 0 || !bytes.Equal(got.data[:5], []byte{0, 1, 2, 3, 4}) {
					t.Errorf("receive after put-back: %v % x", got.errno, got.data[:5])
				}
			}
		})
	}
	t.Run("empty", func(t *testing.T) {
		e := newEnv(t, Config{})
		for _, trunc := range []bool{false, true} {
			if got := e.recv(e.open(), trunc, 40, 272); got.errno != syscall.EAGAIN {
				t.Errorf("trunc=%v: %v, want EAGAIN", trunc, got.errno)
			}
		}
	})
	t.Run("padding preserved", func(t *testing.T) {
		e := newEnv(t, Config{})
		f := e.open()
		if errno := e.send(f, sysAddr(0), 1, 6, 1, nil); errno != 0 {
			t.Fatal(errno)
		}
		st := bytes.Repeat([]byte{0xEE}, SizeofRecv)
		Recv{Addr: raddrBase, AddrLen: 40, Msg: Msg{DataLen: 10, Data: rdataBase}}.EncodeInto(st)
		e.mem.Map(argBase, st)
		e.mem.Map(raddrBase, make([]byte, 40))
		e.mem.Map(rdataBase, make([]byte, 10))
		if got := e.k.Ioctl(context.Background(), f, IoctlReceiveMsgTrunc, argBase, 0); got != 0 {
			t.Fatal(got)
		}
		for _, off := range []int{4, 5, 6, 7, 20, 21, 22, 23, 36, 37, 38, 39} {
			if st[off] != 0xEE {
				t.Errorf("padding byte %d = %#x", off, st[off])
			}
		}
	})
	t.Run("order kept", func(t *testing.T) {
		e := newEnv(t, Config{})
		f := e.open()
		for id := int64(1); id <= 3; id++ {
			if errno := e.send(f, sysAddr(0), id, 6, 1, nil); errno != 0 {
				t.Fatal(errno)
			}
		}
		for id := int64(1); id <= 3; id++ {
			if got := e.recv(f, true, 40, 272); got.errno != 0 || got.recv.MsgID != id {
				t.Errorf("receive %d: %v msgid %d", id, got.errno, got.recv.MsgID)
			}
		}
	})
}

// TestReceiveHeadChangesBetweenRounds: another thread takes the head message
// between round 2 and round 3; the file must deliver the next message with
// its own sizes, never a mix.
func TestReceiveHeadChangesBetweenRounds(t *testing.T) {
	e := newEnv(t, Config{})
	f := e.open()
	sizes := []int{5, 1}
	e.eng.reply = func(r *sched.Request) {
		n := sizes[0]
		sizes = sizes[1:]
		r.Resp = append(r.Resp[:0], r.Msg[0]|4, r.Msg[1])
		for i := range n {
			r.Resp = append(r.Resp, byte(0x10*n+i))
		}
	}
	for id := int64(1); id <= 2; id++ {
		if errno := e.send(f, sysAddr(0), id, 6, 1, nil); errno != 0 {
			t.Fatal(errno)
		}
	}
	st := e.mem.Map(argBase, Recv{Addr: raddrBase, AddrLen: 40, Msg: Msg{DataLen: 100, Data: rdataBase}}.Encode())
	e.mem.Map(raddrBase, make([]byte, 40))
	db := e.mem.Map(rdataBase, make([]byte, 100))
	call := e.k.Start(f, IoctlReceiveMsgTrunc, argBase, 0)
	if _, done := call.Step(context.Background()); done { // round 1: asks for the struct
		t.Fatalf("round 1 ended the call: %v", call.Errno())
	}
	out, done := call.Step(context.Background()) // round 2: plans for message 1 (5 bytes)
	if !out.Retry || done {
		t.Fatalf("round 2 did not retry: %+v (errno %v)", out, call.Errno())
	}
	// Meanwhile, another receiver consumes message 1.
	if got := e.recv(f, true, 40, 100); got.errno != 0 || got.recv.MsgID != 1 {
		t.Fatalf("concurrent receive: %v", got.errno)
	}
	e.mem.Map(argBase, st)
	e.mem.Map(rdataBase, db)
	e.mem.Map(raddrBase, make([]byte, 40))
	// Finish the first ioctl from its pending round; the fake kernel copies
	// the output into st and db when the final reply comes.
	for !done {
		out, done = call.Step(context.Background())
	}
	if out.Retry || out.Errno != 0 || out.Result != 0 || call.Errno() != 0 {
		t.Fatalf("final = %+v, errno %v", out, call.Errno())
	}
	got, _ := DecodeRecv(st)
	if got.MsgID != 2 || got.Msg.DataLen != 1 || db[0] != 0x10 || db[1] != 0 {
		t.Errorf("got msgid %d len %d data % x, want msgid 2, one byte", got.MsgID, got.Msg.DataLen, db[:2])
	}
}

func TestCompat(t *testing.T) {
	e := newEnv(t, Config{})
	f := e.open()
	const compatFlags = 0x1 | 0x8
	// compat_ipmi_req: addr@0 addr_len@4 msgid@8 msg@12 (data@16).
	creq := make([]byte, SizeofCompatReq)
	le.PutUint32(creq[0:], addrBase)
	le.PutUint32(creq[4:], 8)
	le.PutUint32(creq[8:], 0xFFFFFFFE) // msgid -2
	creq[12], creq[13] = 0x06, 0x01
	le.PutUint16(creq[14:], 2)
	le.PutUint32(creq[16:], dataBase)
	e.mem.Map(argBase, creq)
	e.mem.Map(addrBase, sysAddr(0))
	e.mem.Map(dataBase, []byte{9, 8})
	if got := e.k.Ioctl(context.Background(), f, IoctlCompatSendCommand, argBase, compatFlags); got != 0 {
		t.Fatalf("compat send: %v", got)
	}
	if got := e.eng.last(t).Msg; !bytes.Equal(got, []byte{0x18, 0x01, 9, 8}) {
		t.Errorf("Msg = % x", got)
	}
	if got := e.k.Ioctl(context.Background(), f, IoctlCompatSendCommand, argBase, 0); got != syscall.ENOTTY {
		t.Errorf("compat number from a 64-bit caller: %v, want ENOTTY", got)
	}
	crecv := make([]byte, SizeofCompatRecv)
	le.PutUint32(crecv[4:], raddrBase)
	le.PutUint32(crecv[8:], 40)
	le.PutUint16(crecv[18:], 100)
	le.PutUint32(crecv[20:], rdataBase)
	e.mem.Map(argBase, crecv)
	ab := e.mem.Map(raddrBase, make([]byte, 40))
	db := e.mem.Map(rdataBase, make([]byte, 100))
	if got := e.k.Ioctl(context.Background(), f, IoctlCompatReceiveMsgTrunc, argBase, compatFlags); got != 0 {
		t.Fatalf("compat receive: %v", got)
	}
	want := make([]byte, SizeofCompatRecv)
	copy(want, []byte{1, 0, 0, 0})
	le.PutUint32(want[4:], raddrBase)
	le.PutUint32(want[8:], 8)
	le.PutUint32(want[12:], 0xFFFFFFFE)
	want[16], want[17] = 0x07, 0x01
	le.PutUint16(want[18:], 1)
	le.PutUint32(want[20:], rdataBase)
	if !bytes.Equal(crecv, want) {
		t.Errorf("compat struct\n got % x\nwant % x", crecv, want)
	}
	if !bytes.Equal(ab[:8], sysAddr(0)) || db[0] != 0 {
		t.Errorf("addr % x data % x", ab[:8], db[:2])
	}
}

func TestMaxMsgsPerUser(t *testing.T) {
	e := newEnv(t, Config{MaxMsgsPerUser: 3})
	e.eng.sync = false
	f, other := e.open(), e.open()
	for i := range 3 {
		if errno := e.send(f, sysAddr(0), int64(i), 6, 1, nil); errno != 0 {
			t.Fatalf("send %d: %v", i, errno)
		}
	}
	if errno := e.send(f, sysAddr(0), 3, 6, 1, nil); errno != syscall.EBUSY {
		t.Errorf("4th outstanding send: %v, want EBUSY", errno)
	}
	if errno := e.send(other, sysAddr(0), 0, 6, 1, nil); errno != 0 {
		t.Errorf("another file is not limited: %v", errno)
	}
	e.eng.completeAll()
	// Queued, unreceived replies still count.
	if errno := e.send(f, sysAddr(0), 3, 6, 1, nil); errno != syscall.EBUSY {
		t.Errorf("send with 3 unreceived replies: %v, want EBUSY", errno)
	}
	if got := e.recv(f, true, 40, 10); got.errno != 0 {
		t.Fatal(got.errno)
	}
	if errno := e.send(f, sysAddr(0), 3, 6, 1, nil); errno != 0 {
		t.Errorf("send after a receive: %v", errno)
	}
	// A rejected send does not use up a slot.
	e2 := newEnv(t, Config{MaxMsgsPerUser: 1})
	f2 := e2.open()
	e2.send(f2, sysAddr(0), 0, 6, 0x33, nil)
	if errno := e2.send(f2, sysAddr(0), 0, 6, 1, nil); errno != 0 {
		t.Errorf("send after a rejected send: %v", errno)
	}
}

func TestAsyncCompletionAndWake(t *testing.T) {
	e := newEnv(t, Config{})
	e.eng.sync = false
	f := e.open()
	var wakes atomic.Int32
	if f.Poll(func() { wakes.Add(1) }) != 0 {
		t.Error("fresh file is readable")
	}
	if errno := e.send(f, sysAddr(0), 1, 6, 1, nil); errno != 0 {
		t.Fatal(errno)
	}
	if got := e.recv(f, true, 40, 10); got.errno != syscall.EAGAIN {
		t.Errorf("receive before completion: %v, want EAGAIN", got.errno)
	}
	if wakes.Load() != 0 {
		t.Error("woken before any message")
	}
	e.eng.completeAll()
	if wakes.Load() != 1 {
		t.Errorf("wakes = %d, want 1", wakes.Load())
	}
	if f.Poll(nil) != pollIn|pollRdNorm {
		t.Error("not readable after completion")
	}
	// The wake func is one-shot.
	e.send(f, sysAddr(0), 2, 6, 1, nil)
	e.eng.completeAll()
	if wakes.Load() != 1 {
		t.Errorf("wakes = %d after a second message without re-arming, want 1", wakes.Load())
	}
}

func TestReleaseWithOutstanding(t *testing.T) {
	e := newEnv(t, Config{})
	e.eng.sync = false
	f, other := e.open(), e.open()
	var wakes atomic.Int32
	f.Poll(func() { wakes.Add(1) })
	e.send(f, sysAddr(0), 1, 6, 1, nil)
	e.send(other, sysAddr(0), 2, 6, 1, nil)
	e.mem.Map(argBase, CmdSpec{NetFn: 0x30, Cmd: 1}.Encode())
	if got := e.k.Ioctl(context.Background(), f, IoctlRegisterForCmd, argBase, 0); got != 0 {
		t.Fatal(got)
	}
	f.Release()
	f.Release() // idempotent
	if n := e.eng.completeAll(); n != 2 {
		t.Fatalf("completed %d", n)
	}
	if wakes.Load() != 0 {
		t.Error("closed file woken")
	}
	if f.Poll(nil) != 0 {
		t.Error("closed file queued a late completion")
	}
	if got := e.recv(other, true, 40, 10); got.errno != 0 || got.recv.MsgID != 2 {
		t.Errorf("other file: %v msgid %d", got.errno, got.recv.MsgID)
	}
	if regs := e.dev.Registrations(); len(regs) != 0 {
		t.Errorf("registrations left after close: %+v", regs)
	}
	if n := e.dev.Users(); n != 1 {
		t.Errorf("users = %d, want 1", n)
	}
	// The registration is free for another file now.
	if got := e.k.Ioctl(context.Background(), other, IoctlRegisterForCmd, argBase, 0); got != 0 {
		t.Errorf("register after the owner closed: %v", got)
	}
}

func TestOpenLimitsAndOwners(t *testing.T) {
	e := newEnv(t, Config{MaxUsers: 2})
	a, b := e.open(), e.open()
	if a.Owner() == b.Owner() || a.Owner() <= OwnerBase || b.Owner() <= OwnerBase {
		t.Errorf("owners %d, %d", a.Owner(), b.Owner())
	}
	if _, errno := e.dev.Open(context.Background(), 0); errno != syscall.EBUSY {
		t.Errorf("3rd open: %v, want EBUSY", errno)
	}
	a.Release()
	c := e.open()
	if c.Owner() == a.Owner() || c.Owner() == b.Owner() {
		t.Error("owner reused")
	}
	if e := newEnv(t, Config{}); e.dev.cfg.MaxUsers != DefaultMaxUsers {
		t.Errorf("default MaxUsers = %d", e.dev.cfg.MaxUsers)
	}
	if n, errno := c.Read(context.Background(), make([]byte, 10), false); n != 0 || errno != syscall.EINVAL {
		t.Errorf("read = %d, %v", n, errno)
	}
	if n, errno := c.Write(context.Background(), []byte{1}); n != 0 || errno != syscall.EINVAL {
		t.Errorf("write = %d, %v", n, errno)
	}
}

func TestSimpleIoctls(t *testing.T) {
	i32 := func(v int32) []byte { return EncodeInt(uint32(v)) }
	chanSet := func(ch uint16, v uint8) []byte { return []byte{byte(ch), byte(ch >> 8), v, 0xEE} }
	type step struct {
		file   int // 0 or 1
		cmd    uint32
		arg    []byte // mapped at argBase; nil = leave argBase unmapped
		want   syscall.Errno
		after  []byte // expected argBase contents afterwards (nil = don't check)
		rounds int    // expected rounds (0 = don't check)
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"my address defaults and is interface-global", []step{
			{0, IoctlGetMyAddress, make([]byte, 4), 0, i32(0x20), 2},
			{0, IoctlSetMyAddress, i32(0x1234), 0, nil, 2},
			{1, IoctlGetMyAddress, make([]byte, 4), 0, i32(0x34), 0},
			{1, IoctlGetMyChannelAddress, chanSet(0, 0), 0, chanSet(0, 0x34), 2},
			{1, IoctlGetMyChannelAddress, chanSet(5, 0), 0, chanSet(5, 0x20), 0},
		}},
		{"my LUN defaults to 2 and is masked", []step{
			{0, IoctlGetMyLUN, make([]byte, 4), 0, i32(2), 0},
			{0, IoctlSetMyLUN, i32(7), 0, nil, 0},
			{1, IoctlGetMyLUN, make([]byte, 4), 0, i32(3), 0},
		}},
		{"channel address and LUN", []step{
			{0, IoctlSetMyChannelAddress, chanSet(15, 0x82), 0, nil, 2},
			{1, IoctlGetMyChannelAddress, chanSet(15, 0), 0, chanSet(15, 0x82), 0},
			{0, IoctlSetMyChannelLUN, chanSet(3, 0xFD), 0, nil, 0},
			{1, IoctlGetMyChannelLUN, chanSet(3, 0), 0, chanSet(3, 1), 0},
			{0, IoctlSetMyChannelAddress, chanSet(16, 1), syscall.EINVAL, nil, 0},
			{0, IoctlSetMyChannelLUN, chanSet(0xFFFF, 1), syscall.EINVAL, nil, 0},
			{0, IoctlGetMyChannelAddress, chanSet(16, 9), syscall.EINVAL, chanSet(16, 9), 0},
			{0, IoctlGetMyChannelLUN, chanSet(16, 9), syscall.EINVAL, chanSet(16, 9), 0},
		}},
		{"timing parms are per file", []step{
			{0, IoctlGetTimingParms, make([]byte, 8), 0, TimingParms{Retries: -1}.Encode(), 2},
			{0, IoctlSetTimingParms, TimingParms{Retries: 3, RetryTimeMs: 1000}.Encode(), 0, nil, 2},
			{0, IoctlGetTimingParms, make([]byte, 8), 0, TimingParms{Retries: 3, RetryTimeMs: 1000}.Encode(), 0},
			{1, IoctlGetTimingParms, make([]byte, 8), 0, TimingParms{Retries: -1}.Encode(), 0},
		}},
		{"maintenance mode", []step{
			{0, IoctlGetMaintenanceMode, make([]byte, 4), 0, i32(0), 2},
			{0, IoctlSetMaintenanceMode, i32(2), 0, nil, 2},
			{1, IoctlGetMaintenanceMode, make([]byte, 4), 0, i32(2), 0},
			{0, IoctlSetMaintenanceMode, i32(3), syscall.EINVAL, nil, 0},
			{0, IoctlSetMaintenanceMode, i32(-1), syscall.EINVAL, nil, 0},
			{0, IoctlSetMaintenanceMode, i32(1), 0, nil, 0},
			{0, IoctlGetMaintenanceMode, make([]byte, 4), 0, i32(1), 0},
		}},
		{"gets events", []step{
			{0, IoctlSetGetsEvents, i32(1), 0, nil, 2},
			{0, IoctlSetGetsEvents, i32(0), 0, nil, 2},
		}},
		{"register for cmd is exclusive", []step{
			{0, IoctlRegisterForCmd, []byte{0x30, 0x01}, 0, nil, 2},
			{1, IoctlRegisterForCmd, []byte{0x30, 0x01}, syscall.EBUSY, nil, 0},
			{0, IoctlRegisterForCmd, []byte{0x30, 0x01}, syscall.EBUSY, nil, 0},
			{1, IoctlRegisterForCmd, []byte{0x30, 0x02}, 0, nil, 0},
			{1, IoctlUnregisterForCmd, []byte{0x30, 0x01}, syscall.ENOENT, nil, 0},
			{0, IoctlUnregisterForCmd, []byte{0x30, 0x01}, 0, nil, 0},
			{0, IoctlUnregisterForCmd, []byte{0x30, 0x01}, syscall.ENOENT, nil, 0},
			{1, IoctlRegisterForCmd, []byte{0x30, 0x01}, 0, nil, 0},
		}},
		{"register for cmd chans", []step{
			{0, IoctlRegisterForCmdChans, CmdSpecChans{NetFn: 0x30, Cmd: 1, Chans: 0b0011}.Encode(), 0, nil, 2},
			{1, IoctlRegisterForCmdChans, CmdSpecChans{NetFn: 0x30, Cmd: 1, Chans: 0b0110}.Encode(), syscall.EBUSY, nil, 0},
			{1, IoctlRegisterForCmdChans, CmdSpecChans{NetFn: 0x30, Cmd: 1, Chans: 0b1100}.Encode(), 0, nil, 0},
			{1, IoctlRegisterForCmd, []byte{0x30, 0x01}, syscall.EBUSY, nil, 0},
			{1, IoctlUnregisterForCmdChans, CmdSpecChans{NetFn: 0x30, Cmd: 1, Chans: 0b0001}.Encode(), syscall.ENOENT, nil, 0},
			{0, IoctlUnregisterForCmdChans, CmdSpecChans{NetFn: 0x30, Cmd: 1, Chans: 0b0001}.Encode(), 0, nil, 0},
			{1, IoctlRegisterForCmdChans, CmdSpecChans{NetFn: 0x30, Cmd: 1, Chans: 0b0001}.Encode(), 0, nil, 0},
			{0, IoctlUnregisterForCmdChans, CmdSpecChans{NetFn: 0x30, Cmd: 1, Chans: 0}.Encode(), syscall.ENOENT, nil, 0},
			{0, IoctlUnregisterForCmdChans, CmdSpecChans{NetFn: 0x30, Cmd: 1, Chans: 0b0010}.Encode(), 0, nil, 0},
			{0, IoctlUnregisterForCmdChans, CmdSpecChans{NetFn: 0x30, Cmd: 1, Chans: 0b0010}.Encode(), syscall.ENOENT, nil, 0},
			{0, IoctlRegisterForCmdChans, CmdSpecChans{NetFn: 0x130, Cmd: 0x101, Chans: 0b0010}.Encode(), 0, nil, 0}, // netfn/cmd truncated to a byte
			{1, IoctlRegisterForCmdChans, CmdSpecChans{NetFn: 0x30, Cmd: 1, Chans: 0b0010}.Encode(), syscall.EBUSY, nil, 0},
		}},
		{"unknown command", []step{
			{0, IOC(2, 'i', 40, 4), make([]byte, 4), syscall.ENOTTY, nil, 1},
			{0, IOC(2, 'W', 5, 4), make([]byte, 4), syscall.ENOTTY, nil, 1},
			{0, 0x8028690E, make([]byte, 40), syscall.ENOTTY, nil, 1},
		}},
		{"unmapped argument", []step{
			{0, IoctlSetGetsEvents, nil, syscall.EFAULT, nil, 0},
			{0, IoctlSetMyAddress, nil, syscall.EFAULT, nil, 0},
			{0, IoctlGetMyAddress, nil, syscall.EFAULT, nil, 0},
			{0, IoctlGetMyLUN, nil, syscall.EFAULT, nil, 0},
			{0, IoctlGetTimingParms, nil, syscall.EFAULT, nil, 0},
			{0, IoctlGetMyChannelLUN, nil, syscall.EFAULT, nil, 0},
			{0, IoctlRegisterForCmd, nil, syscall.EFAULT, nil, 0},
			{0, IoctlRegisterForCmdChans, nil, syscall.EFAULT, nil, 0},
			{0, IoctlSetMaintenanceMode, nil, syscall.EFAULT, nil, 0},
			{0, IoctlReceiveMsgTrunc, nil, syscall.EFAULT, nil, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			files := []*File{e.open(), e.open()}
			for i, s := range tt.steps {
				e.mem.Unmap(argBase)
				var mem []byte
				if s.arg != nil {
					mem = e.mem.Map(argBase, append([]byte(nil), s.arg...))
				}
				if got := e.k.Ioctl(context.Background(), files[s.file], s.cmd, argBase, 0); got != s.want {
					t.Errorf("step %d (cmd %#x): errno %v, want %v", i, s.cmd, got, s.want)
				}
				if s.after != nil && !bytes.Equal(mem, s.after) {
					t.Errorf("step %d (cmd %#x): arg = % x, want % x", i, s.cmd, mem, s.after)
				}
				if s.rounds != 0 && e.k.Rounds != s.rounds {
					t.Errorf("step %d (cmd %#x): %d rounds, want %d", i, s.cmd, e.k.Rounds, s.rounds)
				}
			}
		})
	}
	t.Run("gets events flag", func(t *testing.T) {
		e := newEnv(t, Config{})
		f := e.open()
		e.mem.Map(argBase, i32(5))
		e.k.Ioctl(context.Background(), f, IoctlSetGetsEvents, argBase, 0)
		if !f.GetsEvents() {
			t.Error("gets_events not set")
		}
	})
}

func TestMaintenanceActive(t *testing.T) {
	e := newEnv(t, Config{})
	f := e.open()
	if e.dev.MaintenanceActive() {
		t.Fatal("active at start")
	}
	e.send(f, sysAddr(0), 0, 0x06, 0x01, nil) // Get Device ID: not a maintenance command
	if e.dev.MaintenanceActive() {
		t.Error("active after Get Device ID")
	}
	e.send(f, sysAddr(0), 0, 0x08, 0x01, nil) // firmware netfn
	if !e.dev.MaintenanceActive() {
		t.Error("not active after a firmware command")
	}
	e.now = e.now.Add(MaintenanceTimeout)
	if e.dev.MaintenanceActive() {
		t.Error("still active after the timeout")
	}
	e.send(f, sysAddr(0), 0, 0x06, 0x03, nil) // Warm Reset
	if !e.dev.MaintenanceActive() {
		t.Error("not active after Warm Reset")
	}
	e.mem.Map(argBase, EncodeInt(MaintenanceModeOff))
	e.k.Ioctl(context.Background(), f, IoctlSetMaintenanceMode, argBase, 0)
	if e.dev.MaintenanceActive() {
		t.Error("active with mode OFF")
	}
}

// TestConcurrentClients runs several files sending and receiving while the
// engine completes requests from its own goroutine; run with -race.
func TestConcurrentClients(t *testing.T) {
	reqs := make(chan *sched.Request, 64)
	d := NewDevice(Config{Submit: func(r *sched.Request) error { reqs <- r; return nil }})
	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		for r := range reqs {
			okReply(r)
			r.Done(r)
		}
	}()
	const clients, perClient = 4, 50
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mem := cusetest.NewMemory()
			k := cusetest.NewKernel(t, mem)
			f, errno := d.Open(context.Background(), 0)
			if errno != 0 {
				t.Error(errno)
				return
			}
			defer f.Release()
			woken := make(chan struct{}, 1)
			for i := range perClient {
				id := int64(c*1000 + i)
				mem.Map(argBase, Req{Addr: addrBase, AddrLen: 8, MsgID: id, Msg: Msg{NetFn: 6, Cmd: 1}}.Encode())
				mem.Map(addrBase, sysAddr(0))
				if errno := k.Ioctl(context.Background(), f, IoctlSendCommand, argBase, 0); errno != 0 {
					t.Errorf("send: %v", errno)
					return
				}
				for f.Poll(func() { woken <- struct{}{} }) == 0 {
					select {
					case <-woken:
					case <-time.After(10 * time.Second):
						t.Error("no wake-up within 10 s")
						return
					}
				}
				st := mem.Map(argBase, Recv{Addr: raddrBase, AddrLen: 40, Msg: Msg{DataLen: 10, Data: rdataBase}}.Encode())
				mem.Map(raddrBase, make([]byte, 40))
				mem.Map(rdataBase, make([]byte, 10))
				if errno := k.Ioctl(context.Background(), f, IoctlReceiveMsgTrunc, argBase, 0); errno != 0 {
					t.Errorf("receive: %v", errno)
					return
				}
				if got, _ := DecodeRecv(st); got.MsgID != id {
					t.Errorf("msgid %d, want %d", got.MsgID, id)
				}
				select { // drain a wake that raced with the message
				case <-woken:
				default:
				}
			}
		}()
	}
	wg.Wait()
	close(reqs)
	<-engineDone
	if n := d.Users(); n != 0 {
		t.Errorf("users = %d after all closed", n)
	}
}

// ccErr is an error carrying its own completion code, as the BT transport's.
type ccErr uint8

func (e ccErr) Error() string         { return "carries a completion code" }
func (e ccErr) CompletionCode() uint8 { return uint8(e) }
func (e ccErr) Is(target error) bool  { return target == os.ErrDeadlineExceeded }

func TestDefaultCompletionCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want uint8
	}{
		{os.ErrDeadlineExceeded, CCTimeout},
		{context.DeadlineExceeded, CCTimeout},
		{errors.New("hosed"), CCUnspecified},
		{fmt.Errorf("wrapped: %w", ccErr(0xC0)), 0xC0}, // its own code wins over the timeout
	} {
		if got := DefaultCompletionCode(tc.err); got != tc.want {
			t.Errorf("DefaultCompletionCode(%v) = %#x, want %#x", tc.err, got, tc.want)
		}
	}
}

// TestInline: a system-interface request goes to Config.Inline first; when
// it serves the request, the reply is queued before SEND returns and Submit
// is not called; when it refuses, Submit is.
func TestInline(t *testing.T) {
	for _, serve := range []bool{true, false} {
		t.Run(map[bool]string{true: "served", false: "refused"}[serve], func(t *testing.T) {
			var tried int
			e := newEnv(t, Config{Inline: func(r *sched.Request) bool {
				tried++
				if serve {
					okReply(r)
					r.Done(r)
				}
				return serve
			}})
			e.eng.sync = false
			f := e.open()
			if errno := e.send(f, sysAddr(0), 7, 6, 1, nil); errno != 0 {
				t.Fatal(errno)
			}
			ready := f.Poll(nil) == pollIn|pollRdNorm
			if tried != 1 || ready != serve || (e.eng.count() == 1) == serve {
				t.Fatalf("Inline tried %d times, readable after SEND %v, submitted %d; want 1, %v, %d",
					tried, ready, e.eng.count(), serve, map[bool]int{true: 0, false: 1}[serve])
			}
			e.eng.completeAll()
			if got := e.recv(f, true, 40, 10); got.errno != 0 || got.recv.MsgID != 7 {
				t.Fatalf("receive: %v msgid %d", got.errno, got.recv.MsgID)
			}
		})
	}
}

// TestReceiveTwoRounds: a receive into the buffers the previous one used
// takes two rounds; into other buffers, three, and the old buffers are not
// written.
func TestReceiveTwoRounds(t *testing.T) {
	e := newEnv(t, Config{})
	f := e.open()
	for i := range 4 {
		if errno := e.send(f, sysAddr(0), int64(i), 6, 1, nil); errno != 0 {
			t.Fatal(errno)
		}
	}
	const otherData = rdataBase + 0x10000
	tests := []struct {
		name   string
		data   uint64
		rounds int
		msgID  int64
	}{
		{"first: nothing declared", rdataBase, 3, 0},
		{"same buffers", rdataBase, 2, 1},
		{"data buffer moved", otherData, 3, 2},
		{"same again", otherData, 2, 3},
		{"empty queue", otherData, 2, -1},
	}
	for _, tc := range tests {
		r := Recv{Addr: raddrBase, AddrLen: 40, Msg: Msg{DataLen: 300, Data: tc.data}}
		st := e.mem.Map(argBase, r.Encode())
		e.mem.Map(raddrBase, bytes.Repeat([]byte{0xAA}, 40))
		db := e.mem.Map(rdataBase, bytes.Repeat([]byte{0xAA}, 300))
		ob := e.mem.Map(otherData, bytes.Repeat([]byte{0xAA}, 300))
		errno := e.k.Ioctl(context.Background(), f, IoctlReceiveMsgTrunc, argBase, 0)
		got, _ := DecodeRecv(st)
		if e.k.Rounds != tc.rounds {
			t.Errorf("%s: %d rounds, want %d", tc.name, e.k.Rounds, tc.rounds)
		}
		if tc.msgID < 0 {
			if errno != syscall.EAGAIN {
				t.Errorf("%s: %v, want EAGAIN", tc.name, errno)
			}
			continue
		}
		used, unused := db, ob
		if tc.data == otherData {
			used, unused = ob, db
		}
		if errno != 0 || got.MsgID != tc.msgID || got.Msg.DataLen == 0 || used[0] != 0 || used[got.Msg.DataLen] != 0xAA {
			t.Errorf("%s: %v msgid %d len %d data % x; want msgid %d, completion code 0 then untouched bytes",
				tc.name, errno, got.MsgID, got.Msg.DataLen, used[:got.Msg.DataLen+1], tc.msgID)
		}
		if !bytes.Equal(unused, bytes.Repeat([]byte{0xAA}, 300)) {
			t.Errorf("%s: the buffer the struct does not name was written", tc.name)
		}
	}
}

// TestPollWithoutWaiterDisarms: a poll without a wake func (the kernel set
// no FUSE_POLL_SCHEDULE_NOTIFY: nobody waits) forgets the armed one, so the
// next message writes no notification; a poll with one arms it again.
func TestPollWithoutWaiterDisarms(t *testing.T) {
	e := newEnv(t, Config{})
	e.eng.sync = false
	f := e.open()
	var wakes atomic.Int32
	f.Poll(func() { wakes.Add(1) })
	f.Poll(nil)
	e.send(f, sysAddr(0), 1, 6, 1, nil)
	e.eng.completeAll()
	if wakes.Load() != 0 {
		t.Errorf("woken %d times after a poll that said nobody waits", wakes.Load())
	}
	e.recv(f, true, 40, 10)
	f.Poll(func() { wakes.Add(1) })
	e.send(f, sysAddr(0), 2, 6, 1, nil)
	e.eng.completeAll()
	if wakes.Load() != 1 {
		t.Errorf("woken %d times after re-arming, want 1", wakes.Load())
	}
}

// TestRecycledPending checks that a pending request given back to the
// pool once its reply is received never changes a reply still queued or
// a state already exported: replies are told apart by message ID and by
// the request data the engine echoes.
func TestRecycledPending(t *testing.T) {
	echo := func(r *sched.Request) { r.Resp = append(append(r.Resp[:0], r.Msg[0]|4, r.Msg[1], 0x00), r.Msg[2:]...) }
	tests := []struct {
		name  string
		order []string // "send A n" (msgID n, data n n n), "recv A n" (expects msgID n), "export B n"
	}{
		{"reuse while another file holds a reply", []string{"send A 1", "send B 2", "recv A 1", "send A 3", "send A 4", "recv B 2", "recv A 3", "recv A 4"}},
		{"reuse while the same file holds a reply", []string{"send A 1", "send A 2", "recv A 1", "send A 3", "recv A 2", "send A 4", "recv A 3", "recv A 4"}},
		{"export then reuse", []string{"send B 1", "send A 2", "export B 1", "recv B 1", "recv A 2", "send A 3", "send A 4", "check export", "recv A 3", "recv A 4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			e.eng.reply = echo
			files := map[string]*File{"A": e.open(), "B": e.open()}
			var exported FileState
			var exportedID int64
			for _, step := range tt.order {
				var op, who string
				var n int64
				fmt.Sscanf(step, "%s %s %d", &op, &who, &n)
				f := files[who]
				switch op {
				case "send":
					if errno := e.send(f, sysAddr(0), n, NetFnApp, 0x01, []byte{byte(n), byte(n), byte(n)}); errno != 0 {
						t.Fatalf("%s: %v", step, errno)
					}
				case "recv":
					r := e.recv(f, false, 40, 300)
					if r.errno != 0 || r.recv.MsgID != n || r.recv.Msg.DataLen != 4 || !bytes.Equal(r.data[:4], []byte{0, byte(n), byte(n), byte(n)}) {
						t.Fatalf("%s: errno %v, msgid %d, data % x", step, r.errno, r.recv.MsgID, r.data[:r.recv.Msg.DataLen])
					}
				case "export":
					exported, exportedID = f.ExportState(), n
				case "check":
					if len(exported.Queue) != 1 || exported.Queue[0].MsgID != exportedID ||
						!bytes.Equal(exported.Queue[0].Data, []byte{0, byte(exportedID), byte(exportedID), byte(exportedID)}) {
						t.Fatalf("the exported queue changed: %+v", exported.Queue)
					}
				}
			}
		})
	}
}
