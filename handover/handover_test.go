package handover

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
	"github.com/ipmi-cuse/ipmi-cuse/state"
)

// refuse is an engine that takes nothing (Restore submits nothing).
func refuse(*sched.Request) error { return sched.ErrClosed }

func newParts(handler bool) Parts {
	p := Parts{IPMI: ioctl.NewDevice(ioctl.Config{Submit: refuse}), Submit: refuse}
	if handler {
		p.Handler = msghandler.New(msghandler.Config{})
	}
	return p
}

// twoInterfaces is a state of a daemon serving /dev/ipmi0 and /dev/ipmi1,
// one open file each, with different queues so a file restored on the
// wrong interface shows.
func twoInterfaces() *state.State {
	var addr0, addr1 [ioctl.MaxChannels]uint8
	addr0[0], addr1[0] = 0x20, 0x22
	f0 := ioctl.FileState{Owner: uint64(ioctl.OwnerBase) + 3, Retries: -1, GetsEvents: true,
		Queue: []ioctl.Message{{RecvType: 1, MsgID: 7, NetFn: 7, Cmd: 1, Data: []byte{0}}}}
	f1 := ioctl.FileState{Owner: uint64(ioctl.OwnerBase) + 1, Retries: 2, RetryTimeMs: 500,
		Queue:         []ioctl.Message{{RecvType: 1, MsgID: 9, NetFn: 0x0b, Cmd: 2, Data: []byte{0, 1}}},
		Registrations: []ioctl.CmdRegistration{{NetFn: 0x30, Cmd: 5, Chans: 1}}}
	return &state.State{
		Devices: []state.Device{
			{Name: "ipmi0", Kind: state.KindIPMI, LastFh: 12, Files: []state.File{{Fh: 12, Flags: 2, Kh: 4, IPMI: &f0}}},
			{Name: "ipmi1", Kind: state.KindIPMI, LastFh: 30, Files: []state.File{{Fh: 30, Flags: 2, IPMI: &f1}}},
		},
		IPMI:    &ioctl.DeviceState{LastOwner: 3, MyAddr: addr0},
		Handler: &msghandler.State{IPMIVersion: 0x02, ChannelsReady: true, CurSeq: 1},
		More: []state.Interface{{Device: "ipmi1", IPMI: ioctl.DeviceState{LastOwner: 1, MyAddr: addr1},
			Handler: &msghandler.State{IPMIVersion: 0x02, ChannelsReady: true, CurSeq: 5}}},
	}
}

func fileState(t *testing.T, r cuse.Resume) ioctl.FileState {
	t.Helper()
	if len(r.Files) != 1 {
		t.Fatalf("%d files resumed, want 1", len(r.Files))
	}
	f, ok := r.Files[0].File.(*ioctl.File)
	if !ok {
		t.Fatalf("resumed file is a %T", r.Files[0].File)
	}
	return f.ExportState()
}

// TestRestoreSeveralInterfaces: each interface's files, interface state
// and message handler go to that interface's parts, and only there.
func TestRestoreSeveralInterfaces(t *testing.T) {
	for _, withHandler := range []bool{true, false} {
		st := twoInterfaces()
		if !withHandler {
			st.More[0].Handler = nil
		}
		p0, p1 := newParts(true), newParts(true)
		defer p0.Handler.Close()
		defer p1.Handler.Close()
		r0, err := Restore(st, p0)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := r0["ipmi1"]; ok || len(r0) != 1 {
			t.Fatalf("Restore resumed %v, want only ipmi0 (ipmi1 is a further interface's)", r0)
		}
		if got := fileState(t, r0["ipmi0"]); !reflect.DeepEqual(got, *st.Devices[0].Files[0].IPMI) {
			t.Errorf("ipmi0's file: %+v, want %+v", got, *st.Devices[0].Files[0].IPMI)
		}
		r1, ok, resumed, err := RestoreInterface(st, "ipmi1", p1)
		if err != nil || !ok || resumed != withHandler {
			t.Fatalf("RestoreInterface = ok %v handler %v err %v, want ok, handler %v", ok, resumed, err, withHandler)
		}
		if r1.NextFh != 30 || r1.Files[0].Fh != 30 {
			t.Errorf("ipmi1 resumes %+v, want fh 30", r1)
		}
		if got := fileState(t, r1); !reflect.DeepEqual(got, *st.Devices[1].Files[0].IPMI) {
			t.Errorf("ipmi1's file: %+v, want %+v", got, *st.Devices[1].Files[0].IPMI)
		}
		if got := p1.IPMI.ExportState(); got.MyAddr != st.More[0].IPMI.MyAddr || got.LastOwner != 1 {
			t.Errorf("ipmi1's interface state %+v, want %+v", got, st.More[0].IPMI)
		}
		if got := p0.IPMI.ExportState(); got.MyAddr != st.IPMI.MyAddr {
			t.Errorf("ipmi0's interface state %+v, want %+v", got, *st.IPMI)
		}
		if withHandler {
			if got := p1.Handler.ExportState(); got.CurSeq != 5 {
				t.Errorf("ipmi1's handler resumed with seq %d, want 5", got.CurSeq)
			}
		}
		if _, ok, _, err := RestoreInterface(st, "ipmi2", newParts(false)); ok || err != nil {
			t.Errorf("RestoreInterface of an interface not in the state: ok %v err %v", ok, err)
		}
		if _, _, _, err := RestoreInterface(st, "ipmi1", Parts{}); !errors.Is(err, ErrMismatch) {
			t.Errorf("RestoreInterface without an IPMI device: %v, want ErrMismatch", err)
		}
	}
}

// FuzzRestore fuzzes the whole import path of a new process: any body
// behind a valid header (the harness computes length and checksum) that
// Decode accepts is restored into fresh parts, interface by interface,
// without a panic.
func FuzzRestore(f *testing.F) {
	j, err := json.Marshal(twoInterfaces())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(j)
	f.Add([]byte(`{"devices":[{"name":"ipmi0","kind":"ipmi","last_fh":1}],"ipmi":{"last_owner":0,"my_addr":[],"my_lun":[],"maint_mode":0,"maint_remaining":0}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		b := make([]byte, 24, 24+len(body))
		copy(b, "IPMICUSE")
		binary.LittleEndian.PutUint32(b[8:], state.Version)
		binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
		binary.LittleEndian.PutUint64(b[16:], uint64(len(body)))
		st, err := state.Decode(append(b, body...))
		if err != nil {
			return
		}
		p := newParts(true)
		defer p.Handler.Close()
		if _, err := Restore(st, p); err != nil {
			return
		}
		for _, m := range st.More {
			q := newParts(true)
			_, ok, _, err := RestoreInterface(st, m.Device, q)
			q.Handler.Close()
			if err == nil && !ok {
				t.Fatalf("interface %s in the state not found", m.Device)
			}
		}
	})
}

// echo is a BMC that answers every request at once with completion code 0.
type echo struct{}

func (echo) Transact(msg, resp []byte, _ time.Time) ([]byte, error) {
	return append(resp[:0], msg[0]|4, msg[1], 0), nil
}

// roundTrip runs Get Device ID through e and reports whether it completed.
func roundTrip(e *sched.Engine) bool {
	done := make(chan error, 1)
	r := &sched.Request{Owner: 1, Deadline: time.Now().Add(10 * time.Second), Msg: []byte{0x06 << 2, 0x01},
		Resp: make([]byte, 0, 64), Done: func(r *sched.Request) { done <- r.Err }}
	if err := e.Submit(r); err != nil {
		return false
	}
	select {
	case err := <-done:
		return err == nil
	case <-time.After(10 * time.Second):
		return false
	}
}

// TestFreezeUndoesEveryEngine: when a further interface's engine cannot
// stop (here: closed) or the state cannot be built, Freeze fails and every
// engine it had paused serves again; nothing stays held.
func TestFreezeUndoesEveryEngine(t *testing.T) {
	e0, e1, e2 := sched.New(echo{}, sched.Config{}), sched.New(echo{}, sched.Config{}), sched.New(echo{}, sched.Config{})
	defer e0.Close()
	defer e1.Close()
	e2.Close()
	newDev := func(e *sched.Engine) *ioctl.Device { return ioctl.NewDevice(ioctl.Config{Submit: e.Submit}) }
	h0, h1 := msghandler.New(msghandler.Config{}), msghandler.New(msghandler.Config{})
	defer h0.Close()
	defer h1.Close()
	for _, tc := range []struct {
		name string
		more []Interface
		want string
	}{
		// ipmi2's engine is closed: it cannot pause.
		{"engine fails to pause", []Interface{{Device: "ipmi1", Engine: e1, IPMI: newDev(e1), Handler: h1},
			{Device: "ipmi2", Engine: e2, IPMI: newDev(e2)}}, "draining the engine of interface 2"},
		// ipmi1 has no CUSE device in Devices: the state is inconsistent.
		{"state refused", []Interface{{Device: "ipmi1", Engine: e1, IPMI: newDev(e1), Handler: h1}}, "serialising"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &Daemon{Engine: e0, IPMI: newDev(e0), Handler: h0, More: tc.more}
			_, err := d.Freeze(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Freeze = %v, want an error about %q", err, tc.want)
			}
			if !roundTrip(e0) || !roundTrip(e1) {
				t.Error("an engine stayed paused after the failed freeze")
			}
		})
	}
}
