package ssifbmc

import (
	"io"
	"log/slog"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/ssif"
)

// FuzzTransfers drives the BMC side with arbitrary SMBus transfers: it
// must never panic, and a read never returns more than a block.
func FuzzTransfers(f *testing.F) {
	f.Add([]byte{0, ssif.CmdWrite, 2, 0x18, 0x01, 1, ssif.CmdRead, 0})
	f.Add([]byte{0, ssif.CmdWriteStart, 32, 1, ssif.CmdReadMiddle, 0, 0, ssif.CmdWriteEnd, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, ops []byte) {
		b := New(bmcsim.New(bmcsim.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}), Config{})
		buf := make([]byte, ssif.BlockMax)
		for i := 0; i+2 < len(ops); {
			kind, cmd, n := ops[i], ops[i+1], int(ops[i+2])
			i += 3
			if kind%2 == 1 {
				if c, err := b.ReadBlock(cmd, buf); err == nil && c > ssif.BlockMax {
					t.Fatalf("read of %d bytes", c)
				}
				continue
			}
			n = min(n, len(ops)-i)
			_ = b.WriteBlock(cmd, ops[i:i+n])
			i += n
		}
	})
}
