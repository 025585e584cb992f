// Package kcsbmc puts a simulated BMC (a bmcsim.Responder) behind the KCS
// registers: it implements the BMC side of the KCS state machine (IPMI v2.0
// section 9.15) as a kcs.Port, with fault injection, so the host state
// machine and the engine can be tested against latency, silence, errors,
// garbage and resets without hardware.
//
// There are no goroutines: time is simulated on each register access. A
// host write sets IBF; the BMC "takes" the byte (clears IBF and acts on it)
// at the first access after the injected per-byte latency has elapsed.
package kcsbmc

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/internal/locked"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
)

// MaxRequest is the size of the BMC's request buffer; a longer request
// puts the interface in the ERROR state with a length error.
const MaxRequest = kcs.MaxRequest

// Stats are the BMC's cumulative counters.
type Stats struct {
	Handled     uint64 // complete requests passed to the Responder
	Resets      uint64 // interface resets (Reset, ResetAfterWrites)
	Errors      uint64 // entries into the ERROR state
	Aborts      uint64 // GET_STATUS/ABORT commands taken
	StatusReads uint64 // host status register reads
	DataReads   uint64 // host data register reads
	Writes      uint64 // host command and data register writes
}

// Garbage describes a garbage fault: selected register reads return
// random bytes (data reads still consume the real byte).
type Garbage struct {
	// Status and Data select the registers whose reads are garbled.
	Status, Data bool
	// Count is how many garbled reads to serve; 0 means no count limit.
	Count int
	// Until ends the fault at this time; zero means no time limit. The
	// fault ends at whichever limit comes first; with both Count and Until
	// zero it lasts until ClearFaults.
	Until time.Time
	// Seed seeds the random bytes, for reproducible tests.
	Seed uint64
}

// BMC is the BMC side of a KCS interface. It implements kcs.Port and is
// safe for concurrent use: tests inject faults from other goroutines while
// the host polls.
type BMC struct {
	mu sync.Mutex
	r  bmcsim.Responder

	state   kcs.State
	cd      bool // last host write was to the command register
	ibf     bool // host input pending
	inCmd   bool // pending input went to the command register
	in      uint8
	inAt    time.Time // when the BMC takes the pending input
	obf     bool
	out     uint8
	outAt   time.Time // when the byte in out becomes visible
	errCode uint8

	req      [MaxRequest]byte
	reqLen   int
	writeEnd bool // WRITE_END seen: the next data byte is the last
	abortSeq bool // in the GET_STATUS/ABORT sequence (expects 0x00, then READ)
	errRead  bool // error status byte sent; the next READ ends the sequence
	resp     []byte
	respPos  int
	respBuf  [1024]byte

	// faults
	byteLatency time.Duration
	msgLatency  time.Duration
	silent      bool
	silentUntil time.Time // zero: until cleared
	failWrites  int       // remaining WRITE_STARTs that go to ERROR (<0: all)
	failCode    uint8
	garbage     Garbage
	garbageOn   bool
	rng         *rand.Rand
	resetAfter  int // reset on this host write (0: off)
	stats       Stats
}

// New returns a BMC answering through r, idle.
func New(r bmcsim.Responder) *BMC {
	return &BMC{r: r}
}

var _ kcs.Port = (*BMC)(nil)

// ReadStatus implements kcs.Port.
func (b *BMC) ReadStatus() (uint8, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.advance(now)
	b.stats.StatusReads++
	if b.garbled(now, true) {
		return uint8(b.rng.Uint32()), nil
	}
	s := kcs.Status(b.state) << 6
	if b.cd {
		s |= kcs.CD
	}
	if b.ibf {
		s |= kcs.IBF
	}
	if b.outVisible(now) {
		s |= kcs.OBF
	}
	if b.r.Attention() {
		s |= kcs.SMSAtn
	}
	return uint8(s), nil
}

// ReadData implements kcs.Port: it returns Data Out and clears OBF.
func (b *BMC) ReadData() (uint8, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.advance(now)
	b.stats.DataReads++
	v := b.out
	if b.outVisible(now) {
		b.obf = false
	}
	if b.garbled(now, false) {
		v = uint8(b.rng.Uint32())
	}
	return v, nil
}

// WriteCommand implements kcs.Port: it writes the command register.
func (b *BMC) WriteCommand(code uint8) error {
	b.write(code, true)
	return nil
}

// WriteData implements kcs.Port: it writes Data In.
func (b *BMC) WriteData(v uint8) error {
	b.write(v, false)
	return nil
}

func (b *BMC) write(v uint8, cmd bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.advance(now)
	b.stats.Writes++
	// Like the hardware, a write while IBF is still set overwrites the
	// byte the BMC has not taken yet.
	b.cd, b.inCmd, b.in, b.ibf = cmd, cmd, v, true
	b.inAt = now.Add(b.byteLatency)
	if b.resetAfter > 0 {
		if b.resetAfter--; b.resetAfter == 0 {
			b.reset()
			return
		}
	}
	b.advance(now)
}

func (b *BMC) silentAt(now time.Time) bool {
	if !b.silent {
		return false
	}
	if !b.silentUntil.IsZero() && !now.Before(b.silentUntil) {
		b.silent = false
		return false
	}
	return true
}

func (b *BMC) outVisible(now time.Time) bool {
	return b.obf && !now.Before(b.outAt) && !b.silentAt(now)
}

func (b *BMC) garbled(now time.Time, status bool) bool {
	if !b.garbageOn {
		return false
	}
	g := &b.garbage
	if !g.Until.IsZero() && !now.Before(g.Until) {
		b.garbageOn = false
		return false
	}
	if (status && !g.Status) || (!status && !g.Data) {
		return false
	}
	if g.Count > 0 {
		if g.Count--; g.Count == 0 {
			b.garbageOn = false // this read is the last garbled one
		}
	}
	return true
}

// post puts v in Data Out, visible from at.
func (b *BMC) post(v uint8, at time.Time) {
	b.out, b.obf, b.outAt = v, true, at
}

// cancelPending drops a response byte not yet visible to the host.
func (b *BMC) cancelPending(now time.Time) {
	if b.obf && now.Before(b.outAt) {
		b.obf = false
	}
}

func (b *BMC) toError(code uint8) {
	b.state = kcs.StateError
	b.errCode = code
	b.reqLen, b.writeEnd, b.abortSeq, b.errRead = 0, false, false, false
	b.resp, b.respPos = nil, 0
	b.stats.Errors++
}

// advance takes the pending host input if its latency has elapsed and the
// BMC is not silent.
func (b *BMC) advance(now time.Time) {
	if !b.ibf || now.Before(b.inAt) || b.silentAt(now) {
		return
	}
	b.ibf = false
	if b.inCmd {
		b.command(now, b.in)
	} else {
		b.data(now, b.in)
	}
}

func (b *BMC) command(now time.Time, c uint8) {
	switch c {
	case kcs.CmdWriteStart:
		b.cancelPending(now)
		b.reqLen, b.writeEnd, b.abortSeq, b.errRead = 0, false, false, false
		b.resp, b.respPos = nil, 0
		if b.failWrites != 0 {
			if b.failWrites > 0 {
				b.failWrites--
			}
			b.toError(b.failCode)
			return
		}
		b.state = kcs.StateWrite
		b.errCode = kcs.ErrCodeNone
	case kcs.CmdWriteEnd:
		if b.state != kcs.StateWrite || b.abortSeq {
			b.toError(kcs.ErrCodeIllegalControl)
			return
		}
		b.writeEnd = true
	case kcs.CmdGetStatusAbort:
		b.stats.Aborts++
		b.cancelPending(now)
		if b.state != kcs.StateIdle && b.state != kcs.StateError && b.errCode == kcs.ErrCodeNone {
			b.errCode = kcs.ErrCodeAborted
		}
		b.reqLen, b.writeEnd, b.errRead = 0, false, false
		b.resp, b.respPos = nil, 0
		b.abortSeq = true
		b.state = kcs.StateWrite
	default:
		b.toError(kcs.ErrCodeIllegalControl)
	}
}

func (b *BMC) data(now time.Time, v uint8) {
	switch b.state {
	case kcs.StateWrite:
		if b.abortSeq {
			// The 0x00 after GET_STATUS/ABORT: send the error status byte.
			b.abortSeq, b.errRead = false, true
			b.state = kcs.StateRead
			b.post(b.errCode, now)
			b.errCode = kcs.ErrCodeNone
			return
		}
		if b.reqLen >= len(b.req) {
			b.toError(kcs.ErrCodeLength)
			return
		}
		b.req[b.reqLen] = v
		b.reqLen++
		if !b.writeEnd {
			return
		}
		b.writeEnd = false
		b.state = kcs.StateRead
		b.stats.Handled++
		b.resp = b.r.Handle(b.req[:b.reqLen], b.respBuf[:0])
		b.respPos = 0
		b.reqLen = 0
		if len(b.resp) == 0 {
			b.state = kcs.StateIdle
			b.post(0, now.Add(b.msgLatency))
			return
		}
		b.post(b.resp[0], now.Add(b.msgLatency))
	case kcs.StateRead:
		if v != kcs.CmdRead {
			b.toError(kcs.ErrCodeIllegalControl)
			return
		}
		if b.errRead {
			b.errRead = false
			b.state = kcs.StateIdle
			b.post(0, now) // dummy byte
			return
		}
		if b.respPos++; b.respPos < len(b.resp) {
			b.post(b.resp[b.respPos], now)
			return
		}
		b.resp, b.respPos = nil, 0
		b.state = kcs.StateIdle
		b.post(0, now) // dummy byte
	case kcs.StateIdle:
		b.toError(kcs.ErrCodeUnspecified)
	case kcs.StateError:
		// Stay in ERROR until GET_STATUS/ABORT.
	}
}

func (b *BMC) reset() {
	b.state = kcs.StateIdle
	b.ibf, b.obf, b.cd = false, false, false
	b.reqLen, b.writeEnd, b.abortSeq, b.errRead = 0, false, false, false
	b.resp, b.respPos = nil, 0
	b.errCode = kcs.ErrCodeNone
	b.stats.Resets++
}

// Stats returns a snapshot of the counters.
func (b *BMC) Stats() Stats { return locked.Get(&b.mu, &b.stats) }

// SetByteLatency makes the BMC take each host write (IBF stays set) d
// after it was written.
func (b *BMC) SetByteLatency(d time.Duration) { locked.Set(&b.mu, &b.byteLatency, d) }

// SetMessageLatency makes the first response byte appear (OBF) d after the
// last request byte was taken: the BMC's processing time.
func (b *BMC) SetMessageLatency(d time.Duration) { locked.Set(&b.mu, &b.msgLatency, d) }

// Silence makes the BMC stop answering: host writes stay in Data In (IBF
// set) and no byte appears in Data Out, until the given time, or until
// Unsilence/ClearFaults if until is zero. Input written meanwhile is taken
// when the silence ends.
func (b *BMC) Silence(until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.silent, b.silentUntil = true, until
}

// Unsilence ends a Silence.
func (b *BMC) Unsilence() { locked.Set(&b.mu, &b.silent, false) }

// ForceError puts the interface in the ERROR state now with the given
// error status code, dropping any transaction in progress.
func (b *BMC) ForceError(code uint8) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cancelPending(time.Now())
	b.toError(code)
}

// FailWrites makes the next n WRITE_START commands put the interface in
// the ERROR state with code instead of starting a request (n < 0: all of
// them, until ClearFaults).
func (b *BMC) FailWrites(code uint8, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failWrites, b.failCode = n, code
}

// SetGarbage starts a garbage fault (see Garbage).
func (b *BMC) SetGarbage(g Garbage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.garbage, b.garbageOn = g, g.Status || g.Data
	b.rng = bmcsim.FaultRand(g.Seed)
}

// Reset resets the interface now, as a BMC reboot would: state IDLE, IBF
// and OBF clear, any partial request or response dropped.
func (b *BMC) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reset()
}

// ResetAfterWrites resets the interface right after the n-th host register
// write from now (n >= 1), so a test can hit an exact point of a
// transaction; 0 cancels.
func (b *BMC) ResetAfterWrites(n int) { locked.Set(&b.mu, &b.resetAfter, max(n, 0)) }

// ClearFaults ends every fault: latencies back to zero (a byte or response
// held back by a latency is due at once), silence, garbage, failing writes
// and a pending reset. It does not change the interface state (a forced
// ERROR stays until the host's recovery).
func (b *BMC) ClearFaults() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if b.inAt.After(now) {
		b.inAt = now
	}
	if b.outAt.After(now) {
		b.outAt = now
	}
	b.byteLatency, b.msgLatency = 0, 0
	b.silent = false
	b.garbageOn = false
	b.failWrites = 0
	b.resetAfter = 0
}
