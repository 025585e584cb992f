package bt_test

import (
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bt"
)

// scriptPort serves register reads from a fuzzer's bytes (then zeros) and
// ignores writes: a BMC that says anything at all.
type scriptPort struct {
	data []byte
	pos  int
}

func (p *scriptPort) next() uint8 {
	if p.pos >= len(p.data) {
		return 0
	}
	p.pos++
	return p.data[p.pos-1]
}

func (p *scriptPort) ReadCtrl() (uint8, error)    { return p.next(), nil }
func (p *scriptPort) WriteCtrl(uint8) error       { return nil }
func (p *scriptPort) ReadBuf() (uint8, error)     { return p.next(), nil }
func (p *scriptPort) WriteBuf(uint8) error        { return nil }
func (p *scriptPort) ReadIntMask() (uint8, error) { return p.next(), nil }
func (p *scriptPort) WriteIntMask(uint8) error    { return nil }

// FuzzTransact feeds arbitrary register contents to the host: it must
// never panic, must end by the deadline, and a success must be a response
// to the request sent (netfn response bit, same command, a completion code).
func FuzzTransact(f *testing.F) {
	f.Add([]byte{0x00, 0x00, 0x08, 0x08, 0x00, 0x05, 0x1C, 0x00, 0x01, 0x00, 0x20})
	f.Add([]byte{0x80, 0x80, 0x80})
	f.Add([]byte{0x08, 0x08, 0x02, 0x1C, 0x00})
	f.Add([]byte{0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, data []byte) {
		h := bt.New(&scriptPort{data: data}, bt.Config{Logger: quiet, ResponseTimeout: 2 * time.Millisecond, TransactionTimeout: 10 * time.Millisecond})
		start := time.Now()
		resp, err := h.Transact(getDeviceID, make([]byte, 0, 300), time.Time{})
		if el := time.Since(start); el > 2*time.Second {
			t.Fatalf("took %v with a 10ms transaction timeout", el)
		}
		if err == nil {
			if len(resp) < 3 || resp[1] != 0x01 || resp[0]&0xF8 != getDeviceID[0]&0xF8 {
				t.Fatalf("success with a response not to the request: % x", resp)
			}
		}
	})
}

// FuzzParseCaps: any bytes decode or fail cleanly, and a decoded response
// keeps its fields.
func FuzzParseCaps(f *testing.F) {
	f.Add([]byte{0x1C, 0x36, 0, 1, 64, 64, 5, 2})
	f.Add([]byte{0x1C, 0x36, 0xC1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := bt.ParseCaps(b)
		if err == nil && (!c.Known || c.InputSize != b[4] || c.Retries != int(b[7])) {
			t.Fatalf("ParseCaps(% x) = %+v", b, c)
		}
	})
}
