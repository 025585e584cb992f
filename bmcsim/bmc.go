package bmcsim

import (
	"log/slog"
	"sync"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/internal/locked"
)

// Config sets up a simulated BMC. The zero value is a usable BMC running in
// real time.
type Config struct {
	// Clock is the BMC's time source. Nil means a ScaledClock with
	// TimeScale.
	Clock Clock
	// TimeScale makes BMC time run this many times faster than wall-clock
	// time (10 = ten times faster) when Clock is nil. 0 or 1 is real time.
	TimeScale float64
	// Logger receives one line per BMC state change (watchdog pretimeout,
	// timeout action, chassis control). Nil means slog.Default().
	Logger *slog.Logger
	// DeviceGUID and SystemGUID are returned by Get Device GUID and Get
	// System GUID. Zero values are replaced by fixed example GUIDs.
	DeviceGUID, SystemGUID [16]byte
	// SELCapacity is the number of SEL records the BMC keeps (default 128).
	SELCapacity int
	// Satellites lists the IPMB slave addresses on channel 0 that answer
	// bridged requests. Nil means one satellite at 0x72; an empty non-nil
	// slice means none.
	Satellites []byte
	// Delay is the initial per-message response delay adapters apply
	// (see SetDelay).
	Delay time.Duration
}

// ExampleManufacturerID is the IANA Private Enterprise Number 32473,
// reserved for documentation use (RFC 5612); the simulated BMC reports it
// in Get Device ID so nobody mistakes it for real hardware.
const ExampleManufacturerID = 32473

// ExampleProductID is the product ID reported by Get Device ID.
const ExampleProductID = 0x0C05

// BMC is a simulated baseboard management controller at the message level.
// It implements Responder. All methods are safe for concurrent use.
type BMC struct {
	clock Clock
	log   *slog.Logger

	mu         sync.Mutex
	cfg        Config
	enables    byte
	rcvQueue   [][]byte // Get Message data: channel byte, then the message
	eventBuf   []byte   // 16 bytes when full, nil when empty
	pretimeout bool     // message flag 0x08

	wd       watchdog
	sel      selRepo
	sdr      sdrRepo
	sensors  []*sensor
	fru      []byte
	chassis  chassisState
	sats     map[byte]*satellite
	stats    Stats
	faults   faults
	bootTime time.Time
}

// Stats are counters tests read to observe the BMC from outside.
type Stats struct {
	Requests            uint64        // messages handled
	WatchdogSets        uint64        // Set Watchdog Timer commands accepted
	WatchdogResets      uint64        // Reset Watchdog Timer commands received (pats)
	WatchdogResetsEarly uint64        // pats refused with 0x80 (uninitialised)
	PretimeoutsFired    uint64        // pretimeouts that fired
	TimeoutsFired       uint64        // watchdog expirations
	LastPat             time.Time     // BMC time of the last accepted pat
	LastAction          TimeoutAction // action of the last expiration
	LastActionTime      time.Time     // BMC time of the last expiration
	HardResets          uint64        // watchdog- or command-caused hard resets
	PowerDowns          uint64        // watchdog- or command-caused power downs
	PowerCycles         uint64        // watchdog- or command-caused power cycles
	BMCResets           uint64        // Cold/Warm Reset commands
	Bridged             uint64        // Send Message requests accepted
}

// New returns a BMC in its power-on state: chassis on, watchdog stopped and
// uninitialised, SEL empty, SDR repository and FRU 0 populated.
func New(cfg Config) *BMC {
	if cfg.Clock == nil {
		cfg.Clock = NewScaledClock(cfg.TimeScale)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SELCapacity <= 0 {
		cfg.SELCapacity = 128
	}
	if cfg.Satellites == nil {
		cfg.Satellites = []byte{0x72}
	}
	if cfg.DeviceGUID == ([16]byte{}) {
		cfg.DeviceGUID = [16]byte{0x1f, 0x9c, 0x52, 0x6b, 0x0d, 0x3a, 0x4e, 0x47, 0x9d, 0x21, 0x45, 0x78, 0x61, 0x6d, 0x70, 0x01}
	}
	if cfg.SystemGUID == ([16]byte{}) {
		cfg.SystemGUID = [16]byte{0x2e, 0x8b, 0x41, 0x7a, 0x1c, 0x29, 0x4d, 0x56, 0x8c, 0x30, 0x45, 0x78, 0x61, 0x6d, 0x70, 0x02}
	}
	b := &BMC{clock: cfg.Clock, log: cfg.Logger, cfg: cfg}
	b.bootTime = b.clock.Now()
	b.enables = EnableEventBuffer | EnableSEL
	b.sel.capacity = cfg.SELCapacity
	b.sel.timeOffset = 0
	b.sel.nextID = 1
	b.sensors = defaultSensors()
	b.sdr = buildSDR(b.sensors)
	b.fru = buildFRU()
	b.chassis = chassisState{powerOn: true, restartCause: 0x00}
	b.sats = make(map[byte]*satellite)
	for _, a := range cfg.Satellites {
		b.sats[a] = &satellite{addr: a}
	}
	b.faults.delay = cfg.Delay
	return b
}

// Attention reports whether a message flag is set (receive queue not
// empty, event buffer full, watchdog pretimeout), which KCS shows as
// SMS_ATN.
func (b *BMC) Attention() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flagsLocked() != 0
}

// AttentionIRQ reports whether the attention should also raise the
// interrupt: the flag that is set has its interrupt enabled in the BMC
// Global Enables (the same rule as QEMU's ipmi-bmc-sim). The VM serial
// adapter uses it to choose between QEMU's ATN and ATN+IRQ commands.
func (b *BMC) AttentionIRQ() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.flagsLocked()
	return (b.enables&EnableReceiveIRQ != 0 && f&(FlagReceiveMessage|FlagPretimeout) != 0) ||
		(b.enables&EnableEventIRQ != 0 && f&FlagEventBuffer != 0)
}

// IRQEnabled reports whether the host enabled the interface interrupt: the
// receive-message or event-buffer interrupt bit of the BMC Global Enables.
func (b *BMC) IRQEnabled() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.enables&(EnableReceiveIRQ|EnableEventIRQ) != 0
}

func (b *BMC) flagsLocked() byte {
	var f byte
	if len(b.rcvQueue) > 0 {
		f |= FlagReceiveMessage
	}
	if b.eventBuf != nil {
		f |= FlagEventBuffer
	}
	if b.pretimeout {
		f |= FlagPretimeout
	}
	return f
}

// Stats returns a snapshot of the BMC's counters.
func (b *BMC) Stats() Stats { return locked.Get(&b.mu, &b.stats) }

// Now returns the BMC's present time (its Clock).
func (b *BMC) Now() time.Time { return b.clock.Now() }

// handler answers one command: data is the request data (after netfn and
// cmd); it returns the completion code and the response data.
type handler func(b *BMC, data []byte) (cc byte, rsp []byte)

type cmdKey struct{ netfn, cmd byte }

// commands is the BMC's command table, filled by the files that implement
// each group.
var commands = map[cmdKey]handler{}

func register(netfn, cmd byte, h handler) { commands[cmdKey{netfn, cmd}] = h }

// Handle answers one request, req = netfn<<2|lun, cmd, data..., appending
// (netfn|1)<<2|lun, cmd, completion code, data... to resp. Requests shorter
// than two bytes are answered with 0xC7 for netfn/cmd 0; unknown commands
// with 0xC1. Handle always answers: the adapters apply the fault injection
// (ResponseDelay, Silent).
func (b *BMC) Handle(req, resp []byte) []byte {
	var nfl, cmd byte
	if len(req) > 0 {
		nfl = req[0]
	}
	if len(req) > 1 {
		cmd = req[1]
	}
	netfn, lun := nfl>>2, nfl&3
	resp = append(resp, (netfn|1)<<2|lun, cmd)
	if len(req) < 2 {
		return append(resp, ccBadLength)
	}
	h := commands[cmdKey{netfn, cmd}]
	if h == nil || netfn&1 != 0 {
		b.mu.Lock()
		b.stats.Requests++
		b.mu.Unlock()
		return append(resp, ccInvalidCmd)
	}
	b.mu.Lock()
	b.stats.Requests++
	cc, data := h(b, req[2:])
	b.mu.Unlock()
	resp = append(resp, cc)
	if cc == ccOK {
		resp = append(resp, data...)
	}
	return resp
}

// fixedLen wraps a handler that needs exactly n bytes of request data.
func fixedLen(n int, h handler) handler {
	return func(b *BMC, data []byte) (byte, []byte) {
		if len(data) != n {
			return ccBadLength, nil
		}
		return h(b, data)
	}
}

// minLen wraps a handler that needs at least n bytes of request data.
func minLen(n int, h handler) handler {
	return func(b *BMC, data []byte) (byte, []byte) {
		if len(data) < n {
			return ccBadLength, nil
		}
		return h(b, data)
	}
}

func le16(v uint16) []byte { return []byte{byte(v), byte(v >> 8)} }
func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
