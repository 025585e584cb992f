package kcs_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/kcs"
)

// garbagePort answers status and data reads with fuzz-provided bytes (in
// turn, cycling) and ignores writes: the worst BMC there is.
type garbagePort struct {
	b []byte
	i int
}

func (p *garbagePort) next() uint8 {
	if len(p.b) == 0 {
		return 0
	}
	v := p.b[p.i%len(p.b)]
	p.i++
	return v
}

func (p *garbagePort) ReadStatus() (uint8, error) { return p.next(), nil }
func (p *garbagePort) ReadData() (uint8, error)   { return p.next(), nil }
func (p *garbagePort) WriteCommand(uint8) error   { return nil }
func (p *garbagePort) WriteData(uint8) error      { return nil }

// FuzzTransactGarbagePort checks that whatever the registers read,
// Transact returns in bounded time, with at most 272 bytes and either no
// error or a typed one, and never panics.
func FuzzTransactGarbagePort(f *testing.F) {
	f.Add([]byte{0x00}, uint8(0))
	f.Add([]byte{0xFF}, uint8(3))
	f.Add([]byte{0x80, 0x00, 0x80, 0x00, 0x80, 0x00, 0x41, 0x1c, 0x41, 0x01, 0x41, 0x00, 0x00}, uint8(0))
	f.Add([]byte{0x41, 0x55}, uint8(0)) // READ|OBF forever: an endless response
	f.Add([]byte{0xC0, 0x02, 0x41, 0x03, 0x00}, uint8(10))
	f.Fuzz(func(t *testing.T, regs []byte, dataLen uint8) {
		const tt = 20 * time.Millisecond
		h := kcs.New(&garbagePort{b: regs}, kcs.Config{
			WaitTimeout: 2 * time.Millisecond, TransactionTimeout: tt, ErrorStatusWait: time.Millisecond,
			SpinFor: time.Microsecond, MinSleep: time.Microsecond, MaxSleep: 100 * time.Microsecond,
		})
		req := make([]byte, 2+int(dataLen))
		req[0], req[1] = 0x06<<2, 0x01
		start := time.Now()
		for range 2 { // the second one starts from whatever the first left
			resp, err := h.Transact(req, make([]byte, 0, kcs.MaxResponse), time.Time{})
			if len(resp) > kcs.MaxResponse {
				t.Fatalf("response of %d bytes", len(resp))
			}
			if err != nil && !typed(err) && !errors.Is(err, kcs.ErrResponseTooShort) {
				t.Fatalf("untyped error %v", err)
			}
		}
		if d := time.Since(start); d > 2*tt+slack {
			t.Fatalf("two transactions took %v", d)
		}
	})
}
