package ioctl

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// ErrState is wrapped by the errors of ImportState and RestoreFile: the
// state cannot be what a Device exported.
var ErrState = errors.New("ioctl: invalid hand-over state")

// DeviceState is the interface-wide part of a Device for a hand-over to
// another process: what the kernel keeps per interface, plus the owner
// counter so restored and new files never share an owner.
type DeviceState struct {
	// LastOwner is the highest file owner issued (an sched.Owner).
	LastOwner uint64 `json:"last_owner"`
	// MyAddr and MyLUN are the interface's address and LUN per channel.
	MyAddr [MaxChannels]uint8 `json:"my_addr"`
	MyLUN  [MaxChannels]uint8 `json:"my_lun"`
	// MaintMode is the maintenance mode setting (auto, off, on).
	MaintMode int32 `json:"maint_mode"`
	// MaintRemaining is what is left of auto maintenance mode.
	MaintRemaining time.Duration `json:"maint_remaining"`
}

// CmdRegistration is one of a file's command registrations in a FileState.
type CmdRegistration struct {
	NetFn uint8  `json:"netfn"`
	Cmd   uint8  `json:"cmd"`
	Chans uint32 `json:"chans"`
}

// FileState is one open file of the device for a hand-over.
type FileState struct {
	// Owner is the file's fairness key; the Bridge knows files by it.
	Owner uint64 `json:"owner"`
	// Queue is the receive queue, head first.
	Queue []Message `json:"queue,omitempty"`
	// Inflight counts the file's messages still on their way (bridged
	// requests waiting in the message handler), for the per-user limit.
	Inflight int `json:"inflight,omitempty"`
	// Retries and RetryTimeMs are the SET_TIMING_PARMS defaults.
	Retries     int32  `json:"retries"`
	RetryTimeMs uint32 `json:"retry_time_ms"`
	// GetsEvents is SET_GETS_EVENTS.
	GetsEvents bool `json:"gets_events,omitempty"`
	// Registrations are the file's REGISTER_FOR_CMD(_CHANS).
	Registrations []CmdRegistration `json:"registrations,omitempty"`
}

// maxRestoredInflight bounds a restored file's in-flight count: the
// message handler's sequence table holds at most 64 bridged requests.
const maxRestoredInflight = 1 << 10

// ExportState returns the interface-wide state. Call it while no request
// runs (the CUSE server and the engine paused).
func (d *Device) ExportState() DeviceState {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := DeviceState{LastOwner: d.nextOwner.Load(), MyAddr: d.myAddr, MyLUN: d.myLUN, MaintMode: d.maintMode}
	if rem := d.maintUntil.Sub(d.now()); rem > 0 {
		s.MaintRemaining = rem
	}
	return s
}

// ImportState sets the interface-wide state exported by another process.
// Call it before any file is opened or restored.
func (d *Device) ImportState(s DeviceState) error {
	if s.MaintMode < MaintenanceModeAuto || s.MaintMode > MaintenanceModeOn {
		return fmt.Errorf("%w: maintenance mode %d", ErrState, s.MaintMode)
	}
	if s.MaintRemaining < 0 || s.MaintRemaining > MaintenanceTimeout {
		return fmt.Errorf("%w: maintenance time left %v", ErrState, s.MaintRemaining)
	}
	if s.LastOwner >= uint64(OwnerBase) {
		return fmt.Errorf("%w: owner counter %d", ErrState, s.LastOwner)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range s.MyLUN {
		if s.MyLUN[i] > 3 {
			return fmt.Errorf("%w: LUN %d on channel %d", ErrState, s.MyLUN[i], i)
		}
	}
	d.myAddr, d.myLUN, d.maintMode = s.MyAddr, s.MyLUN, s.MaintMode
	if s.MaintRemaining > 0 {
		d.maintUntil = d.now().Add(s.MaintRemaining)
	}
	for {
		cur := d.nextOwner.Load()
		if cur >= s.LastOwner || d.nextOwner.CompareAndSwap(cur, s.LastOwner) {
			break
		}
	}
	return nil
}

// ExportState returns the file's state. Call it while no request runs.
func (f *File) ExportState() FileState {
	f.mu.Lock()
	s := FileState{Owner: uint64(f.owner), Inflight: f.inflight, Retries: f.retries, RetryTimeMs: f.retryMs,
		GetsEvents: f.getsEvents}
	for _, m := range f.queue {
		// Copies: a queued reply's storage is reused once it is received.
		s.Queue = append(s.Queue, Message{RecvType: m.recvType, Addr: bytes.Clone(m.addr), MsgID: m.msgID, NetFn: m.netfn,
			Cmd: m.cmd, Data: bytes.Clone(m.data)})
	}
	f.mu.Unlock()
	d := f.dev
	d.mu.Lock()
	for _, r := range d.rcvrs {
		if r.file == f {
			s.Registrations = append(s.Registrations, CmdRegistration{NetFn: r.netfn, Cmd: r.cmd, Chans: r.chans})
		}
	}
	d.mu.Unlock()
	return s
}

// RestoreFile opens a file with the state another process exported, as
// it was there: same owner, receive queue, timing defaults, gets_events
// and registrations. It counts against MaxUsers like an open but is never
// refused for it (the file is open already). The caller wakes its poller.
func (d *Device) RestoreFile(s FileState) (*File, error) {
	owner := sched.Owner(s.Owner)
	if owner <= OwnerBase || s.Owner-uint64(OwnerBase) > d.nextOwner.Load() {
		return nil, fmt.Errorf("%w: file owner %d outside the exported counter", ErrState, s.Owner)
	}
	if s.Inflight < 0 || s.Inflight > maxRestoredInflight {
		return nil, fmt.Errorf("%w: %d messages in flight", ErrState, s.Inflight)
	}
	f := &File{dev: d, owner: owner, inflight: s.Inflight, retries: s.Retries, retryMs: s.RetryTimeMs,
		getsEvents: s.GetsEvents}
	for i, m := range s.Queue {
		if len(m.Addr) > SizeofAddr || len(m.Data) > MaxMsgLength {
			return nil, fmt.Errorf("%w: queued message %d: address %d bytes, data %d bytes", ErrState, i, len(m.Addr), len(m.Data))
		}
		f.queue = append(f.queue, m.recv())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, dup := d.files[owner]; dup {
		return nil, fmt.Errorf("%w: two files with owner %d", ErrState, s.Owner)
	}
	for _, r := range s.Registrations {
		for _, o := range d.rcvrs {
			if o.netfn == r.NetFn && o.cmd == r.Cmd && o.chans&r.Chans != 0 {
				return nil, fmt.Errorf("%w: overlapping registrations for netfn %#x cmd %#x", ErrState, r.NetFn, r.Cmd)
			}
		}
		d.rcvrs = append(d.rcvrs, cmdRcvr{netfn: r.NetFn, cmd: r.Cmd, chans: r.Chans, file: f})
	}
	d.users++
	d.files[owner] = f
	return f, nil
}
