package msghandler

import (
	"errors"
	"log/slog"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// attnState is where the flag chain stands between engine turns.
type attnState struct {
	active bool  // flags were read and work remains
	flags  uint8 // flags still to handle
}

// HandleAttention is the sched.Config.OnAttention hook: the kernel's
// handle_flags chain, run with the engine's TxFunc between transactions.
// It reads Get Message Flags, then in the kernel's order: a watchdog
// pre-timeout (Clear Message Flags 0x08, then Config.OnPretimeout);
// receive-message-available (Get Message until a non-zero completion
// code); event-buffer-full (Read Event Message Buffer until a non-zero
// completion code). The flags are not re-read. When tx yields
// (sched.ErrYield) the chain keeps its place and HandleAttention returns
// true, to be resumed on the engine's next attention turn.
func (h *Handler) HandleAttention(tx sched.TxFunc) bool {
	h.mu.Lock()
	ready := h.started && !h.closed
	st := h.attn
	h.mu.Unlock()
	if !ready {
		return false
	}
	save := func(more bool) bool {
		h.mu.Lock()
		h.attn = st
		h.mu.Unlock()
		return more
	}
	for {
		if !st.active {
			rsp, err := h.attnTx(tx, netFnApp<<2, cmdGetMsgFlags)
			if errors.Is(err, sched.ErrYield) {
				return save(true)
			}
			if err != nil || len(rsp) < 4 || rsp[2] != ccOK {
				return save(false)
			}
			st = attnState{active: true, flags: rsp[3]}
		}
		switch {
		case st.flags&flagPretimeout != 0:
			_, err := h.attnTx(tx, netFnApp<<2, cmdClearMsgFlags, flagPretimeout)
			if errors.Is(err, sched.ErrYield) {
				return save(true)
			}
			st.flags &^= flagPretimeout
			h.mu.Lock()
			h.stats.Pretimeouts++
			h.mu.Unlock()
			if h.cfg.OnPretimeout != nil {
				h.cfg.OnPretimeout()
			}
		case st.flags&flagRecvMsg != 0:
			rsp, err := h.attnTx(tx, netFnApp<<2, cmdGetMsg)
			if errors.Is(err, sched.ErrYield) {
				return save(true)
			}
			if err != nil || len(rsp) < 3 || rsp[2] != ccOK {
				st.flags &^= flagRecvMsg
				continue
			}
			h.handleGetMsg(rsp)
		case st.flags&flagEventBuf != 0:
			rsp, err := h.attnTx(tx, netFnApp<<2, cmdReadEventBuf)
			if errors.Is(err, sched.ErrYield) {
				return save(true)
			}
			if err != nil || len(rsp) < 3 || rsp[2] != ccOK {
				st.flags &^= flagEventBuf
				continue
			}
			h.handleEvent(rsp)
		default:
			st = attnState{}
			return save(false)
		}
	}
}

// attnTx runs one flag-chain transaction; failures other than yielding
// are counted.
func (h *Handler) attnTx(tx sched.TxFunc, msg ...byte) ([]byte, error) {
	rsp, err := tx(msg, h.attnResp[:0], time.Now().Add(h.timeout))
	h.attnResp = rsp[:0]
	if err != nil && !errors.Is(err, sched.ErrYield) {
		h.mu.Lock()
		h.stats.AttentionErrors++
		h.mu.Unlock()
		h.log.Debug("attention transaction failed", slog.Int("cmd", int(msg[1])), slog.Any("err", err))
	}
	return rsp, err
}

// handleGetMsg dispatches one successful Get Message reply
// (handle_one_recv_msg for the receive queue).
func (h *Handler) handleGetMsg(rsp []byte) {
	h.mu.Lock()
	files, submit := h.files, h.submit
	ready := h.chansReady
	chans := h.chans
	h.mu.Unlock()
	if !ready {
		h.count(func(s *Stats) { s.DroppedMsgs++ })
		return
	}
	in, err := parseGetMessage(rsp, func(ch uint8) uint8 { return chans[ch&0x0F].Medium })
	if err != nil {
		h.count(func(s *Stats) { s.DroppedMsgs++ })
		h.log.Debug("Get Message reply dropped", slog.Any("err", err))
		return
	}
	switch in.kind {
	case inboundIPMBResponse, inboundLANResponse:
		h.matchReply(&in, files)
	case inboundIPMBCommand, inboundLANCommand:
		owner, ok := files.CmdReceiver(in.netfn, in.cmd, in.channel)
		if ok {
			h.count(func(s *Stats) { s.IncomingCmds++ })
			files.Deliver(owner, ioctl.Message{RecvType: ioctl.CmdRecvType, Addr: in.addr(), MsgID: int64(in.seq),
				NetFn: in.netfn, Cmd: in.cmd, Data: in.data})
			return
		}
		if in.kind == inboundLANCommand {
			// The kernel leaves unregistered LAN commands unanswered.
			h.count(func(s *Stats) { s.DroppedMsgs++ })
			return
		}
		h.count(func(s *Stats) { s.AutoReplies++ })
		mySA, _ := files.MyAddress(in.channel)
		r := h.newRequest(in.autoReply(mySA), func(*sched.Request) {})
		if err := submit(r); err != nil {
			h.log.Debug("automatic 0xC1 reply not sent", slog.Any("err", err))
		}
	case inboundOEM:
		owner, ok := files.CmdReceiver(in.netfn, in.cmd, in.channel)
		if !ok {
			h.count(func(s *Stats) { s.DroppedMsgs++ })
			return
		}
		files.Deliver(owner, ioctl.Message{RecvType: ioctl.OEMRecvType, Addr: sysAddr(rsp[0] & 3), NetFn: in.netfn,
			Cmd: in.cmd, Data: in.data})
	}
}

// matchReply finds the sequence entry a bridged reply answers (intf_find_seq)
// and delivers it, or counts it as unmatched (late or wrong).
func (h *Handler) matchReply(in *inbound, files Files) {
	h.mu.Lock()
	e := &h.seq[in.seq&0x3F]
	lan := in.kind == inboundLANResponse
	ok := e.inUse && e.channel == in.channel && e.cmd == in.cmd && e.netfn == in.netfn&^1 && e.lan == lan && e.lun == in.lun
	if ok && lan {
		ok = e.lanPeer == [3]byte{in.session, in.remoteSWID, in.localSWID}
	} else if ok {
		ok = e.sa == in.sa
	}
	if !ok {
		h.stats.Unmatched++
		h.mu.Unlock()
		return
	}
	e.inUse = false
	h.stats.Replies++
	owner, msgID := e.owner, e.msgID
	h.mu.Unlock()
	files.Deliver(owner, ioctl.Message{RecvType: ioctl.ResponseRecvType, Addr: in.addr(), MsgID: msgID,
		NetFn: in.netfn, Cmd: in.cmd, Data: in.data})
}

// handleEvent delivers one Read Event Message Buffer reply to every
// gets_events file, or keeps it (up to MaxWaitingEvents) for the first
// file that asks.
func (h *Handler) handleEvent(rsp []byte) {
	if len(rsp) < 19 || rsp[2] != ccOK {
		h.count(func(s *Stats) { s.DroppedMsgs++ })
		return
	}
	m := ioctl.Message{RecvType: ioctl.AsyncEventRecvType, Addr: sysAddr(rsp[0] & 3), NetFn: rsp[0] >> 2, Cmd: rsp[1],
		Data: append([]byte(nil), rsp[3:]...)}
	h.mu.Lock()
	files := h.files
	h.stats.Events++
	h.mu.Unlock()
	if files.DeliverEvent(m) > 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.waiting) >= MaxWaitingEvents {
		h.stats.EventsDropped++
		if !h.warned {
			h.warned = true
			h.log.Warn("event queue full, discarding incoming events")
		}
		return
	}
	h.waiting = append(h.waiting, m)
}

// WaitingEvents returns how many events wait for a listener.
func (h *Handler) WaitingEvents() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.waiting)
}

func (h *Handler) count(f func(*Stats)) {
	h.mu.Lock()
	f(&h.stats)
	h.mu.Unlock()
}

// startEventPoll runs the kernel's request_events chain through the
// engine: Get BMC Global Enables, Set them if the event buffer bit was
// lost (a BMC reset), then Read Event Message Buffer until a non-zero
// completion code. One chain at a time.
func (h *Handler) startEventPoll() {
	h.mu.Lock()
	if h.evPoll || h.closed {
		h.mu.Unlock()
		return
	}
	h.evPoll = true
	submit := h.submit
	h.mu.Unlock()
	end := func() {
		h.mu.Lock()
		h.evPoll = false
		h.mu.Unlock()
	}
	var readEvent func()
	send := func(msg []byte, done func(*sched.Request)) {
		if err := submit(h.newRequest(msg, done)); err != nil {
			end()
		}
	}
	readEvent = func() {
		send([]byte{netFnApp << 2, cmdReadEventBuf}, func(r *sched.Request) {
			if r.Err != nil || len(r.Resp) < 3 || r.Resp[1] != cmdReadEventBuf || r.Resp[2] != ccOK {
				end()
				return
			}
			h.handleEvent(r.Resp)
			h.mu.Lock()
			stop := h.closed
			h.mu.Unlock()
			if stop {
				end()
				return
			}
			readEvent()
		})
	}
	send([]byte{netFnApp << 2, cmdGetGlobalEn}, func(r *sched.Request) {
		if r.Err != nil || len(r.Resp) < 4 || r.Resp[1] != cmdGetGlobalEn || r.Resp[2] != ccOK {
			end()
			return
		}
		if r.Resp[3]&enableEventBuffer != 0 {
			readEvent()
			return
		}
		send([]byte{netFnApp << 2, cmdSetGlobalEn, r.Resp[3] | enableEventBuffer}, func(*sched.Request) { readEvent() })
	})
}
