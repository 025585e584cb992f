package vmserial

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestEncode(t *testing.T) {
	tests := []struct {
		name string
		f    Frame
		want []byte
	}{
		{"get device id", Frame{Kind: KindMessage, Seq: 1, Data: []byte{0x18, 0x01}}, []byte{0x01, 0x18, 0x01, 0xE6, MsgChar}},
		{"escaped seq", Frame{Kind: KindMessage, Seq: 0xA0, Data: []byte{0x18, 0x01}}, []byte{0xAA, 0xB0, 0x18, 0x01, 0x47, MsgChar}},
		{"escaped data", Frame{Kind: KindMessage, Seq: 0, Data: []byte{0x1C, 0x01, 0x00, 0xAA, 0xA1}}, []byte{0x00, 0x1C, 0x01, 0x00, 0xAA, 0xBA, 0xAA, 0xB1, 0x98, MsgChar}},
		{"attention", Frame{Kind: KindCommand, Data: []byte{OpAttn}}, []byte{0x01, CmdChar}},
		{"version", Frame{Kind: KindCommand, Data: []byte{OpVersion, 1}}, []byte{0xFF, 0x01, CmdChar}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Encode(nil, tc.f)
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("Encode = % x, want % x", got, tc.want)
			}
			back, err := Decode(got)
			if err != nil || back.Kind != tc.f.Kind || back.Seq != tc.f.Seq || !bytes.Equal(back.Data, tc.f.Data) {
				t.Fatalf("Decode(% x) = %+v, %v", got, back, err)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		raw  []byte
		want error
	}{
		{"empty", nil, ErrNoEnd},
		{"no terminator", []byte{1, 2, 3}, ErrNoEnd},
		{"short message", []byte{0x01, 0x18, 0xE7, MsgChar}, ErrShort},
		{"bad checksum", []byte{0x01, 0x18, 0x01, 0xE7, MsgChar}, ErrChecksum},
		{"escape at end", []byte{0x01, 0x18, 0x01, 0xAA, MsgChar}, ErrEscape},
		{"double escape", []byte{0xAA, 0xAA, 0x01, CmdChar}, ErrEscape},
		{"empty command", []byte{CmdChar}, ErrShort},
		{"terminator inside", []byte{0x01, MsgChar, 0x01, CmdChar}, ErrBadFrame},
		{"too long", append(bytes.Repeat([]byte{1}, MaxBody+1), MsgChar), ErrTooLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.raw)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrBadFrame) {
				t.Fatalf("Decode(% x) error %v, want %v", tc.raw, err, tc.want)
			}
		})
	}
}

func TestReader(t *testing.T) {
	var stream []byte
	stream = Encode(stream, Frame{Kind: KindCommand, Data: []byte{OpVersion, 1}})
	stream = Encode(stream, Frame{Kind: KindCommand, Data: []byte{OpCapabilities, CapIRQ | CapAttn}})
	stream = append(stream, 0x05, 0x18, 0x01, 0x00, MsgChar) // bad checksum
	stream = Encode(stream, Frame{Kind: KindMessage, Seq: 6, Data: []byte{0x18, 0x01}})
	stream = append(stream, bytes.Repeat([]byte{7}, 3*MaxBody)...)
	stream = append(stream, MsgChar)
	stream = Encode(stream, Frame{Kind: KindMessage, Seq: 0xAA, Data: []byte{0xA0, 0x01}})
	r := NewReader(bytes.NewReader(stream))
	want := []struct {
		kind Kind
		seq  byte
		err  error
	}{{KindCommand, 0, nil}, {KindCommand, 0, nil}, {0, 0, ErrChecksum}, {KindMessage, 6, nil}, {0, 0, ErrTooLong}, {KindMessage, 0xAA, nil}}
	for i, w := range want {
		f, err := r.Next()
		if w.err != nil {
			if !errors.Is(err, w.err) {
				t.Fatalf("frame %d: error %v, want %v", i, err, w.err)
			}
			continue
		}
		if err != nil || f.Kind != w.kind || f.Seq != w.seq {
			t.Fatalf("frame %d: %+v, %v", i, f, err)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("at end: %v, want EOF", err)
	}
}

// FuzzDecode: Decode never panics, and a frame it accepts survives
// Encode → Decode unchanged.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{0x01, 0x18, 0x01, 0xE6, MsgChar})
	f.Add([]byte{0xAA, 0xB0, 0x18, 0x01, 0x47, MsgChar})
	f.Add([]byte{0xFF, 0x01, CmdChar})
	f.Add([]byte{0xAA, CmdChar})
	f.Fuzz(func(t *testing.T, raw []byte) {
		fr, err := Decode(raw)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		enc := Encode(nil, fr)
		back, err := Decode(enc)
		if err != nil || back.Kind != fr.Kind || back.Seq != fr.Seq || !bytes.Equal(back.Data, fr.Data) {
			t.Fatalf("round trip of %+v via % x: %+v, %v", fr, enc, back, err)
		}
		// The encoding holds no bare special byte but its terminator.
		for _, c := range enc[:len(enc)-1] {
			if c == MsgChar || c == CmdChar {
				t.Fatalf("unescaped terminator in % x", enc)
			}
		}
	})
}
