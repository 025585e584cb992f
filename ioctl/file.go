package ioctl

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// Poll bits (include/uapi/asm-generic/poll.h).
const (
	pollIn     = 0x1
	pollRdNorm = 0x40
)

// File is one open file of the device, like the kernel's ipmi_file_private
// plus its message-handler user: a receive queue, timing defaults,
// gets_events, and an Owner that is the scheduler's fairness key.
type File struct {
	dev   *Device
	owner sched.Owner

	mu         sync.Mutex
	queue      []*recvMsg // head at index 0
	wake       func()
	closed     bool
	inflight   int // submitted to the engine, not completed
	retries    int32
	retryMs    uint32
	getsEvents bool

	// recvLast is where the last RECEIVE wrote its output; the next one
	// declares its output there in its first round (see receive).
	recvLast recvBufs
	// recvDecl are the declarations whose second round has not come yet.
	recvDecl [recvSlots]recvBufs
}

// recvBufs is where a RECEIVE's output goes: the struct's address and
// data pointers, the address length and the data capacity.
type recvBufs struct {
	set    bool // recvLast: a receive succeeded; recvDecl: the slot is in use
	compat bool
	addr   uint64
	la     uint32
	data   uint64
	dlen   uint32
}

// recvSlots is how many receives on one file may be between their first
// and second round with declared output at once. The slot travels to the
// second round in the length of a second in-iovec (1..recvSlots bytes of
// the struct, read again), which no other round of receive has: those ask
// for the struct alone or for the struct plus an address of at least 8
// bytes.
const recvSlots = 7

var _ cuse.File = (*File)(nil)

// recvMsg is one message waiting in a file's receive queue.
type recvMsg struct {
	recvType int32
	addr     []byte // exactly AddrLength(addr type) bytes, as written to the user
	msgID    int64
	netfn    uint8
	cmd      uint8
	data     []byte
	// p is the pending request this reply is part of, given back to
	// pendingPool once received; nil for every other message.
	p *pending
}

// Owner returns the file's fairness key, unique among the device's files.
func (f *File) Owner() sched.Owner { return f.owner }

// Read fails with EINVAL: the kernel's ipmi devintf has no read method.
func (f *File) Read(context.Context, []byte, bool) (int, syscall.Errno) { return 0, syscall.EINVAL }

// Write fails with EINVAL: the kernel's ipmi devintf has no write method.
func (f *File) Write(context.Context, []byte) (int, syscall.Errno) { return 0, syscall.EINVAL }

// Poll reports POLLIN|POLLRDNORM iff the receive queue is non-empty. wake,
// if not nil, is remembered and called once when the next message arrives
// (from the engine goroutine, so it must not block). A nil wake forgets the
// one remembered: the kernel asks for a notification (cuse passes a wake)
// whenever anyone waits on the file's poll queue, so a poll without one
// means nobody waits, and a later waiter polls again first.
//
// A wake is kept when the file answers ready: a poll(2) caller then
// returns and stops waiting, but an edge-triggered epoll user, or another
// thread, may still wait, and the kernel driver wakes them on the next
// message. The server cannot tell them apart, so the next message costs a
// notification that may find nobody.
func (f *File) Poll(wake func()) uint32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.wake = wake
	}
	if len(f.queue) > 0 {
		return pollIn | pollRdNorm
	}
	return 0
}

// Release destroys the user: registrations are removed, queued messages
// freed, and completions that arrive later are dropped.
func (f *File) Release() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	f.queue = nil
	f.wake = nil
	f.mu.Unlock()
	f.dev.release(f)
}

// GetsEvents reports whether the file asked for async events
// (IPMICTL_SET_GETS_EVENTS_CMD).
func (f *File) GetsEvents() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.getsEvents
}

// Ioctl runs one round of an IPMICTL ioctl, asking the kernel for the
// user memory it needs through retries. No IPMICTL ioctl blocks.
func (f *File) Ioctl(_ context.Context, in *cuse.IoctlIn) cuse.IoctlOut {
	compat := in.Flags&fuseIoctlCompat != 0
	switch in.Cmd {
	case IoctlSendCommand:
		return f.send(in, sendNative)
	case IoctlSendCommandSettime:
		return f.send(in, sendNativeSettime)
	case IoctlReceiveMsg:
		return f.receive(in, false, false)
	case IoctlReceiveMsgTrunc:
		return f.receive(in, false, true)
	case IoctlRegisterForCmd, IoctlUnregisterForCmd:
		b, out := needIn(in, SizeofCmdSpec)
		if out != nil {
			return *out
		}
		c, _ := DecodeCmdSpec(b)
		if in.Cmd == IoctlRegisterForCmd {
			return result(f.dev.registerForCmd(f, c.NetFn, c.Cmd, ChanAll))
		}
		return result(f.dev.unregisterForCmd(f, c.NetFn, c.Cmd, ChanAll))
	case IoctlRegisterForCmdChans, IoctlUnregisterForCmdChans:
		b, out := needIn(in, SizeofCmdSpecChans)
		if out != nil {
			return *out
		}
		c, _ := DecodeCmdSpecChans(b)
		if in.Cmd == IoctlRegisterForCmdChans {
			return result(f.dev.registerForCmd(f, uint8(c.NetFn), uint8(c.Cmd), c.Chans))
		}
		return result(f.dev.unregisterForCmd(f, uint8(c.NetFn), uint8(c.Cmd), c.Chans))
	case IoctlSetGetsEvents:
		b, out := needIn(in, SizeofInt)
		if out != nil {
			return *out
		}
		v, _ := DecodeInt(b)
		f.mu.Lock()
		f.getsEvents = v != 0
		f.mu.Unlock()
		if v != 0 && f.dev.cfg.Bridge != nil {
			f.dev.cfg.Bridge.GetsEvents(f.owner)
		}
		return cuse.IoctlOut{}
	case IoctlSetMyAddress, IoctlSetMyLUN:
		b, out := needIn(in, SizeofInt)
		if out != nil {
			return *out
		}
		v, _ := DecodeInt(b)
		return result(f.dev.setChannelValue(0, uint8(v), in.Cmd == IoctlSetMyLUN))
	case IoctlGetMyAddress, IoctlGetMyLUN:
		if out := needOut(in, SizeofInt); out != nil {
			return *out
		}
		v, errno := f.dev.channelValue(0, in.Cmd == IoctlGetMyLUN)
		if errno != 0 {
			return result(errno)
		}
		return cuse.IoctlOut{Out: EncodeInt(uint32(v))}
	case IoctlSetMyChannelAddress, IoctlSetMyChannelLUN:
		b, out := needIn(in, SizeofChannelLUNAddrSet)
		if out != nil {
			return *out
		}
		s, _ := DecodeChannelLUNAddrSet(b)
		return result(f.dev.setChannelValue(uint32(s.Channel), s.Value, in.Cmd == IoctlSetMyChannelLUN))
	case IoctlGetMyChannelAddress, IoctlGetMyChannelLUN:
		b, out := needInOut(in, SizeofChannelLUNAddrSet)
		if out != nil {
			return *out
		}
		s, _ := DecodeChannelLUNAddrSet(b)
		v, errno := f.dev.channelValue(uint32(s.Channel), in.Cmd == IoctlGetMyChannelLUN)
		if errno != 0 {
			return result(errno)
		}
		s.Value = v
		res := append([]byte(nil), b[:SizeofChannelLUNAddrSet]...)
		s.EncodeInto(res)
		return cuse.IoctlOut{Out: res}
	case IoctlSetTimingParms:
		b, out := needIn(in, SizeofTimingParms)
		if out != nil {
			return *out
		}
		t, _ := DecodeTimingParms(b)
		f.mu.Lock()
		f.retries, f.retryMs = t.Retries, t.RetryTimeMs
		f.mu.Unlock()
		return cuse.IoctlOut{}
	case IoctlGetTimingParms:
		if out := needOut(in, SizeofTimingParms); out != nil {
			return *out
		}
		f.mu.Lock()
		t := TimingParms{Retries: f.retries, RetryTimeMs: f.retryMs}
		f.mu.Unlock()
		return cuse.IoctlOut{Out: t.Encode()}
	case IoctlGetMaintenanceMode:
		if out := needOut(in, SizeofInt); out != nil {
			return *out
		}
		return cuse.IoctlOut{Out: EncodeInt(uint32(f.dev.maintenanceMode()))}
	case IoctlSetMaintenanceMode:
		b, out := needIn(in, SizeofInt)
		if out != nil {
			return *out
		}
		v, _ := DecodeInt(b)
		return result(f.dev.setMaintenanceMode(int32(v)))
	}
	if compat {
		// Only the four pointer-carrying commands have compat numbers;
		// every other command has the same number in both ABIs.
		switch in.Cmd {
		case IoctlCompatSendCommand:
			return f.send(in, sendCompat)
		case IoctlCompatSendCommandSettime:
			return f.send(in, sendCompatSettime)
		case IoctlCompatReceiveMsg:
			return f.receive(in, true, false)
		case IoctlCompatReceiveMsgTrunc:
			return f.receive(in, true, true)
		}
	}
	return cuse.IoctlOut{Errno: syscall.ENOTTY}
}

// result turns an errno (0 for success) into a final reply.
func result(errno syscall.Errno) cuse.IoctlOut { return cuse.IoctlOut{Errno: errno} }

// needIn returns the size bytes at Arg, or the retry reply that asks for them.
func needIn(in *cuse.IoctlIn, size int) ([]byte, *cuse.IoctlOut) {
	if len(in.In) != size {
		out := in.Retry([]cuse.Iovec{{Base: in.Arg, Len: uint64(size)}}, nil)
		return nil, &out
	}
	return in.In, nil
}

// needOut returns nil when the kernel accepts size bytes of output at Arg,
// else the retry reply that sets that up.
func needOut(in *cuse.IoctlIn, size int) *cuse.IoctlOut {
	if in.OutSize != uint32(size) {
		out := in.Retry(nil, []cuse.Iovec{{Base: in.Arg, Len: uint64(size)}})
		return &out
	}
	return nil
}

// needInOut is needIn and needOut in a single round, for commands that read
// the struct and write it back.
func needInOut(in *cuse.IoctlIn, size int) ([]byte, *cuse.IoctlOut) {
	if len(in.In) != size || in.OutSize != uint32(size) {
		iov := []cuse.Iovec{{Base: in.Arg, Len: uint64(size)}}
		out := in.Retry(iov, iov)
		return nil, &out
	}
	return in.In, nil
}

// sendLayout selects the struct a SEND variant passes.
type sendLayout struct {
	size    int
	settime bool // the struct carries retries/retry_time_ms
	decode  func([]byte) (ReqSettime, error)
}

var (
	sendNative = sendLayout{size: SizeofReq, decode: func(b []byte) (ReqSettime, error) {
		r, err := DecodeReq(b)
		return ReqSettime{Req: r}, err
	}}
	sendNativeSettime = sendLayout{size: SizeofReqSettime, settime: true, decode: DecodeReqSettime}
	sendCompat        = sendLayout{size: SizeofCompatReq, decode: func(b []byte) (ReqSettime, error) {
		r, err := DecodeCompatReq(b)
		return ReqSettime{Req: r}, err
	}}
	sendCompatSettime = sendLayout{size: SizeofCompatReqSettime, settime: true, decode: DecodeCompatReqSettime}
)

// send is IPMICTL_SEND_COMMAND(_SETTIME) and their compat variants, with
// the kernel's copies and checks in the kernel's order (handle_send_req):
// copy the struct (EFAULT); addr_len > 40 (EINVAL); copy the address
// (EFAULT); validate it (EINVAL); then, only if msg.data is not NULL,
// data_len > 272 (EMSGSIZE) and copy the data (EFAULT); then the per-user
// limit and the per-address-type checks.
//
// CUSE copies every range a retry asks for before the next round, and a
// fault in any of them fails the ioctl with EFAULT before the server sees
// it. So send asks for the data together with the address only when no
// check the kernel makes between the two copies can fail on what the
// struct already says: round 1 asks for the struct; round 2 checks
// addr_len and asks for the struct, the address and, when the address is
// long enough to be valid (8 bytes) and data_len is at most 272, the data;
// round 3 validates the address, checks data_len and submits: 3 rounds,
// with data or without. Otherwise (addr_len < 8, data_len > 272) round 2
// asks for the address alone, and round 3 fails with the kernel's EINVAL
// or EMSGSIZE. The one difference left: an address that is long enough
// but invalid, together with a data pointer that faults, gets EFAULT where
// the kernel answers EINVAL (see the package doc).
//
// Every round re-reads the struct, since the caller may change it between
// rounds; when the payload no longer matches what the current struct
// describes, send starts over from the address round, and a round that
// got the address alone while the struct now has data asks for the data.
func (f *File) send(in *cuse.IoctlIn, l sendLayout) cuse.IoctlOut {
	if len(in.In) < l.size {
		return in.Retry([]cuse.Iovec{{Base: in.Arg, Len: uint64(l.size)}}, nil)
	}
	rs, err := l.decode(in.In)
	if err != nil { // unreachable: the length was checked
		return result(syscall.EFAULT)
	}
	req := rs.Req
	if req.AddrLen > SizeofAddr {
		return result(syscall.EINVAL)
	}
	dataLen := int(req.Msg.DataLen)
	if req.Msg.Data == 0 {
		dataLen = 0 // the kernel ignores data_len without a data pointer
	}
	structIov := cuse.Iovec{Base: in.Arg, Len: uint64(l.size)}
	addrIov := cuse.Iovec{Base: req.Addr, Len: uint64(req.AddrLen)}
	addrEnd := l.size + int(req.AddrLen)
	dataIov := cuse.Iovec{Base: req.Msg.Data, Len: uint64(dataLen)}
	if len(in.In) != addrEnd && len(in.In) != addrEnd+dataLen {
		// Round 2, or the struct changed under us.
		if req.AddrLen < SizeofSystemInterface || dataLen > MaxMsgLength {
			// The address's validation or data_len fails before the
			// kernel would copy the data: the address alone.
			return in.Retry([]cuse.Iovec{structIov, addrIov}, nil)
		}
		return in.Retry([]cuse.Iovec{structIov, addrIov, dataIov}, nil)
	}
	addr, errno := validateAddr(in.In[l.size:addrEnd])
	if errno != 0 {
		return result(errno)
	}
	if dataLen > MaxMsgLength {
		return result(syscall.EMSGSIZE)
	}
	if len(in.In) != addrEnd+dataLen {
		// The address is good and the struct now has data it did not
		// have when the address was asked for: one more round.
		return in.Retry([]cuse.Iovec{structIov, addrIov, dataIov}, nil)
	}
	data := in.In[addrEnd:]
	// _SETTIME's retries/retry_time_ms, like the file's timing defaults,
	// only matter for IPMB/LAN requests; the kernel ignores them for the
	// system interface.
	tm := TimingParms{Retries: rs.Retries, RetryTimeMs: rs.RetryTimeMs}
	if !l.settime {
		f.mu.Lock()
		tm = TimingParms{Retries: f.retries, RetryTimeMs: f.retryMs}
		f.mu.Unlock()
	}
	return result(f.submit(addr, req.MsgID, req.Msg.NetFn, req.Msg.Cmd, data, tm))
}

// validateAddr is ipmi_validate_addr over the addr_len bytes the user passed.
func validateAddr(b []byte) (Addr, syscall.Errno) {
	if len(b) < SizeofSystemInterface {
		return Addr{}, syscall.EINVAL
	}
	a, _ := DecodeAddr(b)
	if a.AddrType == SystemInterfaceAddrType {
		if a.Channel != BMCChannel {
			return Addr{}, syscall.EINVAL
		}
		return a, 0
	}
	if a.Channel == BMCChannel || a.Channel >= MaxChannels || a.Channel < 0 {
		return Addr{}, syscall.EINVAL
	}
	switch a.AddrType {
	case IPMBAddrType, IPMBBroadcastAddrType:
		return a, 0 // len >= 8 was checked above
	case IPMBDirectAddrType:
		d := a.IPMBDirect()
		if a.Channel != 0 || len(b) < SizeofIPMBDirectAddr || d.SlaveAddr&1 != 0 || d.RsLUN&^3 != 0 || d.RqLUN&^3 != 0 {
			return Addr{}, syscall.EINVAL
		}
		return a, 0
	case LANAddrType:
		if len(b) < SizeofLANAddr {
			return Addr{}, syscall.EINVAL
		}
		return a, 0
	}
	return Addr{}, syscall.EINVAL
}

// receiveFirst is receive's first round: the struct, and the output
// declared at the last receive's buffers when a slot is free.
func (f *File) receiveFirst(in *cuse.IoctlIn, structIov cuse.Iovec, compat bool) cuse.IoctlOut {
	f.mu.Lock()
	defer f.mu.Unlock()
	last := f.recvLast
	if !last.set || last.compat != compat {
		return in.Retry([]cuse.Iovec{structIov}, nil)
	}
	slot := -1
	for i := range f.recvDecl {
		if !f.recvDecl[i].set {
			slot = i
			break
		}
	}
	if slot < 0 {
		// Every slot waits for a second round that may never come (the
		// caller faulted or was killed): declare nothing.
		return in.Retry([]cuse.Iovec{structIov}, nil)
	}
	if len(f.queue) > 0 {
		last.la = uint32(len(f.queue[0].addr))
	}
	f.recvDecl[slot] = last
	return in.Retry(
		[]cuse.Iovec{structIov, {Base: structIov.Base, Len: uint64(slot + 1)}},
		[]cuse.Iovec{structIov, {Base: last.addr, Len: uint64(last.la)}, {Base: last.data, Len: uint64(last.dlen)}})
}

// pending is a request on its way through the engine. Its message, its
// response buffer and the reply it becomes live in it too, and once the
// reply has been received (copied out to the client) it goes back to
// pendingPool with its bound Done func, so a SEND to the system interface
// allocates nothing once the pool is warm. Fresh ~800-byte objects made
// the heap touch new pages: a page fault every few round trips, besides
// the allocation itself.
type pending struct {
	req   sched.Request
	f     *File
	msgID int64
	netfn uint8 // request netfn
	cmd   uint8
	lun   uint8
	pad   uint8 // byte 7 of the user's address, echoed like the kernel
	state atomic.Uint32

	reply  recvMsg
	doneFn func(*sched.Request) // p.done, bound once
	addr   [SizeofSystemInterface]byte
	msg    [MaxMsgLength]byte
	resp   [MaxMsgLength]byte
}

// pendingPool holds pending requests whose reply was received. Nothing
// else refers to one by then: the engine calls Done last, queueMsg keeps
// nothing of a message after queueing it, receive copies the reply into
// its own output before giving it back, and ExportState copies the queue.
// A pending whose reply never reaches the queue (rejected, or its file
// closed) is left to the garbage collector.
var pendingPool = sync.Pool{New: func() any {
	p := new(pending)
	p.doneFn = p.done
	return p
}}

// newPending returns a pending request, reused or new, for f.
func newPending(f *File, msgID int64, netfn, cmd, lun, pad uint8) *pending {
	p := pendingPool.Get().(*pending)
	p.f, p.msgID, p.netfn, p.cmd, p.lun, p.pad = f, msgID, netfn, cmd, lun, pad
	p.state.Store(pendingQueued)
	return p
}

// recycle gives p back to pendingPool once its reply has been received.
func (p *pending) recycle() {
	p.f = nil
	p.req = sched.Request{}
	p.reply = recvMsg{}
	pendingPool.Put(p)
}

const (
	pendingQueued uint32 = iota
	pendingDone
	pendingRejected
)

// submit is i_ipmi_request for an already validated address: the per-user
// limit, then the per-type checks, then the engine.
func (f *File) submit(addr Addr, msgID int64, netfn, cmd uint8, data []byte, tm TimingParms) syscall.Errno {
	d := f.dev
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return syscall.ENODEV
	}
	if d.maxMsgs > 0 && f.inflight+len(f.queue) >= d.maxMsgs {
		f.mu.Unlock()
		return syscall.EBUSY
	}
	f.inflight++
	f.mu.Unlock()

	errno := f.submitLocked(addr, msgID, netfn, cmd, data, tm)
	if errno != 0 {
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}
	return errno
}

// submitLocked does the per-address-type part of submit with the in-flight
// slot already taken.
func (f *File) submitLocked(addr Addr, msgID int64, netfn, cmd uint8, data []byte, tm TimingParms) syscall.Errno {
	d := f.dev
	switch addr.AddrType {
	case SystemInterfaceAddrType:
	case IPMBDirectAddrType:
		// ipmi_si never supports IPMB-direct.
		return syscall.EAFNOSUPPORT
	default:
		// IPMB, broadcast and LAN go through Send Message bridging in the
		// message handler. Without one, answer as the kernel does for a
		// channel whose medium is not IPMB/LAN.
		if d.cfg.Bridge == nil {
			return syscall.EINVAL
		}
		return d.cfg.Bridge.Send(BridgeRequest{Owner: f.owner, Addr: addr, MsgID: msgID, NetFn: netfn, Cmd: cmd,
			Data: append([]byte(nil), data...), Retries: tm.Retries, RetryTimeMs: tm.RetryTimeMs})
	}
	si := addr.SystemInterface()
	if netfn&1 != 0 || si.LUN > 3 {
		return syscall.EINVAL
	}
	if netfn == NetFnApp && (cmd == CmdGetMsg || cmd == CmdSendMsg || cmd == CmdReadEventBuf) {
		return syscall.EINVAL // the driver owns these
	}
	d.noteMaintenanceCmd(netfn, cmd)
	if len(data)+2 > MaxMsgLength {
		return syscall.EMSGSIZE
	}
	p := newPending(f, msgID, netfn, cmd, si.LUN, si.Pad)
	p.msg[0] = netfn<<2 | si.LUN
	p.msg[1] = cmd
	n := 2 + copy(p.msg[2:], data)
	p.req = sched.Request{
		Owner:    f.owner,
		Lane:     sched.LaneNormal,
		Deadline: d.now().Add(d.timeout),
		Msg:      p.msg[:n:n],
		Resp:     p.resp[:0],
		Done:     p.doneFn,
	}
	if d.cfg.PriorityWatchdogCommands && netfn == NetFnApp && (cmd == CmdResetWDT || cmd == CmdSetWDT || cmd == CmdGetWDT) {
		p.req.Lane = sched.LanePriority
	}
	if d.cfg.Inline != nil && d.cfg.Inline(&p.req) {
		return 0
	}
	if err := d.cfg.Submit(&p.req); err != nil {
		if !p.state.CompareAndSwap(pendingQueued, pendingRejected) {
			return 0 // Done already ran: the request was served after all
		}
		if errors.Is(err, sched.ErrQueueFull) {
			// Like the kernel's per-user message limit.
			return syscall.EBUSY
		}
		d.log.Warn("ipmi request not queued", slog.Any("err", err), slog.Uint64("client", uint64(f.owner)),
			slog.Int("netfn", int(netfn)), slog.Int("cmd", int(cmd)))
		return syscall.ENODEV
	}
	return 0
}

// done is the engine's completion callback: format the reply as the
// kernel's message handler does and queue it on the file.
func (p *pending) done(r *sched.Request) {
	if !p.state.CompareAndSwap(pendingQueued, pendingDone) {
		return
	}
	p.f.deliver(p.f.dev.formatResponse(p, r))
}

// formatResponse builds, in p, the recv_type 1 message for a completed request:
// the system-interface address (LUN from the reply), the reply's
// netfn/cmd, and data = completion code + payload. Errors and malformed
// replies become [netfn|1, cmd, cc] with the request's LUN.
func (d *Device) formatResponse(p *pending, r *sched.Request) *recvMsg {
	rsp := r.Resp
	synth := func(cc uint8) []byte { return []byte{(p.netfn|1)<<2 | p.lun, p.cmd, cc} }
	switch {
	case r.Err != nil:
		rsp = synth(d.ccOf(r.Err))
	case len(rsp) < 2:
		d.log.Warn("BMC returned too small a message", slog.Int("netfn", int(p.netfn|1)), slog.Int("cmd", int(p.cmd)),
			slog.Int("len", len(rsp)))
		rsp = synth(CCUnspecified)
	case rsp[0]>>2 != p.netfn|1 || rsp[1] != p.cmd:
		d.log.Warn("BMC returned incorrect response", slog.Int("netfn", int(p.netfn|1)), slog.Int("cmd", int(p.cmd)),
			slog.Int("got_netfn", int(rsp[0]>>2)), slog.Int("got_cmd", int(rsp[1])))
		rsp = synth(CCUnspecified)
	case len(rsp) == 2:
		// The KCS driver pads a reply without a completion code with 0xFF.
		rsp = append(rsp[:2:2], CCUnspecified)
	case len(rsp) > MaxMsgLength:
		// The KCS driver discards the excess and reports truncation.
		rsp = append([]byte(nil), rsp[:MaxMsgLength]...)
		rsp[2] = CCTruncated
	}
	addr := SystemInterfaceAddr{AddrType: SystemInterfaceAddrType, Channel: BMCChannel, LUN: rsp[0] & 3, Pad: p.pad}
	addr.EncodeInto(p.addr[:])
	// The data stays where the transport wrote it (p.resp, or a buffer of
	// the error cases above): nothing else writes there any more.
	p.reply = recvMsg{
		recvType: ResponseRecvType,
		addr:     p.addr[:],
		msgID:    p.msgID,
		netfn:    rsp[0] >> 2,
		cmd:      rsp[1],
		data:     rsp[2:],
		p:        p,
	}
	return &p.reply
}

// popHead removes the head of the receive queue; f.mu held. A short queue
// is shifted down so that its backing array is kept for the next message
// (no allocation per reply); a long one is resliced, so draining it is not
// quadratic, and its array goes once appends outgrow it.
func (f *File) popHead() {
	n := len(f.queue)
	if n <= 16 {
		copy(f.queue, f.queue[1:])
		f.queue[n-1] = nil
		f.queue = f.queue[:n-1]
		return
	}
	f.queue[0] = nil
	f.queue = f.queue[1:]
}

// receive is IPMICTL_RECEIVE_MSG(_TRUNC), in two rounds when the client
// reuses its buffers (ipmitool, freeipmi and Go clients do), else three.
//
// Round 1 asks for the struct. When an earlier receive on the file
// succeeded, it also declares the output where that one wrote it: the
// struct, the address buffer (as long as the head message's address, or
// the last one's) and the data buffer (the last capacity). The kernel only
// writes there with the final answer, and reads nothing from them, so a
// declaration that turns out stale costs one more round and nothing else.
//
// Round 2 looks at the head of the queue (EAGAIN if empty, EINVAL if the
// address buffer is too small, both leaving the message queued). If the
// struct still names the declared buffers and the message fits them, it
// dequeues and answers. Otherwise it asks for the exact output ranges: the
// struct, the address buffer and the data buffer, which it also asks to
// read so that a bad pointer fails with EFAULT before the message is
// consumed, as the kernel's put-back does; round 3 re-checks everything
// against the current head and dequeues. (With the declared buffers of
// round 1 nothing is read first: a client that freed its buffer and passes
// the same pointer again gets EFAULT after the message was consumed.)
func (f *File) receive(in *cuse.IoctlIn, compat, trunc bool) cuse.IoctlOut {
	size := SizeofRecv
	decode := DecodeRecv
	if compat {
		size, decode = SizeofCompatRecv, DecodeCompatRecv
	}
	structIov := cuse.Iovec{Base: in.Arg, Len: uint64(size)}
	if len(in.In) < size {
		return f.receiveFirst(in, structIov, compat)
	}
	rsp, err := decode(in.In)
	if err != nil { // unreachable: the length was checked
		return result(syscall.EFAULT)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var decl recvBufs
	if extra := len(in.In) - size; extra >= 1 && extra <= recvSlots {
		decl = f.recvDecl[extra-1]
		f.recvDecl[extra-1] = recvBufs{}
	}
	if len(f.queue) == 0 {
		return result(syscall.EAGAIN)
	}
	m := f.queue[0]
	la := uint32(len(m.addr))
	if rsp.AddrLen < la {
		return result(syscall.EINVAL)
	}
	addrIov := cuse.Iovec{Base: rsp.Addr, Len: uint64(la)}
	ld := uint32(len(m.data))
	truncated := false
	if ld > 0 && uint32(rsp.Msg.DataLen) < ld {
		if !trunc {
			// EMSGSIZE with the address already written, the struct not
			// written back, and the message left at the head.
			if len(in.In) != size+int(la) || in.OutSize != la {
				return in.Retry([]cuse.Iovec{structIov, addrIov}, []cuse.Iovec{addrIov})
			}
			return cuse.IoctlOut{Result: -int32(syscall.EMSGSIZE), Out: append([]byte(nil), m.addr...)}
		}
		ld, truncated = uint32(rsp.Msg.DataLen), true
	}
	dataIov := cuse.Iovec{Base: rsp.Msg.Data, Len: uint64(ld)}
	total := size + int(la) + int(ld)
	// The kernel scatters the answer over the declared buffers in order:
	// the struct, exactly la address bytes, then a prefix of the data
	// buffer. They must be the ones the struct names now.
	declared := decl.set && decl.compat == compat && decl.addr == rsp.Addr && decl.la == la &&
		(ld == 0 || decl.data == rsp.Msg.Data) && ld <= decl.dlen &&
		in.OutSize == uint32(size)+decl.la+decl.dlen
	if !declared && (len(in.In) != total || in.OutSize != uint32(total)) {
		return in.Retry([]cuse.Iovec{structIov, addrIov, dataIov}, []cuse.Iovec{structIov, addrIov, dataIov})
	}
	f.recvLast = recvBufs{set: true, compat: compat, addr: rsp.Addr, la: la, data: rsp.Msg.Data, dlen: uint32(rsp.Msg.DataLen)}
	f.popHead()

	out := in.OutBuf(total)
	copy(out, in.In[:size]) // the kernel writes back the struct it read
	rsp.RecvType = m.recvType
	rsp.AddrLen = la
	rsp.MsgID = m.msgID
	rsp.Msg.NetFn, rsp.Msg.Cmd, rsp.Msg.DataLen = m.netfn, m.cmd, uint16(ld)
	if compat {
		rsp.EncodeCompatInto(out)
	} else {
		rsp.EncodeInto(out)
	}
	copy(out[size:], m.addr)
	copy(out[size+int(la):], m.data[:ld])
	if m.p != nil {
		m.p.recycle() // out holds everything of it the answer needs
	}
	if truncated {
		return cuse.IoctlOut{Result: -int32(syscall.EMSGSIZE), Out: out}
	}
	return cuse.IoctlOut{Out: out}
}
