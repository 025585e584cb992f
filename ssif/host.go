package ssif

import (
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"
)

// Config tunes a Host. Zero values mean the defaults, which follow the
// Linux driver (drivers/char/ipmi/ipmi_ssif.c) where it has one.
type Config struct {
	// TransactionTimeout bounds one whole Transact call, every retry
	// included. Default 10 s.
	TransactionTimeout time.Duration
	// WriteRetries is how many times a NAKed write is retried (the
	// kernel's SSIF_SEND_RETRIES). Default 5; negative means none.
	WriteRetries int
	// WriteRetryDelay is the wait before a write retry. Default 20 ms.
	WriteRetryDelay time.Duration
	// FirstReadDelay is the wait between the end of the write and the
	// first read of the response (the kernel's 5 ms message part time).
	FirstReadDelay time.Duration
	// ReadRetryDelay is the wait between reads while the BMC NAKs because
	// its response is not ready (the kernel's SSIF_MSG_USEC). Default
	// 20 ms.
	ReadRetryDelay time.Duration
	// ReadRetries bounds those reads (SSIF_RECV_RETRIES). Default 250;
	// TransactionTimeout bounds them too.
	ReadRetries int
	// FlagsInterval is how often Attention asks for the BMC's message
	// flags. Default 250 ms, ipmi_ssif's watch interval.
	FlagsInterval time.Duration
	// Logger receives one Debug line per retried multi-part read. Nil
	// means slog.Default().
	Logger *slog.Logger
	// Sleep waits; nil means time.Sleep. For tests.
	Sleep func(time.Duration)
}

// Defaults for Config.
const (
	DefaultTransactionTimeout = 10 * time.Second
	DefaultWriteRetries       = 5
	DefaultWriteRetryDelay    = 20 * time.Millisecond
	DefaultFirstReadDelay     = 5 * time.Millisecond
	DefaultReadRetryDelay     = 20 * time.Millisecond
	DefaultReadRetries        = 250
	DefaultFlagsInterval      = 250 * time.Millisecond
)

func (c Config) withDefaults() Config {
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = DefaultTransactionTimeout
	}
	if c.WriteRetries == 0 {
		c.WriteRetries = DefaultWriteRetries
	} else if c.WriteRetries < 0 {
		c.WriteRetries = 0
	}
	if c.WriteRetryDelay <= 0 {
		c.WriteRetryDelay = DefaultWriteRetryDelay
	}
	if c.FirstReadDelay < 0 {
		c.FirstReadDelay = 0
	} else if c.FirstReadDelay == 0 {
		c.FirstReadDelay = DefaultFirstReadDelay
	}
	if c.ReadRetryDelay <= 0 {
		c.ReadRetryDelay = DefaultReadRetryDelay
	}
	if c.ReadRetries <= 0 {
		c.ReadRetries = DefaultReadRetries
	}
	if c.FlagsInterval <= 0 {
		c.FlagsInterval = DefaultFlagsInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Sleep == nil {
		c.Sleep = time.Sleep
	}
	return c
}

// MaxMessage is the longest message the host handles (IPMI_MAX_MSG_LENGTH).
const MaxMessage = 272

// Multi-part support levels from Get System Interface Capabilities.
const (
	MultiNone     = 0 // single-part only: 32 bytes each way
	MultiStartEnd = 1 // start and end parts only: 64 bytes
	MultiMiddle   = 2 // start, middle and end parts
)

// Caps are what Get System Interface Capabilities (NetFn App, command 57h,
// SSIF) reports, after the kernel's sanitising.
type Caps struct {
	// Known is false when the BMC did not answer (the defaults apply: 32
	// bytes each way, single-part).
	Known bool
	// Version is the SSIF version (0: 1.0).
	Version uint8
	// Multi is MultiNone, MultiStartEnd or MultiMiddle.
	Multi uint8
	// PEC reports PEC support (not used).
	PEC bool
	// MaxWrite and MaxRead are the longest request and response in bytes
	// (netfn and command included).
	MaxWrite, MaxRead int
}

// defaultCaps are what a BMC that does not answer gets: single-part.
var defaultCaps = Caps{MaxWrite: BlockMax, MaxRead: BlockMax}

// ParseCaps decodes a Get System Interface Capabilities response (netfn,
// cmd, completion code, data) and sanitises it as the kernel does: without
// multi-part support nothing longer than 32 bytes goes either way.
func ParseCaps(resp []byte) (Caps, error) {
	if len(resp) < 3 {
		return defaultCaps, errors.New("ssif: capabilities response shorter than 3 bytes")
	}
	if resp[2] != 0 {
		return defaultCaps, &ccError{cc: resp[2], msg: "ssif: Get System Interface Capabilities: completion code 0x" + strconv.FormatUint(uint64(resp[2]), 16)}
	}
	if len(resp) < 7 {
		return defaultCaps, errors.New("ssif: capabilities response shorter than 7 bytes")
	}
	c := Caps{Known: true, Version: resp[4] & 7, Multi: resp[4] >> 6 & 3, PEC: resp[4]&0x08 != 0,
		MaxWrite: int(resp[5]), MaxRead: int(resp[6])}
	if c.Multi > MultiMiddle {
		c.Multi = MultiMiddle
	}
	limit := BlockMax
	switch c.Multi {
	case MultiStartEnd:
		limit = 2 * BlockMax
	case MultiMiddle:
		limit = MaxMessage
	}
	if c.MaxWrite > limit || c.MaxWrite == 0 {
		c.MaxWrite = limit
	}
	if c.MaxRead > limit || c.MaxRead == 0 {
		c.MaxRead = limit
	}
	return c, nil
}

// Stats are cumulative counters of a Host, cheap enough to keep always on.
type Stats struct {
	Transactions  uint64 // Transact calls
	Failures      uint64 // Transact calls that returned an error
	Writes        uint64 // SMBus block writes (parts included)
	Reads         uint64 // SMBus block reads (parts included)
	WriteParts    uint64 // multi-part write parts
	ReadParts     uint64 // multi-part read parts
	WriteRetries  uint64 // writes retried after a NAK
	ReadRetries   uint64 // reads retried after a NAK (response not ready)
	MultiRestarts uint64 // multi-part reads restarted after a bad part
	Timeouts      uint64 // transactions that ran out of time or retries
}

type counters struct {
	transactions, failures, writes, reads, writeParts, readParts atomic.Uint64
	writeRetries, readRetries, multiRestarts, timeouts           atomic.Uint64
}

// Host is the host side of one SSIF BMC. One goroutine (the engine's) uses
// it; Stats and Caps may be called from any.
type Host struct {
	bus  Bus
	cfg  Config
	c    counters
	caps atomic.Pointer[Caps]
	// lastFlags is when Attention last asked for the flags (UnixNano).
	lastFlags atomic.Int64

	block [BlockMax]byte
	part  [BlockMax]byte
	rsp   [MaxMessage + BlockMax]byte
}

// New returns a Host on bus with cfg (zero fields take defaults). Call Init
// to learn the BMC's limits; until then messages are single-part.
func New(bus Bus, cfg Config) *Host {
	h := &Host{bus: bus, cfg: cfg.withDefaults()}
	c := defaultCaps
	h.caps.Store(&c)
	return h
}

// Config returns the effective configuration.
func (h *Host) Config() Config { return h.cfg }

// Caps returns the BMC's limits as Init found them.
func (h *Host) Caps() Caps { return *h.caps.Load() }

// Stats returns a snapshot of the counters.
func (h *Host) Stats() Stats {
	return Stats{
		Transactions: h.c.transactions.Load(), Failures: h.c.failures.Load(),
		Writes: h.c.writes.Load(), Reads: h.c.reads.Load(),
		WriteParts: h.c.writeParts.Load(), ReadParts: h.c.readParts.Load(),
		WriteRetries: h.c.writeRetries.Load(), ReadRetries: h.c.readRetries.Load(),
		MultiRestarts: h.c.multiRestarts.Load(), Timeouts: h.c.timeouts.Load(),
	}
}

// Init asks the BMC for its SSIF limits (Get System Interface
// Capabilities with interface type SSIF), as ipmi_ssif does when it
// probes. A BMC that does not answer it keeps the single-part defaults;
// the error says why, for a log line. A bus that fails outright (not a
// NAK) is an error the caller should not ignore (see Retryable).
func (h *Host) Init(deadline time.Time) (Caps, error) {
	resp, err := h.Transact([]byte{0x06 << 2, 0x57, 0x00}, make([]byte, 0, 64), deadline)
	if err != nil {
		return h.Caps(), err
	}
	c, err := ParseCaps(resp)
	if err != nil {
		return h.Caps(), err
	}
	h.caps.Store(&c)
	return c, nil
}
