package bmcsim

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.DiscardHandler)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newManual(t *testing.T) (*BMC, *ManualClock) {
	t.Helper()
	c := NewManualClock(t0)
	return New(Config{Clock: c, Logger: quiet}), c
}

// do sends one request and checks the response header; it returns the
// completion code and response data.
func do(t *testing.T, b *BMC, netfn, cmd byte, data ...byte) (byte, []byte) {
	t.Helper()
	req := append([]byte{netfn << 2, cmd}, data...)
	rsp := b.Handle(req, nil)
	if len(rsp) < 3 || rsp[0] != (netfn|1)<<2 || rsp[1] != cmd {
		t.Fatalf("request % x: malformed response % x", req, rsp)
	}
	return rsp[2], rsp[3:]
}

func mustOK(t *testing.T, b *BMC, netfn, cmd byte, data ...byte) []byte {
	t.Helper()
	cc, rsp := do(t, b, netfn, cmd, data...)
	if cc != 0 {
		t.Fatalf("netfn %#x cmd %#x % x: completion code %#x", netfn, cmd, data, cc)
	}
	return rsp
}

func TestCommandTable(t *testing.T) {
	tests := []struct {
		name    string
		netfn   byte
		cmd     byte
		data    []byte
		wantCC  byte
		wantRsp []byte // nil: only the length below is checked
		wantLen int
	}{
		{name: "get device id", netfn: NetFnApp, cmd: CmdGetDeviceID,
			wantRsp: []byte{0x20, 0x81, 0x01, 0x00, 0x02, 0xBF, 0xD9, 0x7E, 0x00, 0x05, 0x0C, 0, 0, 0, 1}},
		{name: "get device id with data", netfn: NetFnApp, cmd: CmdGetDeviceID, data: []byte{1}, wantCC: 0xC7},
		{name: "self test", netfn: NetFnApp, cmd: CmdGetSelfTestResults, wantRsp: []byte{0x55, 0x00}},
		{name: "device guid", netfn: NetFnApp, cmd: CmdGetDeviceGUID, wantLen: 16},
		{name: "system guid", netfn: NetFnApp, cmd: CmdGetSystemGUID, wantLen: 16},
		{name: "global enables default", netfn: NetFnApp, cmd: CmdGetBMCGlobalEnables, wantRsp: []byte{0x0C}},
		{name: "message flags empty", netfn: NetFnApp, cmd: CmdGetMessageFlags, wantRsp: []byte{0x00}},
		{name: "get message empty", netfn: NetFnApp, cmd: CmdGetMessage, wantCC: 0x80},
		{name: "event buffer empty", netfn: NetFnApp, cmd: CmdReadEventMessageBuffer, wantCC: 0x80},
		{name: "channel info ipmb", netfn: NetFnApp, cmd: CmdGetChannelInfo, data: []byte{0},
			wantRsp: []byte{0x00, 0x01, 0x01, 0x00, 0xF2, 0x1B, 0x00, 0x00, 0x00}},
		{name: "channel info lan", netfn: NetFnApp, cmd: CmdGetChannelInfo, data: []byte{1},
			wantRsp: []byte{0x01, 0x04, 0x01, 0x80, 0xF2, 0x1B, 0x00, 0x00, 0x00}},
		{name: "channel info system", netfn: NetFnApp, cmd: CmdGetChannelInfo, data: []byte{0x0F},
			wantRsp: []byte{0x0F, 0x0C, 0x05, 0x00, 0xF2, 0x1B, 0x00, 0x05, 0x05}},
		{name: "channel info this", netfn: NetFnApp, cmd: CmdGetChannelInfo, data: []byte{0x0E}, wantLen: 9},
		{name: "channel info absent", netfn: NetFnApp, cmd: CmdGetChannelInfo, data: []byte{5}, wantCC: 0xCC},
		{name: "channel info no data", netfn: NetFnApp, cmd: CmdGetChannelInfo, wantCC: 0xC7},
		{name: "unknown app command", netfn: NetFnApp, cmd: 0x7F, wantCC: 0xC1},
		{name: "unknown netfn", netfn: 0x30, cmd: 0x01, wantCC: 0xC1},
		{name: "reset watchdog uninitialised", netfn: NetFnApp, cmd: CmdResetWatchdogTimer, wantCC: 0x80},
		{name: "set watchdog bad use", netfn: NetFnApp, cmd: CmdSetWatchdogTimer, data: []byte{0, 0, 0, 0, 10, 0}, wantCC: 0xCC},
		{name: "set watchdog short", netfn: NetFnApp, cmd: CmdSetWatchdogTimer, data: []byte{4, 0, 0, 0, 10}, wantCC: 0xC7},
		{name: "set watchdog pretimeout too long", netfn: NetFnApp, cmd: CmdSetWatchdogTimer, data: []byte{4, 0x31, 5, 0, 10, 0}, wantCC: 0xCC},
		{name: "chassis capabilities", netfn: NetFnChassis, cmd: CmdGetChassisCapabilities, wantLen: 6},
		{name: "chassis status", netfn: NetFnChassis, cmd: CmdGetChassisStatus, wantRsp: []byte{0x41, 0x00, 0x00, 0x00}},
		{name: "chassis control invalid", netfn: NetFnChassis, cmd: CmdChassisControl, data: []byte{9}, wantCC: 0xCC},
		{name: "restart cause", netfn: NetFnChassis, cmd: CmdGetSystemRestartCause, wantRsp: []byte{0x00, 0x0F}},
		{name: "poh counter", netfn: NetFnChassis, cmd: CmdGetPOHCounter, wantRsp: []byte{60, 0, 0, 0, 0}},
		{name: "sensor reading temp", netfn: NetFnSensor, cmd: CmdGetSensorReading, data: []byte{1}, wantRsp: []byte{45, 0xC0, 0x00, 0x00}},
		{name: "sensor reading absent", netfn: NetFnSensor, cmd: CmdGetSensorReading, data: []byte{0x99}, wantCC: 0xCB},
		{name: "sensor thresholds fan", netfn: NetFnSensor, cmd: CmdGetSensorThresholds, data: []byte{2}, wantRsp: []byte{0x07, 10, 8, 5, 0, 0, 0}},
		{name: "sensor hysteresis", netfn: NetFnSensor, cmd: CmdGetSensorHysteresis, data: []byte{1, 0xFF}, wantRsp: []byte{2, 2}},
		{name: "sensor event enable", netfn: NetFnSensor, cmd: CmdGetSensorEventEnable, data: []byte{3}, wantLen: 5},
		{name: "platform event short", netfn: NetFnSensor, cmd: CmdPlatformEvent, data: []byte{1, 2, 3}, wantCC: 0xC7},
		{name: "sel info empty", netfn: NetFnStorage, cmd: CmdGetSELInfo, wantLen: 14},
		{name: "sel entry absent", netfn: NetFnStorage, cmd: CmdGetSELEntry, data: []byte{0, 0, 0, 0, 0, 0xFF}, wantCC: 0xCB},
		{name: "sdr info", netfn: NetFnStorage, cmd: CmdGetSDRRepositoryInfo, wantLen: 14},
		{name: "fru info", netfn: NetFnStorage, cmd: CmdGetFRUInventoryAreaInfo, data: []byte{0}, wantRsp: []byte{0x00, 0x01, 0x00}},
		{name: "fru info absent", netfn: NetFnStorage, cmd: CmdGetFRUInventoryAreaInfo, data: []byte{1}, wantCC: 0xCB},
		{name: "fru read too much", netfn: NetFnStorage, cmd: CmdReadFRUData, data: []byte{0, 0, 0, 200}, wantCC: 0xCA},
		{name: "fru read past end", netfn: NetFnStorage, cmd: CmdReadFRUData, data: []byte{0, 0, 1, 16}, wantCC: 0xC9},
		{name: "send message other channel", netfn: NetFnApp, cmd: CmdSendMessage, data: []byte{1, 0x72, 0x18, 0x76, 0x20, 0x08, 0x01, 0xD7}, wantCC: 0xCC},
		{name: "send message absent", netfn: NetFnApp, cmd: CmdSendMessage, data: []byte{0, 0x74, 0x18, 0x74, 0x20, 0x08, 0x01, 0xD7}, wantCC: 0x83},
		{name: "send message short", netfn: NetFnApp, cmd: CmdSendMessage, data: []byte{0, 0x72, 0x18}, wantCC: 0xC7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := newManual(t)
			cc, rsp := do(t, b, tc.netfn, tc.cmd, tc.data...)
			if cc != tc.wantCC {
				t.Fatalf("completion code %#x, want %#x (data % x)", cc, tc.wantCC, rsp)
			}
			if tc.wantRsp != nil && !bytes.Equal(rsp, tc.wantRsp) {
				t.Fatalf("response % x, want % x", rsp, tc.wantRsp)
			}
			if tc.wantLen != 0 && len(rsp) != tc.wantLen {
				t.Fatalf("response % x has %d bytes, want %d", rsp, len(rsp), tc.wantLen)
			}
			if cc != 0 && len(rsp) != 0 {
				t.Fatalf("error response carries data % x", rsp)
			}
		})
	}
}

func TestHandleHeader(t *testing.T) {
	b, _ := newManual(t)
	tests := []struct {
		name string
		req  []byte
		want []byte
	}{
		{"empty", nil, []byte{0x04, 0x00, 0xC7}},
		{"netfn only", []byte{0x18}, []byte{0x1C, 0x00, 0xC7}},
		{"lun kept", []byte{0x18 | 2, CmdGetSelfTestResults}, []byte{0x1C | 2, CmdGetSelfTestResults, 0, 0x55, 0}},
		{"response netfn rejected", []byte{0x1C, CmdGetDeviceID}, []byte{0x1C, CmdGetDeviceID, 0xC1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pre := []byte{0xEE}
			got := b.Handle(tc.req, pre)
			if !bytes.Equal(got[1:], tc.want) || got[0] != 0xEE {
				t.Fatalf("Handle(% x) = % x, want EE % x", tc.req, got, tc.want)
			}
		})
	}
}

func TestGlobalEnablesAndFlags(t *testing.T) {
	b, _ := newManual(t)
	mustOK(t, b, NetFnApp, CmdSetBMCGlobalEnables, 0x0F)
	if got := mustOK(t, b, NetFnApp, CmdGetBMCGlobalEnables); got[0] != 0x0F {
		t.Fatalf("enables %#x", got[0])
	}
	if b.Attention() {
		t.Fatal("attention with no flags")
	}
	ev := bytes.Repeat([]byte{0x11}, 16)
	if err := b.AddEvent(ev); err != nil {
		t.Fatal(err)
	}
	if err := b.AddEvent(ev); err == nil {
		t.Fatal("second AddEvent into a full buffer succeeded")
	}
	if !b.Attention() || !b.AttentionIRQ() {
		t.Fatal("no attention after AddEvent")
	}
	if f := mustOK(t, b, NetFnApp, CmdGetMessageFlags); f[0] != FlagEventBuffer {
		t.Fatalf("flags %#x", f[0])
	}
	if got := mustOK(t, b, NetFnApp, CmdReadEventMessageBuffer); !bytes.Equal(got, ev) {
		t.Fatalf("event % x", got)
	}
	if b.Attention() {
		t.Fatal("attention after reading the event")
	}
	if err := b.InjectIPMBRequest(0x40, NetFnApp, CmdGetDeviceID, 5, nil); err != nil {
		t.Fatal(err)
	}
	if f := mustOK(t, b, NetFnApp, CmdGetMessageFlags); f[0] != FlagReceiveMessage {
		t.Fatalf("flags %#x", f[0])
	}
	mustOK(t, b, NetFnApp, CmdClearMessageFlags, FlagReceiveMessage)
	if b.Attention() {
		t.Fatal("attention after clearing the receive queue")
	}
}

func TestInjectIPMBRequest(t *testing.T) {
	b, _ := newManual(t)
	if err := b.InjectIPMBRequest(0x40, 0x30, 0x05, 9, []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	m := mustOK(t, b, NetFnApp, CmdGetMessage)
	// channel 0; netFn 30h to LUN 2; chk1; rqSA 40h; seq 9; cmd; data; chk2
	want := []byte{0x00, 0x30<<2 | 2, 0, 0x40, 9 << 2, 0x05, 1, 2, 0}
	want[2] = zeroChecksum([]byte{0x20, want[1]})
	want[8] = zeroChecksum(want[3:8])
	if !bytes.Equal(m, want) {
		t.Fatalf("Get Message % x, want % x", m, want)
	}
}

func TestChassisControl(t *testing.T) {
	b, _ := newManual(t)
	var mu sync.Mutex
	var seen []ChassisControl
	done := make(chan struct{}, 4)
	b.OnChassisControl(func(c ChassisControl) {
		mu.Lock()
		seen = append(seen, c)
		mu.Unlock()
		done <- struct{}{}
	})
	steps := []struct {
		op    byte
		power byte
	}{{0, 0x40}, {1, 0x41}, {3, 0x41}, {2, 0x41}}
	for _, s := range steps {
		mustOK(t, b, NetFnChassis, CmdChassisControl, s.op)
		<-done
		if st := mustOK(t, b, NetFnChassis, CmdGetChassisStatus); st[0] != s.power {
			t.Fatalf("after op %d: status %#x, want %#x", s.op, st[0], s.power)
		}
	}
	if rc := mustOK(t, b, NetFnChassis, CmdGetSystemRestartCause); rc[0] != 0x01 {
		t.Fatalf("restart cause %#x, want 1 (chassis control)", rc[0])
	}
	st := b.Stats()
	if st.PowerDowns != 1 || st.HardResets != 1 || st.PowerCycles != 1 {
		t.Fatalf("stats %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 4 {
		t.Fatalf("hook saw %v", seen)
	}
}

func TestFaults(t *testing.T) {
	b := New(Config{Delay: 5 * time.Millisecond})
	if b.ResponseDelay() != 5*time.Millisecond {
		t.Fatalf("delay %v", b.ResponseDelay())
	}
	b.SetDelay(time.Second)
	if b.ResponseDelay() != time.Second {
		t.Fatal("SetDelay ignored")
	}
	if b.Silent() {
		t.Fatal("silent by default")
	}
	b.SetSilent(true)
	if !b.Silent() {
		t.Fatal("SetSilent(true) ignored")
	}
	b.SetSilent(false)
	b.SilenceUntil(time.Now().Add(time.Hour))
	if !b.Silent() {
		t.Fatal("SilenceUntil ignored")
	}
	b.SilenceUntil(time.Now().Add(-time.Second))
	if b.Silent() {
		t.Fatal("silence in the past still silent")
	}
}

func TestConcurrentHandle(t *testing.T) {
	b := New(Config{TimeScale: 50, Logger: quiet})
	mustOK(t, b, NetFnApp, CmdSetWatchdogTimer, 0x04, 0x31, 1, 0, 20, 0)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				switch (g + i) % 4 {
				case 0:
					b.Handle([]byte{NetFnApp << 2, CmdResetWatchdogTimer}, nil)
				case 1:
					b.Handle([]byte{NetFnApp << 2, CmdGetWatchdogTimer}, nil)
				case 2:
					b.Handle([]byte{NetFnStorage << 2, CmdGetSELEntry, 0, 0, 0, 0, 0, 0xFF}, nil)
				case 3:
					_ = b.Attention()
				}
			}
		}()
	}
	wg.Wait()
	if b.Stats().WatchdogResets != 200 {
		t.Fatalf("resets %d, want 200", b.Stats().WatchdogResets)
	}
}
