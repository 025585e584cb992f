package main

// The /dev/ipmi0 plumbing every subcommand shares: open a file, SEND a
// request, poll for a message, RECEIVE it. All of it goes through the
// arena, so the kernel only ever sees user addresses of off-heap memory
// laid out as main.go describes, and through ioctl's exported encoders.

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
)

// openDev opens /dev/ipmi0 read-write and returns the bare descriptor.
func openDev() (int, error) {
	fd, err := unix.Open(devPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", devPath, err)
	}
	return fd, nil
}

// dev is one open file of /dev/ipmi0 with the arena its ioctl arguments
// are built in. Several devs may share an arena (the badinput cases use
// one for every file) as long as one goroutine uses them at a time.
type dev struct {
	a  *arena
	fd int
}

// newDev maps a fresh arena and opens /dev/ipmi0 on it.
func newDev() (dev, error) {
	a, err := newArena()
	if err != nil {
		return dev{}, err
	}
	return a.open()
}

// open opens /dev/ipmi0 on arena a.
func (a *arena) open() (dev, error) {
	fd, err := openDev()
	if err != nil {
		return dev{}, err
	}
	return dev{a: a, fd: fd}, nil
}

// Close closes the file.
func (d dev) Close() error { return unix.Close(d.fd) }

// req builds a struct ipmi_req for netfn/cmd to addr (AddrLen is its
// length) with data (nil: a NULL data pointer) and msgid, writing the
// address and data into the arena first.
func (a *arena) req(addr []byte, netfn, cmd uint8, data []byte, msgid int64) ioctl.Req {
	r := ioctl.Req{AddrLen: uint32(len(addr)), MsgID: msgid, Msg: ioctl.Msg{NetFn: netfn, Cmd: cmd, DataLen: uint16(len(data))}}
	r.Addr = uint64(a.put(offAddr, addr))
	if data != nil {
		r.Msg.Data = uint64(a.put(offData, data))
	}
	return r
}

// Send queues one request for netfn/cmd to the system interface (LUN 0)
// with data (nil: a NULL data pointer) and msgid, and returns SEND's errno.
func (d dev) Send(netfn, cmd uint8, data []byte, msgid int64) syscall.Errno {
	return d.SendTo(sysAddr(0), netfn, cmd, data, msgid)
}

// SendTo is Send to any address: an IPMB responder, or the address an
// incoming command came from.
func (d dev) SendTo(addr []byte, netfn, cmd uint8, data []byte, msgid int64) syscall.Errno {
	return ioctlRaw(d.fd, ioctl.IoctlSendCommand, d.a.put(offReq, d.a.req(addr, netfn, cmd, data, msgid).Encode()))
}

// reply is what one RECEIVE returned.
type reply struct {
	errno syscall.Errno
	recv  ioctl.Recv // the struct as read back from user memory
	addr  []byte     // the address buffer's first 8 bytes afterwards
	data  []byte     // the reply data (recv.Msg.DataLen bytes, at most the buffer)
}

func (r reply) String() string {
	if r.errno != 0 && r.errno != unix.EMSGSIZE {
		return errName(r.errno)
	}
	return fmt.Sprintf("%s type=%d msgid=%d netfn=%#02x cmd=%#02x addr_len=%d addr=% x data_len=%d data=% x",
		errName(r.errno), r.recv.RecvType, r.recv.MsgID, r.recv.Msg.NetFn, r.recv.Msg.Cmd, r.recv.AddrLen, r.addr, r.recv.Msg.DataLen, r.data)
}

// Receive runs RECEIVE_MSG(_TRUNC) (cmd) with an address buffer of addrLen
// and a data buffer of dataLen, both in the arena, after poisoning the
// struct's output fields so a struct that is not written back shows.
func (d dev) Receive(cmd uintptr, addrLen uint32, dataLen uint16) reply {
	a := d.a
	for i := range 40 {
		a.b[offRecvAdr+i] = 0xEE
	}
	r := ioctl.Recv{RecvType: -7, Addr: uint64(a.at(offRecvAdr)), AddrLen: addrLen, MsgID: -7,
		Msg: ioctl.Msg{NetFn: 0xEE, Cmd: 0xEE, DataLen: dataLen, Data: uint64(a.at(offRData))}}
	e := ioctlRaw(d.fd, cmd, a.put(offRecv, r.Encode()))
	out, _ := ioctl.DecodeRecv(a.b[offRecv : offRecv+ioctl.SizeofRecv])
	rep := reply{errno: e, recv: out, addr: append([]byte(nil), a.b[offRecvAdr:offRecvAdr+8]...)}
	n := min(int(out.Msg.DataLen), int(dataLen))
	rep.data = append([]byte(nil), a.b[offRData:offRData+n]...)
	return rep
}

// Take is the usual RECEIVE: RECEIVE_MSG_TRUNC with a whole struct
// ipmi_addr for the address and dataLen bytes for the data.
func (d dev) Take(dataLen uint16) reply {
	return d.Receive(ioctl.IoctlReceiveMsgTrunc, ioctl.SizeofAddr, dataLen)
}

// Drain takes messages (dataLen bytes of data) and hands each to f until
// the queue is empty (EAGAIN) or f returns false.
func (d dev) Drain(dataLen uint16, f func(reply) bool) {
	for {
		r := d.Take(dataLen)
		if r.errno == unix.EAGAIN || !f(r) {
			return
		}
	}
}

// waitReadable polls fd for POLLIN up to timeout and returns the revents.
func waitReadable(fd int, timeout time.Duration) (int16, error) {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(p, int(timeout/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("poll: %w", err)
		}
		if n == 0 {
			return 0, nil
		}
		return p[0].Revents, nil
	}
}

// Wait polls up to timeout and reports whether a message is readable
// (POLLIN).
func (d dev) Wait(timeout time.Duration) (bool, error) {
	rev, err := waitReadable(d.fd, timeout)
	return rev&unix.POLLIN != 0, err
}

// Next waits until deadline for one message and takes it with roomy
// buffers; errno ETIMEDOUT when none came.
func (d dev) Next(deadline time.Time) reply {
	left := time.Until(deadline)
	if left <= 0 {
		return reply{errno: unix.ETIMEDOUT}
	}
	if ok, err := d.Wait(left); err != nil || !ok {
		return reply{errno: unix.ETIMEDOUT}
	}
	return d.Take(300)
}

// Await waits up to 10 s for a message and takes it with roomy buffers.
func (d dev) Await() reply {
	if ok, err := d.Wait(10 * time.Second); err != nil || !ok {
		return reply{errno: unix.ETIMEDOUT}
	}
	return d.Take(300)
}

// RoundTrip sends Get Device ID with msgid and waits for its reply.
func (d dev) RoundTrip(msgid int64) reply {
	if e := d.Send(ioctl.NetFnApp, 0x01, nil, msgid); e != 0 {
		return reply{errno: e}
	}
	return d.Await()
}
