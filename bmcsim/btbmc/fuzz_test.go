package btbmc

import (
	"io"
	"log/slog"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bt"
)

// FuzzRegisters drives the BMC side with arbitrary register accesses (a
// host gone wrong): it must never panic, and the buffer never returns
// more than a frame.
func FuzzRegisters(f *testing.F) {
	// A well-formed Get Device ID: clear the write pointer, write the
	// frame, H2B_ATN, then read.
	f.Add([]byte{0x10, bt.ClrWrPtr, 0x11, 4, 0x11, 0x18, 0x11, 0, 0x11, 0x01, 0x10, bt.H2BAtn, 0x00, 0x10, bt.ClrRdPtr, 0x12, 0x12, 0x12})
	f.Add([]byte{0x11, 0xFF, 0x10, bt.H2BAtn, 0x10, bt.HBusy, 0x13, 0x02})
	f.Fuzz(func(t *testing.T, ops []byte) {
		b := New(bmcsim.New(bmcsim.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}), Config{})
		for i := 0; i+1 < len(ops); i += 2 {
			op, v := ops[i], ops[i+1]
			switch op % 6 {
			case 0:
				_ = b.WriteCtrl(v)
			case 1:
				_ = b.WriteBuf(v)
			case 2:
				_, _ = b.ReadBuf()
			case 3:
				_ = b.WriteIntMask(v)
			case 4:
				_, _ = b.ReadCtrl()
			case 5:
				_, _ = b.ReadIntMask()
			}
		}
		if len(b.out) > bt.MaxFrame {
			t.Fatalf("response of %d bytes", len(b.out))
		}
	})
}
