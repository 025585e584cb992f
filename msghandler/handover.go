package msghandler

import (
	"errors"
	"fmt"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// ErrState is wrapped by Resume's errors: the state cannot be one a
// Handler exported.
var ErrState = errors.New("msghandler: invalid hand-over state")

// State is the message handler's state for a hand-over to another process:
// what the start-up sequence found, the bridged requests waiting for their
// reply, and the events waiting for a listener.
type State struct {
	IPMIVersion   uint8                      `json:"ipmi_version"`
	Channels      [ioctl.MaxChannels]Channel `json:"channels"`
	ChannelsReady bool                       `json:"channels_ready"`
	EventBuffer   bool                       `json:"event_buffer"`
	// CurSeq is where the search for a free sequence slot starts.
	CurSeq int `json:"cur_seq"`
	// IPMBMaintenanceTicks is what is left of IPMB maintenance (ticks).
	IPMBMaintenanceTicks int `json:"ipmb_maintenance_ticks,omitempty"`
	// Waiting are events read while nobody listened.
	Waiting []ioctl.Message `json:"waiting,omitempty"`
	// Seq are the sequence slots in use.
	Seq []SeqState `json:"seq,omitempty"`
}

// SeqState is one sequence slot in use: a bridged request waiting for its
// reply (or for its retry timer).
type SeqState struct {
	Slot        int         `json:"slot"`
	SeqID       uint32      `json:"seqid"`
	Owner       sched.Owner `json:"owner"`
	Addr        []byte      `json:"addr"`
	Channel     uint8       `json:"channel"`
	LAN         bool        `json:"lan,omitempty"`
	SA          uint8       `json:"sa"`
	LUN         uint8       `json:"lun"`
	LANPeer     [3]byte     `json:"lan_peer"`
	MsgID       int64       `json:"msgid"`
	NetFn       uint8       `json:"netfn"`
	Cmd         uint8       `json:"cmd"`
	Msg         []byte      `json:"msg,omitempty"`
	TimeoutMs   int         `json:"timeout_ms"`
	RetryMs     int         `json:"retry_ms"`
	RetriesLeft int         `json:"retries_left"`
	Broadcast   bool        `json:"broadcast,omitempty"`
}

// Hold stops (true) or restarts (false) the housekeeping tick: no retry,
// no timeout, no event poll while a hand-over is in progress. Sequence
// timers do not run meanwhile; the new process counts them down from where
// they stood.
func (h *Handler) Hold(held bool) {
	h.mu.Lock()
	h.held = held
	h.mu.Unlock()
}

// ExportState returns the handler's state. Call it with the engine paused
// (sched.Engine.Pause) and the tick held, so nothing changes it.
func (h *Handler) ExportState() State {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := State{IPMIVersion: h.ipmiVersion, Channels: h.chans, ChannelsReady: h.chansReady, EventBuffer: h.hasEventBuf,
		CurSeq: h.curSeq, IPMBMaintenanceTicks: h.ipmbMnt, Waiting: append([]ioctl.Message(nil), h.waiting...)}
	for i, e := range h.seq {
		if !e.inUse {
			continue
		}
		s.Seq = append(s.Seq, SeqState{Slot: i, SeqID: e.seqid, Owner: e.owner, Addr: e.addr, Channel: e.channel,
			LAN: e.lan, SA: e.sa, LUN: e.lun, LANPeer: e.lanPeer, MsgID: e.msgID, NetFn: e.netfn, Cmd: e.cmd,
			Msg: e.msg, TimeoutMs: e.timeoutMs, RetryMs: e.retryMs, RetriesLeft: e.retriesLeft, Broadcast: e.broadcast})
	}
	return s
}

// Resume is Start for a handler taking over from another process: it
// connects to the engine and the files, takes s instead of running the
// start-up sequence (the BMC was set up already), and starts the tick.
func (h *Handler) Resume(submit func(*sched.Request) error, files Files, s State) error {
	if s.CurSeq < 0 || s.CurSeq >= NumSeq || s.IPMBMaintenanceTicks < 0 || s.IPMBMaintenanceTicks > maintenanceTicks ||
		len(s.Waiting) > MaxWaitingEvents || len(s.Seq) > NumSeq {
		return fmt.Errorf("%w: seq %d, maintenance %d, %d events, %d slots", ErrState, s.CurSeq,
			s.IPMBMaintenanceTicks, len(s.Waiting), len(s.Seq))
	}
	var seq [NumSeq]seqEntry
	for _, e := range s.Seq {
		if e.Slot < 0 || e.Slot >= NumSeq || seq[e.Slot].inUse || e.SeqID >= 1<<26 || e.Channel >= ioctl.MaxChannels ||
			len(e.Msg) > ioctl.MaxMsgLength+8 || len(e.Addr) > ioctl.SizeofAddr || e.RetriesLeft < 0 {
			return fmt.Errorf("%w: sequence slot %d", ErrState, e.Slot)
		}
		seq[e.Slot] = seqEntry{inUse: true, seqid: e.SeqID, owner: e.Owner, addr: e.Addr, channel: e.Channel, lan: e.LAN,
			sa: e.SA, lun: e.LUN, lanPeer: e.LANPeer, msgID: e.MsgID, netfn: e.NetFn, cmd: e.Cmd, msg: e.Msg,
			timeoutMs: e.TimeoutMs, retryMs: e.RetryMs, retriesLeft: e.RetriesLeft, broadcast: e.Broadcast}
	}
	h.mu.Lock()
	if h.started || h.closed {
		h.mu.Unlock()
		return fmt.Errorf("msghandler: Resume: %w", ErrNotStarted)
	}
	h.submit, h.files = submit, files
	h.started = true
	h.stop = make(chan struct{})
	h.tickDone = make(chan struct{})
	h.ipmiVersion, h.chans, h.chansReady, h.hasEventBuf = s.IPMIVersion, s.Channels, s.ChannelsReady, s.EventBuffer
	h.curSeq, h.ipmbMnt, h.waiting, h.seq = s.CurSeq, s.IPMBMaintenanceTicks, s.Waiting, seq
	h.mu.Unlock()
	go h.ticker()
	return nil
}
