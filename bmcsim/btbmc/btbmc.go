// Package btbmc puts a simulated BMC (a bmcsim.Responder) behind the BT
// registers: it implements the BMC side of the Block Transfer interface
// (IPMI v2.0 section 11) as a bt.Port, with fault injection, so the BT host
// state machine and the engine can be tested against latency, silence,
// garbage, stale and malformed responses and a BMC stuck busy, without
// hardware.
//
// Like kcsbmc there are no goroutines: time is simulated on each register
// access. When the host sets H2B_ATN the BMC takes the request at once
// (B_BUSY set) and posts the response, with B2H_ATN, at the first access
// after the injected latency. It answers Get BT Interface Capabilities
// itself, as QEMU's isa-ipmi-bt does, and, like QEMU's, ignores a request
// whose length byte does not match what was written, staying busy.
package btbmc

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/internal/locked"
	"github.com/ipmi-cuse/ipmi-cuse/bt"
)

// Config sets what the BMC reports in Get BT Interface Capabilities.
type Config struct {
	// InputSize and OutputSize are the buffer sizes reported (length byte
	// included); 0 means 255.
	InputSize, OutputSize uint8
	// ResponseTime is the request-to-response time reported, in whole
	// seconds; 0 means 5 s.
	ResponseTime time.Duration
	// Retries is the number of retries recommended.
	Retries uint8
}

// Stats are the BMC's cumulative counters.
type Stats struct {
	Handled   uint64 // requests passed to the Responder
	Caps      uint64 // Get BT Interface Capabilities answered by the adapter
	Ignored   uint64 // requests ignored (length mismatch, too short, silent)
	CtrlReads uint64 // control register reads
	BufReads  uint64 // buffer reads
	Writes    uint64 // register writes
}

// Garbage describes a garbage fault: selected register reads return random
// bytes (buffer reads still advance the pointer).
type Garbage struct {
	// Ctrl and Buf select the registers whose reads are garbled.
	Ctrl, Buf bool
	// Count is how many garbled reads to serve; 0 means no limit.
	Count int
	// Seed seeds the random bytes, for reproducible tests.
	Seed uint64
}

// BMC is the BMC side of a BT interface. It implements bt.Port and is safe
// for concurrent use: tests inject faults from other goroutines while the
// host polls.
type BMC struct {
	mu  sync.Mutex
	r   bmcsim.Responder
	cfg Config

	b2hAtn, smsAtn, hBusy, bBusy bool
	intmask                      uint8
	lastAtt                      bool

	in    [300]byte
	inLen int
	out   []byte
	rdPos int

	pending   []byte // response waiting for its time
	pendingAt time.Time

	latency     time.Duration
	silent      bool
	stuckBusy   bool
	stale       int // next responses preceded by one with a wrong sequence number
	badLen      int // next responses sent with length byte 2
	garbage     Garbage
	garbageLeft int
	rng         *rand.Rand
	stats       Stats
	staleQueue  []byte
	respBuf     [1024]byte
}

// New returns an idle BMC answering through r.
func New(r bmcsim.Responder, cfg Config) *BMC {
	if cfg.InputSize == 0 {
		cfg.InputSize = 255
	}
	if cfg.OutputSize == 0 {
		cfg.OutputSize = 255
	}
	if cfg.ResponseTime == 0 {
		cfg.ResponseTime = 5 * time.Second
	}
	return &BMC{r: r, cfg: cfg}
}

var _ bt.Port = (*BMC)(nil)

// ReadCtrl implements bt.Port.
func (b *BMC) ReadCtrl() (uint8, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(time.Now())
	b.stats.CtrlReads++
	if b.garbled(b.garbage.Ctrl) {
		return uint8(b.rng.Uint32()), nil
	}
	var c uint8
	if b.b2hAtn {
		c |= bt.B2HAtn
	}
	if b.smsAtn {
		c |= bt.SMSAtn
	}
	if b.hBusy {
		c |= bt.HBusy
	}
	if b.bBusy || b.stuckBusy {
		c |= bt.BBusy
	}
	return c, nil
}

// WriteCtrl implements bt.Port.
func (b *BMC) WriteCtrl(v uint8) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.advance(now)
	b.stats.Writes++
	if v&bt.ClrWrPtr != 0 {
		b.inLen = 0
	}
	if v&bt.ClrRdPtr != 0 {
		b.rdPos = 0
	}
	if v&bt.B2HAtn != 0 {
		b.b2hAtn = false
	}
	if v&bt.SMSAtn != 0 {
		b.smsAtn = false
	}
	if v&bt.HBusy != 0 {
		b.hBusy = !b.hBusy
	}
	if v&bt.H2BAtn != 0 {
		b.request(now)
	}
	return nil
}

// ReadBuf implements bt.Port.
func (b *BMC) ReadBuf() (uint8, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(time.Now())
	b.stats.BufReads++
	v := uint8(0xFF)
	if b.rdPos < len(b.out) {
		v = b.out[b.rdPos]
		b.rdPos++
	}
	if b.garbled(b.garbage.Buf) {
		v = uint8(b.rng.Uint32())
	}
	return v, nil
}

// WriteBuf implements bt.Port.
func (b *BMC) WriteBuf(v uint8) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.Writes++
	if b.inLen < len(b.in) {
		b.in[b.inLen] = v
	}
	b.inLen++
	return nil
}

// ReadIntMask implements bt.Port.
func (b *BMC) ReadIntMask() (uint8, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.intmask, nil
}

// WriteIntMask implements bt.Port: B2H_IRQ_EN is kept, B2H_IRQ written as
// 1 clears the interrupt.
func (b *BMC) WriteIntMask(v uint8) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stats.Writes++
	b.intmask = b.intmask&^bt.B2HIrqEn | v&bt.B2HIrqEn
	if v&bt.B2HIrq != 0 {
		b.intmask &^= bt.B2HIrq
	}
	return nil
}

// request takes the request in the buffer (H2B_ATN).
func (b *BMC) request(now time.Time) {
	b.bBusy = true
	n := b.inLen
	if n < 4 || n > len(b.in) || int(b.in[0]) != n-1 || b.silent {
		// QEMU ignores such a request and stays busy.
		b.stats.Ignored++
		return
	}
	netfn, seq, cmd := b.in[1], b.in[2], b.in[3]
	var rsp []byte
	if netfn>>2 == 0x06 && cmd == 0x36 {
		b.stats.Caps++
		rsp = append(b.respBuf[:0], 9, netfn|0x04, seq, cmd, 0, 1, b.cfg.InputSize, b.cfg.OutputSize,
			uint8(b.cfg.ResponseTime/time.Second), b.cfg.Retries)
	} else {
		b.stats.Handled++
		req := append([]byte{netfn, cmd}, b.in[4:n]...)
		r := b.r.Handle(req, b.respBuf[512:512])
		// r = netfn, cmd, cc, data; the frame is len, netfn, seq, cmd, cc, data.
		rsp = append(b.respBuf[:0], byte(len(r)+1), r[0], seq)
		rsp = append(rsp, r[1:]...)
		if len(rsp) > int(b.cfg.OutputSize) {
			rsp = append(rsp[:0], 4, r[0], seq, r[1], 0xCA) // cannot return the requested bytes
		}
	}
	if b.badLen > 0 {
		b.badLen--
		rsp = append(rsp[:0:0], 2, rsp[1], rsp[2])
	}
	b.pending = append([]byte(nil), rsp...)
	if b.stale > 0 {
		b.stale--
		s := append([]byte(nil), rsp...)
		s[2] ^= 0x80 // a sequence number from long ago
		b.staleQueue, b.pending = b.pending, s
	}
	d := b.latency
	if fd, ok := b.r.(bmcsim.Faulty); ok {
		d += fd.ResponseDelay()
	}
	b.pendingAt = now.Add(d)
}

// advance posts a pending response once its time has come and the host is
// not reading the previous one, and raises SMS_ATN on a new attention.
func (b *BMC) advance(now time.Time) {
	att := b.r.Attention()
	if att && !b.lastAtt {
		b.smsAtn = true
	}
	b.lastAtt = att
	if b.pending == nil || now.Before(b.pendingAt) || b.b2hAtn || b.hBusy {
		return
	}
	b.out, b.rdPos = b.pending, 0
	b.pending = nil
	b.b2hAtn = true
	b.bBusy = false
	if b.staleQueue != nil {
		b.pending, b.staleQueue = b.staleQueue, nil
		b.pendingAt = now
	}
}

func (b *BMC) garbled(sel bool) bool {
	if !sel || b.rng == nil {
		return false
	}
	if b.garbage.Count > 0 {
		if b.garbageLeft == 0 {
			return false
		}
		b.garbageLeft--
	}
	return true
}

// Stats returns the counters.
func (b *BMC) Stats() Stats { return locked.Get(&b.mu, &b.stats) }

// SetLatency delays every response by d (on top of the Responder's own
// ResponseDelay); B_BUSY stays set meanwhile.
func (b *BMC) SetLatency(d time.Duration) { locked.Set(&b.mu, &b.latency, d) }

// Silence makes the BMC take requests (B_BUSY) and never answer them,
// until Reset or ClearFaults.
func (b *BMC) Silence() { locked.Set(&b.mu, &b.silent, true) }

// StuckBusy keeps B_BUSY set (as during a firmware update) until cleared.
func (b *BMC) StuckBusy(on bool) { locked.Set(&b.mu, &b.stuckBusy, on) }

// StaleResponses precedes each of the next n responses with a copy whose
// sequence number is wrong, as a late answer to an earlier request.
func (b *BMC) StaleResponses(n int) { locked.Set(&b.mu, &b.stale, n) }

// BadLength sends each of the next n responses with a length byte of 2.
func (b *BMC) BadLength(n int) { locked.Set(&b.mu, &b.badLen, n) }

// SetGarbage garbles register reads as g says.
func (b *BMC) SetGarbage(g Garbage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.garbage = g
	b.garbageLeft = g.Count
	b.rng = bmcsim.FaultRand(g.Seed)
}

// ClearFaults ends every fault (a silent or length-confused BMC becomes
// idle again, dropping what it held).
func (b *BMC) ClearFaults() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.latency, b.silent, b.stuckBusy, b.stale, b.badLen = 0, false, false, 0, 0
	b.garbage, b.rng = Garbage{}, nil
	if b.pending == nil && !b.b2hAtn {
		b.bBusy = false
	}
}
