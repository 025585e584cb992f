package bmcsim

import (
	"testing"
	"time"
)

// ipmbRequest builds Send Message data for channel 0: the IPMB frame from
// the BMC (20h, SMS LUN 2) to rsSA.
func ipmbRequest(rsSA, netfn, cmd, seq byte, data ...byte) []byte {
	hdr := []byte{rsSA, netfn << 2}
	body := append([]byte{0x20, seq<<2 | 2, cmd}, data...)
	f := append([]byte{0x00}, hdr...)
	f = append(f, zeroChecksum(hdr))
	f = append(f, body...)
	return append(f, zeroChecksum(body))
}

func TestBridging(t *testing.T) {
	tests := []struct {
		name    string
		netfn   byte
		cmd     byte
		corrupt bool
		wantCC  byte // satellite's completion code
		wantLen int  // response data bytes after cc
		silent  bool
	}{
		{name: "get device id", netfn: NetFnApp, cmd: CmdGetDeviceID, wantCC: 0, wantLen: 11},
		{name: "other command", netfn: NetFnStorage, cmd: CmdGetSELInfo, wantCC: 0xC1},
		{name: "bad checksum dropped", netfn: NetFnApp, cmd: CmdGetDeviceID, corrupt: true, silent: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, c := newManual(t)
			req := ipmbRequest(0x72, tc.netfn, tc.cmd, 7)
			if tc.corrupt {
				req[len(req)-1]++
			}
			mustOK(t, b, NetFnApp, CmdSendMessage, req...)
			c.Advance(0)
			if tc.silent {
				if b.Attention() {
					t.Fatal("answer to a corrupt frame")
				}
				return
			}
			if f := mustOK(t, b, NetFnApp, CmdGetMessageFlags); f[0] != FlagReceiveMessage {
				t.Fatalf("flags %#x", f[0])
			}
			m := mustOK(t, b, NetFnApp, CmdGetMessage)
			// channel, netFn/rqLUN, chk1, rsSA, rqSeq/rsLUN, cmd, cc, data, chk2
			if len(m) != 8+tc.wantLen {
				t.Fatalf("message % x: %d bytes", m, len(m))
			}
			if m[0] != 0 || m[1] != (tc.netfn|1)<<2|2 || zeroChecksum([]byte{0x20, m[1]}) != m[2] {
				t.Fatalf("header % x", m[:3])
			}
			if m[3] != 0x72 || m[4] != 7<<2 || m[5] != tc.cmd || m[6] != tc.wantCC || zeroChecksum(m[3:]) != 0 {
				t.Fatalf("body % x", m[3:])
			}
			if b.Attention() {
				t.Fatal("attention after the queue drained")
			}
		})
	}
}

func TestBridgingDelayAndSilence(t *testing.T) {
	b, c := newManual(t)
	if err := b.SetSatelliteDelay(0x72, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.SetSatelliteDelay(0x74, time.Second); err == nil {
		t.Fatal("delay for an absent satellite accepted")
	}
	mustOK(t, b, NetFnApp, CmdSendMessage, ipmbRequest(0x72, NetFnApp, CmdGetDeviceID, 1)...)
	c.Advance(1900 * time.Millisecond)
	if b.Attention() {
		t.Fatal("answer before the satellite's delay")
	}
	c.Advance(100 * time.Millisecond)
	if !b.Attention() {
		t.Fatal("no answer after the satellite's delay")
	}
	mustOK(t, b, NetFnApp, CmdGetMessage)
	if err := b.SetSatelliteSilent(0x72, true); err != nil {
		t.Fatal(err)
	}
	mustOK(t, b, NetFnApp, CmdSendMessage, ipmbRequest(0x72, NetFnApp, CmdGetDeviceID, 2)...)
	c.Advance(time.Minute)
	if b.Attention() {
		t.Fatal("silent satellite answered")
	}
	if got := b.Stats().Bridged; got != 2 {
		t.Fatalf("bridged %d", got)
	}
	// A pending answer is lost by a BMC reset.
	_ = b.SetSatelliteSilent(0x72, false)
	mustOK(t, b, NetFnApp, CmdSendMessage, ipmbRequest(0x72, NetFnApp, CmdGetDeviceID, 3)...)
	mustOK(t, b, NetFnApp, CmdWarmReset)
	c.Advance(time.Minute)
	if b.Attention() {
		t.Fatal("answer survived a BMC reset")
	}
}

func TestNoSatellites(t *testing.T) {
	b := New(Config{Clock: NewManualClock(t0), Satellites: []byte{}, Logger: quiet})
	if cc, _ := do(t, b, NetFnApp, CmdSendMessage, ipmbRequest(0x72, NetFnApp, CmdGetDeviceID, 1)...); cc != CCNAKOnWrite {
		t.Fatalf("cc %#x, want NAK", cc)
	}
}

// FuzzHandle: random requests never panic, and every request of two or
// more bytes gets a response with netfn|1, the same LUN and command, and a
// completion code.
func FuzzHandle(f *testing.F) {
	f.Add([]byte{NetFnApp << 2, CmdGetDeviceID})
	f.Add([]byte{NetFnApp << 2, CmdSetWatchdogTimer, 4, 0x31, 1, 0, 20, 0})
	f.Add([]byte{NetFnStorage << 2, CmdGetSDR, 0, 0, 0, 0, 0, 5})
	f.Add([]byte{NetFnStorage << 2, CmdReadFRUData, 0, 0, 0, 16})
	f.Add(append([]byte{NetFnApp << 2, CmdSendMessage}, ipmbRequest(0x72, NetFnApp, CmdGetDeviceID, 1)...))
	f.Add([]byte{NetFnSensor << 2, CmdPlatformEvent, 0x41, 4, 1, 1, 1, 0x57})
	b := New(Config{Clock: NewManualClock(t0), Logger: quiet})
	f.Fuzz(func(t *testing.T, req []byte) {
		rsp := b.Handle(req, nil)
		if len(rsp) < 3 {
			t.Fatalf("response % x too short", rsp)
		}
		if len(req) >= 2 && (rsp[0] != req[0]|0x04 || rsp[1] != req[1]) {
			t.Fatalf("request % x: response header % x", req, rsp[:2])
		}
		if rsp[2] != 0 && len(rsp) != 3 {
			t.Fatalf("error %#x with data % x", rsp[2], rsp[3:])
		}
	})
}
