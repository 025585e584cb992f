package bmcsim

import (
	"math/rand/v2"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/internal/locked"
)

// Faulty is implemented by responders that can be told to misbehave at
// the message level. Handle is synchronous and always answers, so the
// adapters (KCS, VM serial) consult these methods for every message: they
// wait ResponseDelay before delivering the answer, and deliver nothing
// (do not even call Handle) while Silent reports true.
type Faulty interface {
	// ResponseDelay is how long the adapter waits before answering.
	ResponseDelay() time.Duration
	// Silent reports whether the BMC is ignoring requests right now.
	Silent() bool
}

// AttentionIRQer is implemented by responders that can say whether their
// attention should also raise the host interrupt.
type AttentionIRQer interface {
	AttentionIRQ() bool
}

// IRQEnabler is implemented by responders whose Global Enables switch the
// system interface's interrupt on and off (the receive-message and
// event-buffer interrupt bits), so an adapter can tell the emulated
// interface, as QEMU's own simulated BMC does when those bits change.
type IRQEnabler interface {
	IRQEnabled() bool
}

// FaultRand returns the random source of a garbage fault in the register
// adapters (kcsbmc, btbmc, ssifbmc): the same seed gives the same bytes, so
// a test that fails on garbage can be run again with what failed.
func FaultRand(seed uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

type faults struct {
	delay       time.Duration
	silent      bool
	silentUntil time.Time // wall-clock time
}

// SetDelay sets the per-message response delay adapters apply (wall-clock
// time; it is not scaled by TimeScale because it models transport latency).
func (b *BMC) SetDelay(d time.Duration) { locked.Set(&b.mu, &b.faults.delay, d) }

// ResponseDelay returns the per-message response delay set by SetDelay.
func (b *BMC) ResponseDelay() time.Duration { return locked.Get(&b.mu, &b.faults.delay) }

// SetSilent makes the BMC ignore every request (true) or answer again
// (false). SetSilent(false) also ends a SilenceUntil.
func (b *BMC) SetSilent(s bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults.silent = s
	if !s {
		b.faults.silentUntil = time.Time{}
	}
}

// SilenceUntil makes the BMC ignore requests until the wall-clock time t.
func (b *BMC) SilenceUntil(t time.Time) { locked.Set(&b.mu, &b.faults.silentUntil, t) }

// Silent reports whether the BMC ignores requests right now.
func (b *BMC) Silent() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.faults.silent || time.Now().Before(b.faults.silentUntil)
}

var (
	_ Responder      = (*BMC)(nil)
	_ Faulty         = (*BMC)(nil)
	_ AttentionIRQer = (*BMC)(nil)
)
