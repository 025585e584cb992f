package msghandler

import (
	"bytes"
	"errors"
	"testing"
)

// media maps a channel to a medium for the decoders: 0 IPMB, 1 LAN,
// 2 Async, 3 OEM, the rest nothing.
func media(ch uint8) uint8 {
	switch ch {
	case 0:
		return mediumIPMB
	case 1:
		return mediumLAN
	case 2:
		return mediumAsync
	case 3:
		return 0x60
	}
	return 0
}

func TestFormatIPMB(t *testing.T) {
	tests := []struct {
		name  string
		bcast bool
		want  []byte
	}{
		// Get Device ID to 0x72 from 0x20 LUN 2, seq 5: checksums by hand.
		{"plain", false, []byte{0x18, 0x34, 0x00, 0x72, 0x18, 0x76, 0x20, 0x16, 0x01, 0xC9}},
		{"broadcast", true, []byte{0x18, 0x34, 0x00, 0x00, 0x72, 0x18, 0x76, 0x20, 0x16, 0x01, 0xC9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := formatIPMB(0, tt.bcast, 0x72, 0, 0x06, 0x01, nil, 0x20, 2, 5)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("got % x, want % x", got, tt.want)
			}
			sm, err := ParseSendMessage(got, tt.bcast)
			if err != nil || sm.RsSA != 0x72 || sm.NetFn != 6 || sm.RqSA != 0x20 || sm.Seq != 5 || sm.RqLUN != 2 || sm.Cmd != 1 {
				t.Fatalf("parse: %+v %v", sm, err)
			}
		})
	}
}

func TestFormatLAN(t *testing.T) {
	got := formatLAN(1, 0x03, 0x81, 0, 0x06, 0x01, []byte{0xAA}, 0x41, 2, 7)
	want := []byte{0x18, 0x34, 0x01, 0x03, 0x81, 0x18, 0x67, 0x41, 0x1E, 0x01, 0xAA, 0x00}
	want[len(want)-1] = checksum(want[7 : len(want)-1])
	if !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
	if checksum(got[4:6]) != got[6] {
		t.Fatal("bad header checksum")
	}
}

func TestParseGetMessage(t *testing.T) {
	tests := []struct {
		name string
		rsp  []byte
		kind inboundKind
		err  bool
		seq  uint8
		data []byte
	}{
		{"ipmb response", []byte{0x1C, 0x33, 0, 0x00, 0x1E, 0xC6, 0x72, 0x14, 0x01, 0x00, 0x55, 0x00}, inboundIPMBResponse, false, 5, []byte{0x00, 0x55}},
		{"ipmb command", []byte{0x1C, 0x33, 0, 0x00, 0xC2, 0x1E, 0x72, 0x24, 0x05, 0x01, 0x00}, inboundIPMBCommand, false, 9, []byte{0x01}},
		{"ipmb response too short", []byte{0x1C, 0x33, 0, 0x00, 0x1E, 0xC6, 0x72, 0x14, 0x01, 0x00}, inboundDrop, true, 0, nil},
		{"lan response", []byte{0x1C, 0x33, 0, 0x41, 0x03, 0x41, 0x1C, 0x00, 0x81, 0x1C, 0x01, 0x00, 0x00}, inboundLANResponse, false, 7, []byte{0x00}},
		{"lan command too short", []byte{0x1C, 0x33, 0, 0x01, 0x03, 0x41, 0x18, 0x00, 0x81, 0x1C, 0x01}, inboundDrop, true, 0, nil},
		{"async command", []byte{0x1C, 0x33, 0, 0x02, 0x03, 0x41, 0x18, 0x00, 0x81, 0x1C, 0x01, 0x00}, inboundLANCommand, false, 7, nil},
		{"oem", []byte{0x1C, 0x33, 0, 0x03, 0xDE, 0xAD}, inboundOEM, false, 0, []byte{0xDE, 0xAD}},
		{"unknown channel", []byte{0x1C, 0x33, 0, 0x09, 0x1E, 0xC6, 0x72, 0x14, 0x01, 0x00, 0x55, 0x00}, inboundDrop, true, 0, nil},
		{"error cc", []byte{0x1C, 0x33, 0x80}, inboundDrop, true, 0, nil},
		{"not get message", []byte{0x1C, 0x35, 0, 0}, inboundDrop, true, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := parseGetMessage(tt.rsp, media)
			if (err != nil) != tt.err || (err != nil && !errors.Is(err, ErrFrame)) {
				t.Fatalf("err %v", err)
			}
			if in.kind != tt.kind || in.seq != tt.seq || !bytes.Equal(in.data, tt.data) {
				t.Fatalf("got %+v", in)
			}
		})
	}
}

// FuzzParseGetMessage: any Get Message reply decodes without panicking,
// the decoded data lies inside the reply, and an accepted IPMB command's
// automatic reply is a well-formed Send Message.
func FuzzParseGetMessage(f *testing.F) {
	f.Add([]byte{0x1C, 0x33, 0, 0x00, 0x1E, 0xC6, 0x72, 0x14, 0x01, 0x00, 0x55, 0x00})
	f.Add([]byte{0x1C, 0x33, 0, 0x00, 0xC2, 0x1E, 0x72, 0x24, 0x05, 0x01, 0x00})
	f.Add([]byte{0x1C, 0x33, 0, 0x41, 0x03, 0x41, 0x1C, 0x00, 0x81, 0x1C, 0x01, 0x00, 0x00})
	f.Add([]byte{0x1C, 0x33, 0, 0x03})
	f.Fuzz(func(t *testing.T, rsp []byte) {
		in, err := parseGetMessage(rsp, media)
		if err != nil {
			if in.kind != inboundDrop {
				t.Fatalf("error %v with kind %d", err, in.kind)
			}
			return
		}
		if len(in.data) > len(rsp) {
			t.Fatalf("data longer than the reply")
		}
		if a := in.addr(); len(a) != 8 && len(a) != 12 {
			t.Fatalf("address of %d bytes", len(a))
		}
		if in.kind == inboundIPMBCommand {
			sm, err := ParseSendMessage(in.autoReply(0x20), false)
			if err != nil || sm.Seq != in.seq&0x3F || sm.Cmd != in.cmd || !bytes.Equal(sm.Data, []byte{ccInvalidCommand}) {
				t.Fatalf("automatic reply %+v %v", sm, err)
			}
		}
	})
}

// FuzzParseSendMessage: arbitrary bytes never panic the decoder, and what
// formatIPMB builds parses back to the same fields.
func FuzzParseSendMessage(f *testing.F) {
	f.Add([]byte{0x18, 0x34, 0x00, 0x72, 0x18, 0x76, 0x20, 0x16, 0x01, 0xC9}, false, byte(0x72), byte(6), byte(1), byte(5), []byte{1})
	f.Add([]byte{0x18, 0x34, 0x00, 0x00}, true, byte(0x00), byte(0x3F), byte(0xFF), byte(63), []byte(nil))
	f.Fuzz(func(t *testing.T, raw []byte, bcast bool, sa, netfn, cmd, seq byte, data []byte) {
		if sm, err := ParseSendMessage(raw, bcast); err == nil && len(sm.Data) > len(raw) {
			t.Fatal("data longer than the message")
		}
		netfn &= 0x3F
		seq &= 0x3F
		m := formatIPMB(3, bcast, sa, 1, netfn, cmd, data, 0x20, 2, seq)
		sm, err := ParseSendMessage(m, bcast)
		if err != nil {
			t.Fatalf("own frame rejected: %v (% x)", err, m)
		}
		if sm.Channel != 3 || sm.RsSA != sa || sm.RsLUN != 1 || sm.NetFn != netfn || sm.Cmd != cmd || sm.Seq != seq ||
			sm.RqSA != 0x20 || sm.RqLUN != 2 || !bytes.Equal(sm.Data, data) && len(data)+len(sm.Data) > 0 {
			t.Fatalf("round trip %+v", sm)
		}
	})
}
