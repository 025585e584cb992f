package ioctl

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestHandoverRoundTrip: a file with a queued reply, timing defaults,
// gets_events and a registration, exported from one Device and restored
// in another, behaves the same there; new files get other owners.
func TestHandoverRoundTrip(t *testing.T) {
	a := newEnv(t, Config{})
	a.open() // owner 1, closed below: the counter must still move on
	f := a.open()
	if errno := a.send(f, sysAddr(0), 42, NetFnApp, 0x01, nil); errno != 0 {
		t.Fatalf("send: %v", errno)
	}
	f.mu.Lock()
	f.retries, f.retryMs, f.getsEvents = 3, 500, true
	f.mu.Unlock()
	if errno := a.dev.registerForCmd(f, 0x30, 0x01, 0x5); errno != 0 {
		t.Fatal(errno)
	}
	a.dev.setChannelValue(2, 0x22, false)
	a.dev.setChannelValue(2, 3, true)
	a.dev.setMaintenanceMode(MaintenanceModeOn)

	ds, fs := a.dev.ExportState(), f.ExportState()

	b := newEnv(t, Config{})
	if err := b.dev.ImportState(ds); err != nil {
		t.Fatalf("ImportState: %v", err)
	}
	g, err := b.dev.RestoreFile(fs)
	if err != nil {
		t.Fatalf("RestoreFile: %v", err)
	}
	if g.Owner() != f.Owner() {
		t.Errorf("owner %d, want %d", g.Owner(), f.Owner())
	}
	if got := g.ExportState(); !equalFileState(got, fs) {
		t.Errorf("restored file exports %+v, want %+v", got, fs)
	}
	if addr, lun := b.dev.MyAddress(2); addr != 0x22 || lun != 3 {
		t.Errorf("channel 2 address %#x LUN %d, want 0x22 3", addr, lun)
	}
	if !b.dev.MaintenanceActive() {
		t.Error("maintenance mode lost")
	}
	if o, ok := b.dev.CmdReceiver(0x30, 0x01, 2); !ok || o != g.Owner() {
		t.Errorf("registration not restored (%d %v)", o, ok)
	}
	if b.dev.Users() != 1 {
		t.Errorf("%d users, want 1", b.dev.Users())
	}
	// The queued reply is received from the new device, byte for byte.
	r := b.recv(g, false, 40, 300)
	if r.errno != 0 || r.recv.MsgID != 42 || r.recv.Msg.Cmd != 0x01 || !bytes.Equal(r.addr[:len(sysAddr(0))], sysAddr(0)) {
		t.Errorf("receive on the restored file: %+v", r)
	}
	if n := b.open(); n.Owner() <= g.Owner() {
		t.Errorf("new file owner %d not above the restored %d", n.Owner(), g.Owner())
	}
}

func equalFileState(a, b FileState) bool {
	if a.Owner != b.Owner || a.Inflight != b.Inflight || a.Retries != b.Retries || a.RetryTimeMs != b.RetryTimeMs ||
		a.GetsEvents != b.GetsEvents || len(a.Queue) != len(b.Queue) || len(a.Registrations) != len(b.Registrations) {
		return false
	}
	for i := range a.Queue {
		x, y := a.Queue[i], b.Queue[i]
		if x.RecvType != y.RecvType || x.MsgID != y.MsgID || x.NetFn != y.NetFn || x.Cmd != y.Cmd ||
			!bytes.Equal(x.Addr, y.Addr) || !bytes.Equal(x.Data, y.Data) {
			return false
		}
	}
	for i := range a.Registrations {
		if a.Registrations[i] != b.Registrations[i] {
			return false
		}
	}
	return true
}

func TestHandoverRefusesBadState(t *testing.T) {
	good := func() (DeviceState, FileState) {
		return DeviceState{LastOwner: 3, MaintMode: MaintenanceModeAuto}, FileState{Owner: uint64(OwnerBase) + 2, Retries: -1}
	}
	tests := []struct {
		name string
		mod  func(*DeviceState, *FileState)
	}{
		{"maintenance mode", func(d *DeviceState, _ *FileState) { d.MaintMode = 7 }},
		{"maintenance time", func(d *DeviceState, _ *FileState) { d.MaintRemaining = time.Hour }},
		{"LUN", func(d *DeviceState, _ *FileState) { d.MyLUN[1] = 4 }},
		{"owner counter", func(d *DeviceState, _ *FileState) { d.LastOwner = uint64(OwnerBase) }},
		{"owner below base", func(_ *DeviceState, f *FileState) { f.Owner = 5 }},
		{"owner above counter", func(_ *DeviceState, f *FileState) { f.Owner = uint64(OwnerBase) + 9 }},
		{"negative inflight", func(_ *DeviceState, f *FileState) { f.Inflight = -1 }},
		{"long data", func(_ *DeviceState, f *FileState) { f.Queue = []Message{{Data: make([]byte, MaxMsgLength+1)}} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds, fs := good()
			tc.mod(&ds, &fs)
			e := newEnv(t, Config{})
			err := e.dev.ImportState(ds)
			if err == nil {
				_, err = e.dev.RestoreFile(fs)
			}
			if !errors.Is(err, ErrState) {
				t.Errorf("got %v, want ErrState", err)
			}
		})
	}
	t.Run("duplicate owner", func(t *testing.T) {
		ds, fs := good()
		e := newEnv(t, Config{})
		if err := e.dev.ImportState(ds); err != nil {
			t.Fatal(err)
		}
		if _, err := e.dev.RestoreFile(fs); err != nil {
			t.Fatal(err)
		}
		if _, err := e.dev.RestoreFile(fs); !errors.Is(err, ErrState) {
			t.Errorf("second restore of owner %d: %v, want ErrState", fs.Owner, err)
		}
	})
	t.Run("good", func(t *testing.T) {
		ds, fs := good()
		e := newEnv(t, Config{})
		if err := e.dev.ImportState(ds); err != nil {
			t.Fatal(err)
		}
		f, err := e.dev.RestoreFile(fs)
		if err != nil {
			t.Fatal(err)
		}
		f.Release()
		if e.dev.Users() != 0 {
			t.Errorf("users %d after release", e.dev.Users())
		}
	})
}
