package msghandler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// Defaults for Config fields left zero; they mirror the kernel's
// ipmi_msghandler module parameters and constants.
const (
	// DefaultOwner is the sched.Owner of the handler's own requests: below
	// ioctl.OwnerBase (files) and far from small in-process owners.
	DefaultOwner sched.Owner = 1 << 31
	// DefaultTickInterval is IPMI_TIMEOUT_TIME: the housekeeping tick that
	// counts down retry timers and polls events.
	DefaultTickInterval = time.Second
	// DefaultRetries is default_max_retries.
	DefaultRetries = 4
	// DefaultRetryTime is default_retry_ms.
	DefaultRetryTime = 2 * time.Second
	// DefaultMaintenanceRetryTime is default_maintenance_retry_ms, used in
	// the 30 s after an IPMB maintenance command.
	DefaultMaintenanceRetryTime = 3 * time.Second
	// DefaultRequestTimeout bounds each of the handler's own transactions
	// (flag chain, event polls, Send Message).
	DefaultRequestTimeout = 5 * time.Second
	// MaxWaitingEvents is MAX_EVENTS_IN_QUEUE: events read while no file
	// listens are kept up to this many for the first file that asks.
	MaxWaitingEvents = 25
	// NumSeq is IPMI_IPMB_NUM_SEQ, the size of the sequence table.
	NumSeq = 64

	// provisionalMs is MAX_MSG_TIMEOUT: the timeout of a slot until the
	// BMC's immediate Send Message reply starts the real retry timer.
	provisionalMs = 60000
	// tickMs is what one tick subtracts from every timer.
	tickMs = 1000
	// maintenanceTicks is maintenance_mode_timeout_ms in ticks.
	maintenanceTicks = 30
)

// Sentinel errors.
var (
	// ErrNotStarted is returned by Start's steps when the handler was
	// closed or given nothing to submit to.
	ErrNotStarted = errors.New("msghandler: not started")
	// ErrBMC wraps a non-zero completion code during start-up.
	ErrBMC = errors.New("msghandler: BMC error")
)

// Files is what the handler needs from the device's open files;
// *ioctl.Device implements it.
type Files interface {
	// Deliver queues m on the file owner; false if it is not open.
	Deliver(owner sched.Owner, m ioctl.Message) bool
	// DeliverEvent queues m on every gets_events file; how many got it.
	DeliverEvent(m ioctl.Message) int
	// EventListeners is the number of files with gets_events.
	EventListeners() int
	// CmdReceiver is the file registered for netfn/cmd on channel.
	CmdReceiver(netfn, cmd, channel uint8) (sched.Owner, bool)
	// MyAddress is the interface's address and LUN on channel.
	MyAddress(channel uint8) (addr, lun uint8)
	// MaintenanceActive reports whether maintenance mode is in effect.
	MaintenanceActive() bool
}

// Config configures a Handler. The zero value gives the kernel's defaults.
type Config struct {
	// Logger receives warnings (event queue full, start-up failures) and
	// one line per state change. Nil discards them.
	Logger *slog.Logger
	// OnPretimeout is called when Get Message Flags shows a watchdog
	// pre-timeout (after the flag is cleared), on the engine goroutine:
	// it must not block. Nil ignores pretimeouts.
	OnPretimeout func()
	// Owner is the fairness key of the handler's own requests. Zero means
	// DefaultOwner.
	Owner sched.Owner
	// TickInterval is the wall-clock period of the housekeeping tick; each
	// tick counts as 1000 ms of retry timers, as the kernel's does. Zero
	// means DefaultTickInterval. Tests shorten it to run time faster.
	TickInterval time.Duration
	// RequestTimeout bounds each of the handler's own transactions. Zero
	// means DefaultRequestTimeout.
	RequestTimeout time.Duration
}

// Stats counts what the handler did.
type Stats struct {
	Bridged           uint64 // IPMB/LAN requests accepted into the sequence table
	Responses         uint64 // responses to incoming commands sent for files
	Retransmits       uint64 // bridged requests sent again after a timeout
	Timeouts          uint64 // bridged requests failed with 0xC3
	BroadcastTimeouts uint64 // broadcasts that expired (expected: nobody answers)
	SendErrors        uint64 // bridged requests failed by the Send Message reply
	Replies           uint64 // bridged replies matched and delivered
	Unmatched         uint64 // late or mismatched bridged replies dropped
	IncomingCmds      uint64 // incoming commands delivered to a registered file
	AutoReplies       uint64 // incoming commands answered with 0xC1
	DroppedMsgs       uint64 // Get Message replies dropped (channel, size, OEM without receiver)
	Events            uint64 // events read from the BMC
	EventsDropped     uint64 // events dropped because the waiting queue was full
	Pretimeouts       uint64 // watchdog pretimeouts seen
	AttentionErrors   uint64 // flag-chain transactions that failed
}

// Channel is one entry of the channel table (Get Channel Info).
type Channel struct {
	Medium   uint8 // 1 IPMB, 4 802.3 LAN, 5 Async, 0x60-0x7F OEM, 0 unknown
	Protocol uint8
}

// Handler is the message handler: it bridges IPMB/LAN messages through
// Send Message with a sequence table, polls events, dispatches incoming
// commands and handles SMS_ATN. It implements ioctl.Bridge.
type Handler struct {
	cfg     Config
	log     *slog.Logger
	owner   sched.Owner
	timeout time.Duration

	mu       sync.Mutex
	submit   func(*sched.Request) error
	files    Files
	started  bool
	closed   bool
	stop     chan struct{}
	tickDone chan struct{}

	ipmiVersion uint8
	chans       [ioctl.MaxChannels]Channel
	chansReady  bool
	hasEventBuf bool

	seq      [NumSeq]seqEntry
	curSeq   int
	ipmbMnt  int // ticks left of IPMB maintenance (longer default retry time)
	waiting  []ioctl.Message
	warned   bool // "event queue full" logged
	evPoll   bool // an event poll chain is running
	attn     attnState
	attnResp []byte
	stats    Stats
	held     bool // Hold: the tick does nothing (a hand-over in progress)
}

var _ ioctl.Bridge = (*Handler)(nil)

// seqEntry is one slot of the sequence table.
type seqEntry struct {
	inUse       bool
	seqid       uint32 // 26-bit generation, bumped per use
	owner       sched.Owner
	addr        []byte // delivered with a timeout or error (broadcast as IPMB)
	channel     uint8
	lan         bool
	sa, lun     uint8   // IPMB peer, for matching
	lanPeer     [3]byte // session, remote SWID, local SWID
	msgID       int64
	netfn, cmd  uint8
	msg         []byte // the Send Message request, for retransmission
	timeoutMs   int
	retryMs     int
	retriesLeft int
	broadcast   bool
}

// New returns a Handler. It does nothing until Start; HandleAttention
// before Start does nothing (the flags stay for later).
func New(cfg Config) *Handler {
	h := &Handler{cfg: cfg, log: cfg.Logger, owner: cfg.Owner, timeout: cfg.RequestTimeout,
		attnResp: make([]byte, 0, ioctl.MaxMsgLength+8)}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.owner == 0 {
		h.owner = DefaultOwner
	}
	if h.timeout <= 0 {
		h.timeout = DefaultRequestTimeout
	}
	if h.cfg.TickInterval <= 0 {
		h.cfg.TickInterval = DefaultTickInterval
	}
	return h
}

// Start connects the handler to the engine (submit, normally
// sched.Engine.Submit) and the files (normally the *ioctl.Device), runs
// the start-up sequence of the kernel's ipmi_si and ipmi_msghandler (Get
// Device ID; enable the event message buffer in the BMC Global Enables;
// Clear Message Flags 0x08; the Get Channel Info scan) and starts the 1 s
// housekeeping tick. A start-up step that fails is logged and returned
// (wrapped), but the handler keeps running: bridging then finds no usable
// channel (EINVAL), and events are not polled without an event buffer.
func (h *Handler) Start(ctx context.Context, submit func(*sched.Request) error, files Files) error {
	h.mu.Lock()
	if h.started || h.closed {
		h.mu.Unlock()
		return fmt.Errorf("msghandler: Start: %w", ErrNotStarted)
	}
	h.submit, h.files = submit, files
	h.started = true
	h.stop = make(chan struct{})
	h.tickDone = make(chan struct{})
	h.mu.Unlock()

	err := h.startup(ctx)
	go h.ticker()
	if err != nil {
		h.log.Warn("IPMI message handler start-up incomplete", slog.Any("err", err))
	}
	return err
}

// Close stops the tick. Requests already submitted complete through the
// engine; their results are dropped. Close is idempotent.
func (h *Handler) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	started := h.started
	h.mu.Unlock()
	if started {
		close(h.stop)
		<-h.tickDone
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (h *Handler) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

// Channels returns the channel table found by the scan, and whether the
// scan finished.
func (h *Handler) Channels() ([ioctl.MaxChannels]Channel, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.chans, h.chansReady
}

// ticker runs tick every TickInterval until Close.
func (h *Handler) ticker() {
	defer close(h.tickDone)
	t := time.NewTicker(h.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
			h.tick()
		}
	}
}

// call runs one request through the engine and waits for it (start-up
// only: never from the engine goroutine).
func (h *Handler) call(ctx context.Context, msg []byte) ([]byte, error) {
	done := make(chan *sched.Request, 1)
	r := &sched.Request{Owner: h.owner, Lane: sched.LaneNormal, Deadline: time.Now().Add(h.timeout), Msg: msg,
		Resp: make([]byte, 0, ioctl.MaxMsgLength), Done: func(r *sched.Request) { done <- r }}
	if err := h.submit(r); err != nil {
		return nil, fmt.Errorf("msghandler: submit netfn %#x cmd %#x: %w", msg[0]>>2, msg[1], err)
	}
	select {
	case r := <-done:
		if r.Err != nil {
			return nil, fmt.Errorf("msghandler: netfn %#x cmd %#x: %w", msg[0]>>2, msg[1], r.Err)
		}
		if len(r.Resp) < 3 || r.Resp[1] != msg[1] {
			return nil, fmt.Errorf("msghandler: netfn %#x cmd %#x: reply % x: %w", msg[0]>>2, msg[1], r.Resp, ErrFrame)
		}
		return r.Resp, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("msghandler: netfn %#x cmd %#x: %w", msg[0]>>2, msg[1], ctx.Err())
	}
}

// startup is the init sequence; see Start.
func (h *Handler) startup(ctx context.Context) error {
	var errs []error
	ver := uint8(0x51) // assume IPMI 1.5 if Get Device ID fails
	if rsp, err := h.call(ctx, []byte{netFnApp << 2, cmdGetDeviceID}); err != nil {
		errs = append(errs, err)
	} else if rsp[2] != ccOK || len(rsp) < 8 {
		errs = append(errs, fmt.Errorf("msghandler: Get Device ID: cc %#x: %w", rsp[2], ErrBMC))
	} else {
		ver = rsp[7]
	}
	hasEv := false
	if rsp, err := h.call(ctx, []byte{netFnApp << 2, cmdGetGlobalEn}); err != nil {
		errs = append(errs, err)
	} else if rsp[2] != ccOK || len(rsp) < 4 {
		errs = append(errs, fmt.Errorf("msghandler: Get BMC Global Enables: cc %#x: %w", rsp[2], ErrBMC))
	} else if rsp[3]&enableEventBuffer != 0 {
		hasEv = true
	} else if rsp2, err := h.call(ctx, []byte{netFnApp << 2, cmdSetGlobalEn, rsp[3] | enableEventBuffer}); err != nil {
		errs = append(errs, err)
	} else if rsp2[2] != ccOK {
		h.log.Info("BMC has no event message buffer", slog.Int("cc", int(rsp2[2])))
	} else {
		hasEv = true
	}
	if _, err := h.call(ctx, []byte{netFnApp << 2, cmdClearMsgFlags, flagPretimeout}); err != nil {
		errs = append(errs, err)
	}
	var chans [ioctl.MaxChannels]Channel
	if major, minor := ver&0x0F, ver>>4; major < 1 || (major == 1 && minor < 5) {
		chans[0] = Channel{Medium: mediumIPMB, Protocol: 1}
	} else {
		for ch := range uint8(ioctl.MaxChannels) {
			rsp, err := h.call(ctx, []byte{netFnApp << 2, cmdGetChannelInfo, ch})
			if err != nil {
				errs = append(errs, err)
				break
			}
			if rsp[2] == ccInvalidCommand && ch == 0 {
				chans[0] = Channel{Medium: mediumIPMB, Protocol: 1}
				break
			}
			if rsp[2] != ccOK || len(rsp) < 6 {
				continue // no such channel
			}
			chans[ch] = Channel{Medium: rsp[4] & 0x7F, Protocol: rsp[5] & 0x1F}
		}
	}
	h.mu.Lock()
	h.ipmiVersion = ver
	h.chans = chans
	h.chansReady = true
	h.hasEventBuf = hasEv
	h.mu.Unlock()
	h.log.Debug("IPMI message handler started", slog.Int("ipmi_version", int(ver)), slog.Bool("event_buffer", hasEv))
	return errors.Join(errs...)
}

// AttentionCheck adapts a transport's SMS_ATN check (kcs.Host.Attention)
// to sched.Config.Attention: an error counts as no attention.
func AttentionCheck(t interface{ Attention() (bool, error) }) func() bool {
	return func() bool {
		ok, err := t.Attention()
		return err == nil && ok
	}
}

// Send implements ioctl.Bridge: i_ipmi_req_ipmb / i_ipmi_req_lan.
func (h *Handler) Send(r ioctl.BridgeRequest) syscall.Errno {
	h.mu.Lock()
	if !h.started || h.closed {
		h.mu.Unlock()
		return syscall.ENODEV
	}
	files, submit := h.files, h.submit
	ch := uint8(r.Addr.Channel) & 0x0F
	med := h.chans[ch].Medium
	var msg []byte
	var e seqEntry
	switch r.Addr.AddrType {
	case ioctl.IPMBAddrType, ioctl.IPMBBroadcastAddrType:
		bcast := r.Addr.AddrType == ioctl.IPMBBroadcastAddrType
		a := r.Addr.IPMB()
		extra := 10
		if bcast {
			extra++
		}
		switch {
		case med != mediumIPMB:
			h.mu.Unlock()
			return syscall.EINVAL
		case len(r.Data)+extra > ioctl.MaxMsgLength:
			h.mu.Unlock()
			return syscall.EMSGSIZE
		case a.LUN > 3:
			h.mu.Unlock()
			return syscall.EINVAL
		}
		if isMaintenanceCmd(r.NetFn, r.Cmd) {
			h.ipmbMnt = maintenanceTicks
		}
		mySA, myLUN := files.MyAddress(ch)
		a.AddrType = ioctl.IPMBAddrType // stored and echoed as plain IPMB
		e = seqEntry{addr: a.Encode(), channel: ch, sa: a.SlaveAddr, lun: a.LUN, broadcast: bcast}
		build := func(seq uint8) []byte {
			return formatIPMB(ch, bcast, a.SlaveAddr, a.LUN, r.NetFn, r.Cmd, r.Data, mySA, myLUN, seq)
		}
		if r.NetFn&1 != 0 {
			msg = build(uint8(r.MsgID))
		} else {
			e.msg = nil
			return h.sendRequestLocked(r, e, build, submit)
		}
	case ioctl.LANAddrType:
		a := r.Addr.LAN()
		switch {
		case med != mediumLAN && med != mediumAsync:
			h.mu.Unlock()
			return syscall.EINVAL
		case len(r.Data)+12 > ioctl.MaxMsgLength:
			h.mu.Unlock()
			return syscall.EMSGSIZE
		case a.LUN > 3:
			h.mu.Unlock()
			return syscall.EINVAL
		}
		_, myLUN := files.MyAddress(ch)
		e = seqEntry{addr: a.Encode(), channel: ch, lan: true, lun: a.LUN,
			lanPeer: [3]byte{a.SessionHandle, a.RemoteSWID, a.LocalSWID}}
		build := func(seq uint8) []byte {
			return formatLAN(ch, a.SessionHandle, a.RemoteSWID, a.LUN, r.NetFn, r.Cmd, r.Data, a.LocalSWID, myLUN, seq)
		}
		if r.NetFn&1 != 0 {
			msg = build(uint8(r.MsgID))
		} else {
			return h.sendRequestLocked(r, e, build, submit)
		}
	default:
		h.mu.Unlock()
		return syscall.EINVAL
	}
	// A response to an incoming command: no sequence slot, no retries; the
	// Send Message completion code comes back as recv_type 4.
	h.stats.Responses++
	h.mu.Unlock()
	owner, addr := r.Owner, e.addr
	req := h.newRequest(msg, func(rq *sched.Request) {
		files.Deliver(owner, ioctl.Message{RecvType: ioctl.ResponseResponseRecvType, Addr: addr, MsgID: r.MsgID,
			NetFn: r.NetFn, Cmd: r.Cmd, Data: []byte{sendCC(rq)}})
	})
	return submitErrno(submit(req))
}

// sendRequestLocked puts a bridged request in the sequence table and sends
// it. h.mu is held on entry and released.
func (h *Handler) sendRequestLocked(r ioctl.BridgeRequest, e seqEntry, build func(seq uint8) []byte,
	submit func(*sched.Request) error) syscall.Errno {
	slot := -1
	for i := range NumSeq {
		j := (h.curSeq + i) % NumSeq
		if !h.seq[j].inUse {
			slot = j
			break
		}
	}
	if slot < 0 {
		h.mu.Unlock()
		return syscall.EAGAIN
	}
	h.curSeq = (slot + 1) % NumSeq
	retries := int(r.Retries)
	if retries < 0 {
		retries = DefaultRetries
	}
	retryMs := int(r.RetryTimeMs)
	if retryMs == 0 {
		retryMs = int(DefaultRetryTime / time.Millisecond)
		if h.ipmbMnt > 0 {
			retryMs = int(DefaultMaintenanceRetryTime / time.Millisecond)
		}
	}
	if e.broadcast {
		retries = 0
	}
	e.inUse = true
	e.seqid = (h.seq[slot].seqid + 1) & 0x3FFFFFF
	e.owner, e.msgID, e.netfn, e.cmd = r.Owner, r.MsgID, r.NetFn, r.Cmd
	e.msg = build(uint8(slot))
	e.timeoutMs = provisionalMs
	e.retryMs = retryMs
	e.retriesLeft = retries
	h.seq[slot] = e
	h.stats.Bridged++
	req := h.seqRequest(slot, e.seqid, e.msg)
	h.mu.Unlock()
	if err := submit(req); err != nil {
		h.mu.Lock()
		if h.seq[slot].inUse && h.seq[slot].seqid == e.seqid {
			h.seq[slot].inUse = false
			h.stats.Bridged--
		}
		h.mu.Unlock()
		return submitErrno(err)
	}
	return 0
}

// submitErrno maps a Submit error to the SEND errno, like ioctl does.
func submitErrno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, sched.ErrQueueFull):
		return syscall.EBUSY
	}
	return syscall.ENODEV
}

// isMaintenanceCmd is is_maintenance_mode_cmd: Cold/Warm Reset or any
// firmware (netfn 0x08) command.
func isMaintenanceCmd(netfn, cmd uint8) bool {
	return (netfn == ioctl.NetFnApp && (cmd == ioctl.CmdColdReset || cmd == ioctl.CmdWarmReset)) || netfn == ioctl.NetFnFirmware
}

// newRequest wraps msg in a normal-lane engine request of the handler.
func (h *Handler) newRequest(msg []byte, done func(*sched.Request)) *sched.Request {
	return &sched.Request{Owner: h.owner, Lane: sched.LaneNormal, Deadline: time.Now().Add(h.timeout), Msg: msg,
		Resp: make([]byte, 0, 64), Done: done}
}

// sendCC is the completion code of the Send Message carrying a response
// to an incoming command (recv_type 4): the BMC's, or what the engine
// error maps to, or 0xFF for a reply that does not match, as the kernel
// checks such a reply like any other (handle_one_recv_msg: "BMC returned
// incorrect response").
func sendCC(r *sched.Request) uint8 {
	switch {
	case r.Err != nil:
		return ioctl.DefaultCompletionCode(r.Err)
	case len(r.Resp) < 3 || r.Resp[0]>>2 != netFnApp|1 || r.Resp[1] != cmdSendMsg:
		return ioctl.CCUnspecified
	}
	return r.Resp[2]
}

// seqSendCC is the completion code of the BMC's immediate reply to a
// bridged request's Send Message, as ipmi_msghandler reads it
// (ipmi_smi_msg_received): the third byte alone, whatever netfn and
// command the reply carries, and success when the reply is shorter than
// 3 bytes; or what the engine error maps to (an interface's "hosed"
// reply, 0xFF, or 0xC3 for a timeout).
//
// Unlike sendCC it does not fail a reply for another command: an SSIF
// BMC such as QEMU's smbus-ipmi pairs each response with the next request
// after one timed out, so the Send Message can get a stale reply; the
// kernel then starts the retry timer (the request ends 0xC3 if nothing
// answers), and so must ipmi-cuse.
func seqSendCC(r *sched.Request) uint8 {
	switch {
	case r.Err != nil:
		return ioctl.DefaultCompletionCode(r.Err)
	case len(r.Resp) < 3:
		return ccOK
	}
	return r.Resp[2]
}

// seqRequest is the engine request carrying one transmission of slot.
// Its completion is the BMC's immediate Send Message reply: a retryable
// code starts the retry timer, anything else fails the request with it.
func (h *Handler) seqRequest(slot int, seqid uint32, msg []byte) *sched.Request {
	return h.newRequest(msg, func(r *sched.Request) {
		cc := seqSendCC(r)
		h.mu.Lock()
		e := &h.seq[slot]
		if !e.inUse || e.seqid != seqid {
			h.mu.Unlock() // answered, timed out or released meanwhile
			return
		}
		if retryableSendCC(cc) {
			e.timeoutMs = e.retryMs
			h.mu.Unlock()
			return
		}
		h.stats.SendErrors++
		m := h.freeLocked(e, cc)
		files := h.files
		h.mu.Unlock()
		files.Deliver(e.owner, m)
	})
}

// freeLocked frees a slot and returns the recv_type 1 error message for it.
func (h *Handler) freeLocked(e *seqEntry, cc uint8) ioctl.Message {
	e.inUse = false
	return ioctl.Message{RecvType: ioctl.ResponseRecvType, Addr: e.addr, MsgID: e.msgID, NetFn: e.netfn | 1, Cmd: e.cmd,
		Data: []byte{cc}}
}

// Release implements ioctl.Bridge: the file's sequence entries are freed
// silently, nothing is sent to the BMC (_ipmi_destroy_user).
func (h *Handler) Release(owner sched.Owner) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range h.seq {
		if h.seq[i].inUse && h.seq[i].owner == owner {
			h.seq[i].inUse = false
		}
	}
}

// Outstanding returns how many sequence slots are in use.
func (h *Handler) Outstanding() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for i := range h.seq {
		if h.seq[i].inUse {
			n++
		}
	}
	return n
}

// GetsEvents implements ioctl.Bridge: the events that waited for a
// listener all go to the file that just asked (ipmi_set_gets_events).
func (h *Handler) GetsEvents(owner sched.Owner) {
	h.mu.Lock()
	w := h.waiting
	h.waiting = nil
	files := h.files
	if h.warned {
		h.log.Info("event queue no longer full")
		h.warned = false
	}
	h.mu.Unlock()
	for _, m := range w {
		files.Deliver(owner, m)
	}
}

// tick is the housekeeping tick (ipmi_timeout): retry timers, IPMB
// maintenance, event polling.
func (h *Handler) tick() {
	type delivery struct {
		owner sched.Owner
		m     ioctl.Message
	}
	var out []delivery
	var resend []*sched.Request
	h.mu.Lock()
	if !h.started || h.closed || h.held {
		h.mu.Unlock()
		return
	}
	files, submit := h.files, h.submit
	if h.ipmbMnt > 0 {
		h.ipmbMnt--
	}
	for i := range h.seq {
		e := &h.seq[i]
		if !e.inUse {
			continue
		}
		e.timeoutMs -= tickMs
		if e.timeoutMs > 0 {
			continue
		}
		if e.retriesLeft > 0 {
			e.retriesLeft--
			e.timeoutMs = provisionalMs
			h.stats.Retransmits++
			resend = append(resend, h.seqRequest(i, e.seqid, e.msg))
			continue
		}
		if e.broadcast {
			h.stats.BroadcastTimeouts++
		} else {
			h.stats.Timeouts++
		}
		out = append(out, delivery{e.owner, h.freeLocked(e, ioctl.CCTimeout)})
	}
	poll := h.hasEventBuf && !h.evPoll && h.chansReady
	h.mu.Unlock()

	for _, r := range resend {
		if err := submit(r); err != nil {
			r.Err = err
			r.Done(r) // fails the slot with the mapped completion code
		}
	}
	for _, d := range out {
		files.Deliver(d.owner, d.m)
	}
	if poll && files.EventListeners() > 0 && !files.MaintenanceActive() {
		h.startEventPoll()
	}
}
