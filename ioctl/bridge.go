package ioctl

import (
	"syscall"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// Bridge is the message handler behind the addresses that are not the
// system interface: IPMB, IPMB broadcast and LAN requests and responses
// bridged through Send Message, plus the asynchronous traffic (events,
// incoming commands) that reaches files without a request. The msghandler
// package implements it; Config.Bridge nil keeps those addresses
// unsupported (EINVAL).
type Bridge interface {
	// Send takes a validated IPMB, broadcast or LAN message from a file
	// (a request, or a response to an incoming command when NetFn is
	// odd). It returns 0 once the message is on its way, and then later
	// delivers exactly one recv_type 1 (request) or 4 (response) message
	// for it through Device.Deliver, unless the file closes first. Any
	// other return value is the errno of the SEND ioctl (EINVAL, EMSGSIZE,
	// EAGAIN, ENODEV).
	Send(r BridgeRequest) syscall.Errno
	// GetsEvents is called after a file turned gets_events on, so the
	// handler can give it the events that waited for a listener.
	GetsEvents(owner sched.Owner)
	// Release is called when a file closes: its outstanding bridged
	// requests are forgotten silently, as _ipmi_destroy_user does.
	Release(owner sched.Owner)
}

// BridgeRequest is one SEND_COMMAND(_SETTIME) for a Bridge.
type BridgeRequest struct {
	// Owner is the sending file.
	Owner sched.Owner
	// Addr is the destination, already through the generic address
	// checks: IPMB, broadcast or LAN, channel 0..15 but not 0x0F.
	Addr Addr
	// MsgID is the caller's opaque msgid; for a response (odd NetFn) its
	// low 6 bits are the IPMB rqSeq being answered.
	MsgID      int64
	NetFn, Cmd uint8
	Data       []byte
	// Retries is the retry count (negative: the default); RetryTimeMs the
	// retry interval (0: the default). From the SETTIME struct, or the
	// file's SET_TIMING_PARMS defaults for plain SEND_COMMAND.
	Retries     int32
	RetryTimeMs uint32
}

// Message is one message a Bridge puts on a file's receive queue.
type Message struct {
	// RecvType is ResponseRecvType, AsyncEventRecvType, CmdRecvType,
	// ResponseResponseRecvType or OEMRecvType.
	RecvType int32
	// Addr is the address written to the user's buffer: exactly
	// AddrLength of its type (8 or 12 bytes), e.g. IPMBAddr.Encode().
	Addr  []byte
	MsgID int64
	NetFn uint8
	Cmd   uint8
	Data  []byte
}

func (m Message) recv() *recvMsg {
	return &recvMsg{recvType: m.RecvType, addr: append([]byte(nil), m.Addr...), msgID: m.MsgID,
		netfn: m.NetFn, cmd: m.Cmd, data: append([]byte(nil), m.Data...)}
}

// completesSend reports whether a message of this type answers a SEND the
// file made (and so ends one in-flight message of its per-user limit).
func completesSend(recvType int32) bool {
	return recvType == ResponseRecvType || recvType == ResponseResponseRecvType
}

// Deliver queues m on the open file owner and wakes its poller. A reply
// (recv_type 1 or 4) also ends one in-flight message of the file. It
// reports false if no such file is open (the message is dropped, as the
// kernel frees messages for a destroyed user).
func (d *Device) Deliver(owner sched.Owner, m Message) bool {
	d.mu.Lock()
	f := d.files[owner]
	d.mu.Unlock()
	if f == nil {
		return false
	}
	return f.queueMsg(m.recv(), completesSend(m.RecvType))
}

// DeliverEvent queues a copy of m on every open file with gets_events set
// and returns how many received it (0: nobody is listening).
func (d *Device) DeliverEvent(m Message) int {
	n := 0
	for _, f := range d.snapshotFiles() {
		if f.GetsEvents() && f.queueMsg(m.recv(), false) {
			n++
		}
	}
	return n
}

// EventListeners reports how many open files have gets_events set: the
// message handler polls the event buffer only while this is non-zero.
func (d *Device) EventListeners() int {
	n := 0
	for _, f := range d.snapshotFiles() {
		if f.GetsEvents() {
			n++
		}
	}
	return n
}

// CmdReceiver returns the file registered for incoming commands netfn/cmd
// on channel (REGISTER_FOR_CMD(_CHANS)), if any.
func (d *Device) CmdReceiver(netfn, cmd, channel uint8) (sched.Owner, bool) {
	if channel >= MaxChannels {
		return 0, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.rcvrs {
		if r.netfn == netfn && r.cmd == cmd && r.chans&(1<<channel) != 0 {
			return r.file.owner, true
		}
	}
	return 0, false
}

// MyAddress returns the interface's address and LUN on a channel (SET_MY_
// (CHANNEL_)ADDRESS/LUN): the source of bridged requests and of automatic
// replies. Channels ≥ 16 get channel 0's values.
func (d *Device) MyAddress(channel uint8) (addr, lun uint8) {
	if channel >= MaxChannels {
		channel = 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.myAddr[channel], d.myLUN[channel]
}

func (d *Device) snapshotFiles() []*File {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*File, 0, len(d.files))
	for _, f := range d.files {
		out = append(out, f)
	}
	return out
}

// queueMsg appends m to the receive queue (dropping it if the file is
// closed), ends an in-flight message if reply is set, and wakes a poller.
func (f *File) queueMsg(m *recvMsg, reply bool) bool {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return false
	}
	if reply && f.inflight > 0 {
		f.inflight--
	}
	f.queue = append(f.queue, m)
	wake := f.wake
	f.wake = nil
	f.mu.Unlock()
	if wake != nil {
		wake()
	}
	return true
}

// deliver queues a reply to one of the file's requests.
func (f *File) deliver(m *recvMsg) { f.queueMsg(m, true) }
