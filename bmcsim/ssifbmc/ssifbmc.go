// Package ssifbmc puts a simulated BMC (a bmcsim.Responder) behind an
// SMBus address: it implements the BMC side of SSIF (IPMI v2.0 section
// 12) as an ssif.Bus, with fault injection (NAK storms, a slow BMC,
// malformed multi-part reads, garbage), so the SSIF host and the engine
// can be tested without hardware.
//
// It behaves like QEMU's smbus-ipmi: single- and multi-part writes, reads
// that NAK until the response is ready, multi-part reads of 30 then 31
// bytes per block with block numbers from 0 and 0xFF for the last, a
// response kept until the next request, and Get System Interface
// Capabilities answered by the interface itself.
package ssifbmc

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/internal/locked"
	"github.com/ipmi-cuse/ipmi-cuse/ssif"
)

// Config sets what the BMC reports in Get System Interface Capabilities.
type Config struct {
	// Multi is the multi-part support reported (ssif.MultiNone...);
	// MultiMiddle when NoMulti is false and Multi is 0.
	Multi uint8
	// NoMulti reports single-part support only.
	NoMulti bool
	// MaxWrite and MaxRead are the sizes reported; 0 means 255.
	MaxWrite, MaxRead uint8
	// NoCaps makes the BMC answer Get System Interface Capabilities with
	// 0xC1 (invalid command), as an old BMC would.
	NoCaps bool
}

// Stats are the BMC's cumulative counters.
type Stats struct {
	Handled    uint64 // requests passed to the Responder
	Writes     uint64 // block writes (parts included)
	Reads      uint64 // block reads (parts included)
	NAKs       uint64 // transfers NAKed
	BadWrites  uint64 // writes refused as malformed
	MultiReads uint64 // multi-part responses started
}

// Garbage selects malformed responses.
type Garbage struct {
	// ShortMiddle sends the first middle block of the next multi-part
	// responses with 20 bytes instead of 31.
	ShortMiddle int
	// WrongBlock numbers the first middle block of the next multi-part
	// responses 5 instead of 0.
	WrongBlock int
	// Overlong makes the next multi-part responses never send the 0xFF
	// block (they go on with 31-byte blocks).
	Overlong int
	// Random replaces the bytes of the next reads with random ones.
	Random int
	// Seed seeds Random.
	Seed uint64
}

// BMC is the BMC side of an SSIF interface. It implements ssif.Bus and is
// safe for concurrent use.
type BMC struct {
	mu  sync.Mutex
	r   bmcsim.Responder
	cfg Config

	in       []byte
	inOpen   bool // a multi-part write is in progress
	out      []byte
	outAt    time.Time // when the response is ready
	block    int       // next middle block to send (0-based); -1 before the first part
	started  bool      // the first part of a multi-part response was read
	overlong bool      // this response's middle blocks never end

	latency   time.Duration
	nakWrites int
	nakReads  int
	nakUntil  time.Time
	silent    bool
	garbage   Garbage
	rng       *rand.Rand
	stats     Stats
	respBuf   [1024]byte
}

// New returns a BMC answering through r.
func New(r bmcsim.Responder, cfg Config) *BMC {
	if cfg.MaxWrite == 0 {
		cfg.MaxWrite = 255
	}
	if cfg.MaxRead == 0 {
		cfg.MaxRead = 255
	}
	if cfg.Multi == 0 && !cfg.NoMulti {
		cfg.Multi = ssif.MultiMiddle
	}
	if cfg.NoMulti {
		cfg.Multi = ssif.MultiNone
	}
	return &BMC{r: r, cfg: cfg}
}

var _ ssif.Bus = (*BMC)(nil)

func (b *BMC) nak(now time.Time) bool {
	if b.silent || now.Before(b.nakUntil) {
		b.stats.NAKs++
		return true
	}
	return false
}

// countedNAK uses up one of the NAKs that NAKWrites or NAKReads asked for
// (*left of them remain) and reports whether this transfer gets it.
func (b *BMC) countedNAK(left *int) bool {
	if *left <= 0 {
		return false
	}
	*left--
	b.stats.NAKs++
	return true
}

// WriteBlock implements ssif.Bus.
func (b *BMC) WriteBlock(cmd uint8, data []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.stats.Writes++
	if b.countedNAK(&b.nakWrites) {
		return ssif.ErrNAK
	}
	if b.nak(now) {
		return ssif.ErrNAK
	}
	if len(data) > ssif.BlockMax {
		b.stats.BadWrites++
		return ssif.ErrNAK
	}
	switch cmd {
	case ssif.CmdWrite:
		if len(data) < 2 {
			b.stats.BadWrites++
			return ssif.ErrNAK
		}
		b.in = append(b.in[:0], data...)
		b.inOpen = false
		b.handle(now)
	case ssif.CmdWriteStart:
		if len(data) < 2 || b.cfg.Multi == ssif.MultiNone {
			b.stats.BadWrites++
			return ssif.ErrNAK
		}
		b.in = append(b.in[:0], data...)
		b.inOpen = true
		b.out = nil // a new request drops the old response
	case ssif.CmdWriteMiddle, ssif.CmdWriteEnd:
		if !b.inOpen || len(b.in)+len(data) > int(b.cfg.MaxWrite) || (cmd == ssif.CmdWriteMiddle && b.cfg.Multi != ssif.MultiMiddle) {
			b.inOpen = false
			b.stats.BadWrites++
			return ssif.ErrNAK
		}
		b.in = append(b.in, data...)
		if cmd == ssif.CmdWriteEnd {
			b.inOpen = false
			b.handle(now)
		}
	default:
		b.stats.BadWrites++
		return ssif.ErrNAK
	}
	return nil
}

// handle answers the request in b.in; the response is ready after the
// latency and the Responder's own delay.
func (b *BMC) handle(now time.Time) {
	req := b.in
	var rsp []byte
	if len(req) >= 2 && req[0]>>2 == 0x06 && req[1] == 0x57 {
		rsp = append(b.respBuf[:0], 0x07<<2|req[0]&3, 0x57)
		switch {
		case b.cfg.NoCaps:
			rsp = append(rsp, 0xC1)
		case len(req) < 3:
			rsp = append(rsp, 0xC7)
		case req[2]&0x0F != 0:
			rsp = append(rsp, 0xCC)
		default:
			rsp = append(rsp, 0, 0, b.cfg.Multi<<6, b.cfg.MaxWrite, b.cfg.MaxRead)
		}
	} else {
		b.stats.Handled++
		rsp = b.r.Handle(req, b.respBuf[:0])
	}
	if len(rsp) > int(b.cfg.MaxRead) {
		rsp = append(rsp[:2:2], 0xCA) // cannot return the requested number of bytes
	}
	b.out = append([]byte(nil), rsp...)
	d := b.latency
	if f, ok := b.r.(bmcsim.Faulty); ok {
		d += f.ResponseDelay()
		if f.Silent() {
			b.out = nil
		}
	}
	b.outAt = now.Add(d)
	b.block, b.started = 0, false
}

// ReadBlock implements ssif.Bus.
func (b *BMC) ReadBlock(cmd uint8, buf []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.stats.Reads++
	if b.countedNAK(&b.nakReads) {
		return 0, ssif.ErrNAK
	}
	if b.nak(now) || b.out == nil || now.Before(b.outAt) {
		b.stats.NAKs++
		return 0, ssif.ErrNAK
	}
	var blk []byte
	switch cmd {
	case ssif.CmdRead:
		b.block, b.started, b.overlong = 0, false, false
		if len(b.out) <= ssif.BlockMax {
			blk = b.out
			break
		}
		b.stats.MultiReads++
		b.started = true
		blk = append([]byte{0x00, 0x01}, b.out[:30]...)
	case ssif.CmdReadMiddle:
		if !b.started {
			b.stats.NAKs++
			return 0, ssif.ErrNAK
		}
		blk = b.middle()
		if blk == nil {
			b.stats.NAKs++
			return 0, ssif.ErrNAK
		}
	default:
		b.stats.NAKs++
		return 0, ssif.ErrNAK
	}
	n := copy(buf, blk)
	if b.garbage.Random > 0 {
		b.garbage.Random--
		for i := range buf[:n] {
			buf[i] = uint8(b.rng.Uint32())
		}
		n = int(b.rng.Uint32() % (ssif.BlockMax + 1))
	}
	return n, nil
}

// middle returns the next middle block, with the injected faults.
func (b *BMC) middle() []byte {
	pos := 30 + b.block*31
	num := uint8(b.block)
	first := b.block == 0
	b.block++
	if first && b.garbage.Overlong > 0 {
		b.garbage.Overlong--
		b.overlong = true
	}
	if b.overlong {
		return append([]byte{num}, make([]byte, 31)...)
	}
	if pos >= len(b.out) {
		return nil
	}
	data := b.out[pos:]
	if len(data) > 31 {
		data = data[:31]
	} else {
		num = 0xFF
	}
	if first && b.garbage.WrongBlock > 0 && num != 0xFF {
		b.garbage.WrongBlock--
		num = 5
	}
	if first && b.garbage.ShortMiddle > 0 && num != 0xFF {
		b.garbage.ShortMiddle--
		data = data[:20]
	}
	return append([]byte{num}, data...)
}

// Stats returns the counters.
func (b *BMC) Stats() Stats { return locked.Get(&b.mu, &b.stats) }

// SetLatency makes every response ready d after its request; reads NAK
// meanwhile, as a busy BMC's do.
func (b *BMC) SetLatency(d time.Duration) { locked.Set(&b.mu, &b.latency, d) }

// NAKWrites NAKs the next n writes.
func (b *BMC) NAKWrites(n int) { locked.Set(&b.mu, &b.nakWrites, n) }

// NAKReads NAKs the next n reads (on top of the latency).
func (b *BMC) NAKReads(n int) { locked.Set(&b.mu, &b.nakReads, n) }

// NAKFor NAKs every transfer until d from now: a NAK storm.
func (b *BMC) NAKFor(d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nakUntil = time.Now().Add(d)
}

// Silence NAKs every transfer until ClearFaults.
func (b *BMC) Silence() { locked.Set(&b.mu, &b.silent, true) }

// SetGarbage injects malformed responses.
func (b *BMC) SetGarbage(g Garbage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.garbage = g
	b.rng = bmcsim.FaultRand(g.Seed)
}

// ClearFaults ends every fault.
func (b *BMC) ClearFaults() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.latency, b.nakWrites, b.nakReads, b.nakUntil, b.silent = 0, 0, 0, time.Time{}, false
	b.garbage, b.overlong = Garbage{}, false
}
