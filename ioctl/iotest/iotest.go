// Package iotest drives an ioctl.File (any cuse.File serving the IPMICTL
// ABI) the way a process calling ioctl(2) on /dev/ipmi0 would: its Client
// keeps the buffers ipmitool passes at fixed user addresses in a
// cusetest.Memory and calls the file through a cusetest.Kernel, which runs
// the unrestricted CUSE ioctl protocol of fs/fuse/ioctl.c. Tests of the
// layers that deliver messages to files (the message handler, the daemon)
// use it to play ipmitool without a kernel.
package iotest

import (
	"context"
	"syscall"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/cuse/cusetest"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
)

// The fake process's buffers: the ioctl argument, the address buffer and
// the data buffer, each at a fixed user address.
const (
	argBase  = 0x10000
	addrBase = 0x20000
	dataBase = 0x30000
	argSize  = 64
	dataSize = ioctl.MaxMsgLength
)

// Client is one process's view of an open file.
type Client struct {
	F    cuse.File
	k    *cusetest.Kernel
	arg  []byte
	addr []byte
	data []byte
}

// NewClient returns a client for f with empty buffers. A file that breaks
// the CUSE ioctl protocol (see cusetest.Kernel) makes the client panic,
// since it has no testing.TB to report to.
func NewClient(f cuse.File) *Client {
	mem := cusetest.NewMemory()
	return &Client{F: f, k: cusetest.NewKernel(nil, mem),
		arg:  mem.Map(argBase, make([]byte, argSize)),
		addr: mem.Map(addrBase, make([]byte, ioctl.SizeofAddr)),
		data: mem.Map(dataBase, make([]byte, dataSize))}
}

// Ioctl performs one ioctl(2) with its argument at the arg buffer (arg is
// copied there first) and returns the errno the caller sees, 0 on success.
// After the call, Arg holds what the kernel wrote back.
func (c *Client) Ioctl(cmd uint32, arg []byte) syscall.Errno {
	clear(c.arg)
	copy(c.arg, arg)
	return c.k.Ioctl(context.Background(), c.F, cmd, argBase, 0)
}

// Arg returns the argument buffer as the last ioctl left it.
func (c *Client) Arg() []byte { return c.arg }

// Send is IPMICTL_SEND_COMMAND with addr (the addr_len bytes the caller
// passes, e.g. ioctl.IPMBAddr{...}.Encode()) and data (nil: no data
// pointer).
func (c *Client) Send(addr []byte, msgID int64, netfn, cmd uint8, data []byte) syscall.Errno {
	return c.Ioctl(ioctl.IoctlSendCommand, c.req(addr, msgID, netfn, cmd, data).Encode())
}

// SendSettime is IPMICTL_SEND_COMMAND_SETTIME.
func (c *Client) SendSettime(addr []byte, msgID int64, netfn, cmd uint8, data []byte, retries int32, retryMs uint32) syscall.Errno {
	rs := ioctl.ReqSettime{Req: c.req(addr, msgID, netfn, cmd, data), Retries: retries, RetryTimeMs: retryMs}
	return c.Ioctl(ioctl.IoctlSendCommandSettime, rs.Encode())
}

func (c *Client) req(addr []byte, msgID int64, netfn, cmd uint8, data []byte) ioctl.Req {
	clear(c.addr)
	copy(c.addr, addr)
	clear(c.data)
	r := ioctl.Req{Addr: addrBase, AddrLen: uint32(len(addr)), MsgID: msgID,
		Msg: ioctl.Msg{NetFn: netfn, Cmd: cmd, DataLen: uint16(len(data))}}
	if data != nil {
		copy(c.data, data)
		r.Msg.Data = dataBase
	}
	return r
}

// Received is one message taken off a file's queue.
type Received struct {
	RecvType int32
	Addr     []byte // addr_len bytes
	MsgID    int64
	NetFn    uint8
	Cmd      uint8
	Data     []byte
}

// Receive is IPMICTL_RECEIVE_MSG_TRUNC with a 40-byte address buffer and
// a 272-byte data buffer, as ipmitool calls it.
func (c *Client) Receive() (Received, syscall.Errno) {
	clear(c.addr)
	clear(c.data)
	r := ioctl.Recv{Addr: addrBase, AddrLen: ioctl.SizeofAddr, Msg: ioctl.Msg{DataLen: dataSize, Data: dataBase}}
	errno := c.Ioctl(ioctl.IoctlReceiveMsgTrunc, r.Encode())
	if errno != 0 && errno != syscall.EMSGSIZE {
		return Received{}, errno
	}
	got, err := ioctl.DecodeRecv(c.arg)
	if err != nil {
		return Received{}, syscall.EFAULT
	}
	out := Received{RecvType: got.RecvType, MsgID: got.MsgID, NetFn: got.Msg.NetFn, Cmd: got.Msg.Cmd,
		Addr: append([]byte(nil), c.addr[:min(int(got.AddrLen), len(c.addr))]...),
		Data: append([]byte(nil), c.data[:min(int(got.Msg.DataLen), len(c.data))]...)}
	return out, errno
}

// SetGetsEvents is IPMICTL_SET_GETS_EVENTS_CMD.
func (c *Client) SetGetsEvents(on bool) syscall.Errno {
	v := uint32(0)
	if on {
		v = 1
	}
	return c.Ioctl(ioctl.IoctlSetGetsEvents, ioctl.EncodeInt(v))
}

// Register is IPMICTL_REGISTER_FOR_CMD; Unregister is its opposite.
func (c *Client) Register(netfn, cmd uint8) syscall.Errno {
	return c.Ioctl(ioctl.IoctlRegisterForCmd, ioctl.CmdSpec{NetFn: netfn, Cmd: cmd}.Encode())
}

// Unregister is IPMICTL_UNREGISTER_FOR_CMD.
func (c *Client) Unregister(netfn, cmd uint8) syscall.Errno {
	return c.Ioctl(ioctl.IoctlUnregisterForCmd, ioctl.CmdSpec{NetFn: netfn, Cmd: cmd}.Encode())
}

// RegisterChans is IPMICTL_REGISTER_FOR_CMD_CHANS.
func (c *Client) RegisterChans(netfn, cmd uint8, chans uint32) syscall.Errno {
	return c.Ioctl(ioctl.IoctlRegisterForCmdChans, ioctl.CmdSpecChans{NetFn: uint32(netfn), Cmd: uint32(cmd), Chans: chans}.Encode())
}

// SetMaintenanceMode is IPMICTL_SET_MAINTENANCE_MODE_CMD.
func (c *Client) SetMaintenanceMode(mode int32) syscall.Errno {
	return c.Ioctl(ioctl.IoctlSetMaintenanceMode, ioctl.EncodeInt(uint32(mode)))
}

// SetTimingParms is IPMICTL_SET_TIMING_PARMS_CMD.
func (c *Client) SetTimingParms(retries int32, retryMs uint32) syscall.Errno {
	return c.Ioctl(ioctl.IoctlSetTimingParms, ioctl.TimingParms{Retries: retries, RetryTimeMs: retryMs}.Encode())
}
