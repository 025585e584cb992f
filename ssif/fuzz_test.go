package ssif_test

import (
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/ssif"
)

// scriptBus answers reads from a fuzzer's bytes: each read takes a count
// byte (values over 32 and 0xFE/0xFF are a NAK) and that many bytes; writes
// succeed.
type scriptBus struct {
	data []byte
	pos  int
}

func (b *scriptBus) WriteBlock(uint8, []byte) error { return nil }

func (b *scriptBus) ReadBlock(cmd uint8, buf []byte) (int, error) {
	if b.pos >= len(b.data) {
		return 0, ssif.ErrNAK
	}
	n := int(b.data[b.pos])
	b.pos++
	if n > ssif.BlockMax {
		return 0, ssif.ErrNAK
	}
	end := min(b.pos+n, len(b.data))
	c := copy(buf, b.data[b.pos:end])
	b.pos = end
	return c, nil
}

// FuzzTransact feeds arbitrary BMC answers to the host: it must not panic,
// must end within its bounds, and a success must carry at least netfn, cmd
// and a completion code, never more than 272 bytes.
func FuzzTransact(f *testing.F) {
	f.Add([]byte{3, 0x1C, 0x01, 0x00})
	f.Add(append(append([]byte{32, 0x00, 0x01}, make([]byte, 30)...), 5, 0xFF, 1, 2, 3, 4))
	f.Add(append(append([]byte{32, 0x00, 0x01}, make([]byte, 30)...), 32, 0x00))
	f.Add([]byte{0xFF, 0xFF, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		h := ssif.New(&scriptBus{data: data}, ssif.Config{Logger: quiet, ReadRetries: 20, Sleep: func(time.Duration) {}, FirstReadDelay: -1})
		start := time.Now()
		resp, err := h.Transact([]byte{0x06 << 2, 0x01}, nil, time.Now().Add(time.Second))
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("took %v", el)
		}
		if err == nil && (len(resp) < 3 || len(resp) > ssif.MaxMessage) {
			t.Fatalf("success with %d bytes: % x", len(resp), resp)
		}
	})
}

// FuzzParseCaps: any bytes decode or fail cleanly, and the limits never
// exceed what the multi-part support allows.
func FuzzParseCaps(f *testing.F) {
	f.Add([]byte{0x1C, 0x57, 0, 0, 0x80, 255, 255})
	f.Add([]byte{0x1C, 0x57, 0, 0, 0x00, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, _ := ssif.ParseCaps(b)
		limit := map[uint8]int{ssif.MultiNone: 32, ssif.MultiStartEnd: 64, ssif.MultiMiddle: ssif.MaxMessage}[c.Multi]
		if c.MaxWrite < 1 || c.MaxWrite > limit || c.MaxRead < 1 || c.MaxRead > limit {
			t.Fatalf("ParseCaps(% x) = %+v", b, c)
		}
	})
}
