package bt

import (
	"errors"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/internal/portwait"
)

// Config tunes a Host. Zero values mean the defaults, which follow the
// Linux driver (drivers/char/ipmi/ipmi_bt_sm.c) where it has one.
type Config struct {
	// ResponseTimeout bounds one attempt: from the start of the write until
	// the response is read. Zero means what the BMC recommends in Get BT
	// Interface Capabilities (its request-to-response time), or 5 s, the
	// kernel's default, when it does not say.
	ResponseTimeout time.Duration
	// TransactionTimeout bounds one whole Transact call, retries included.
	// Default 10 s.
	TransactionTimeout time.Duration
	// Retries is how many times a timed-out request is written again
	// (with the same sequence number, as the kernel does). Zero means the
	// BMC's recommendation from Get BT Interface Capabilities, or 2, the
	// kernel's default; negative means none.
	Retries int
	// SpinFor is how long a wait busy-polls the control register before it
	// starts sleeping. Default 20 µs.
	SpinFor time.Duration
	// MinSleep is the first sleep after the spin; each further sleep in the
	// same wait doubles, up to MaxSleep. Defaults 20 µs and 1 ms.
	MinSleep, MaxSleep time.Duration
	// Logger receives one Debug line per retry and per stale response.
	// Nil means slog.Default().
	Logger *slog.Logger
}

// Defaults for Config.
const (
	DefaultResponseTimeout    = 5 * time.Second
	DefaultTransactionTimeout = 10 * time.Second
	DefaultRetries            = 2
	DefaultSpinFor            = 20 * time.Microsecond
	DefaultMinSleep           = 20 * time.Microsecond
	DefaultMaxSleep           = time.Millisecond
)

func (c Config) withDefaults() Config {
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = DefaultTransactionTimeout
	}
	if c.SpinFor <= 0 {
		c.SpinFor = DefaultSpinFor
	}
	if c.MinSleep <= 0 {
		c.MinSleep = DefaultMinSleep
	}
	if c.MaxSleep <= 0 {
		c.MaxSleep = DefaultMaxSleep
	}
	if c.MaxSleep < c.MinSleep {
		c.MaxSleep = c.MinSleep
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// MaxFrame is the longest BT frame: the length byte counts the bytes after
// it (netfn, seq, cmd, data) and is one byte.
const MaxFrame = 1 + 255

// MaxRequest is the longest request (netfn, cmd, data) a BT frame can
// carry: 255 bytes after the length byte, one of which is the sequence
// number.
const MaxRequest = 254

// Caps are what Get BT Interface Capabilities (NetFn App, command 36h)
// reports.
type Caps struct {
	// Known is false when the BMC did not answer the command (the other
	// fields then hold the defaults).
	Known bool
	// Outstanding is how many requests the BMC can hold at once.
	Outstanding uint8
	// InputSize and OutputSize are the BMC's buffer sizes in bytes,
	// length byte included.
	InputSize, OutputSize uint8
	// ResponseTime is the BMC's request-to-response time.
	ResponseTime time.Duration
	// Retries is the number of retries the BMC recommends.
	Retries int
}

// ParseCaps decodes a Get BT Interface Capabilities response (netfn, cmd,
// completion code, data), as Transact returns it.
func ParseCaps(resp []byte) (Caps, error) {
	if len(resp) < 3 {
		return Caps{}, errors.New("bt: capabilities response shorter than 3 bytes")
	}
	if resp[2] != 0 {
		return Caps{}, &ccError{cc: resp[2], msg: "bt: Get BT Interface Capabilities: completion code " + hex(resp[2])}
	}
	if len(resp) < 8 {
		return Caps{}, errors.New("bt: capabilities response shorter than 8 bytes")
	}
	c := Caps{Known: true, Outstanding: resp[3], InputSize: resp[4], OutputSize: resp[5],
		ResponseTime: time.Duration(resp[6]) * time.Second, Retries: int(resp[7])}
	return c, nil
}

func hex(b uint8) string {
	const d = "0123456789abcdef"
	return "0x" + string([]byte{d[b>>4], d[b&15]})
}

// Stats are cumulative counters of a Host, cheap enough to keep always on.
type Stats struct {
	Transactions uint64        // Transact calls
	Failures     uint64        // Transact calls that returned an error
	CtrlReads    uint64        // control register reads
	CtrlWrites   uint64        // control register writes
	BufReads     uint64        // buffer reads
	BufWrites    uint64        // buffer writes
	Sleeps       uint64        // sleeps between control register polls
	SleepTime    time.Duration // total time asked to sleep
	Retries      uint64        // requests written again after a timeout
	Timeouts     uint64        // attempts that timed out
	Stale        uint64        // responses drained or discarded (wrong sequence, netfn or command)
	BusyRefused  uint64        // requests refused while the BMC stayed busy
}

type counters struct {
	transactions, failures, ctrlReads, ctrlWrites, bufReads, bufWrites atomic.Uint64
	retries, timeouts, stale, busyRefused                              atomic.Uint64
	wait                                                               portwait.Counters
}

// threadBinder is implemented by ports whose access right belongs to one
// OS thread (in/out after iopl); see kcs.ThreadBinder.
type threadBinder interface{ BindThread() error }

// Host is the host side of one BT interface. Like kcs.Host it is used by
// one goroutine (the engine's); Stats and Caps may be called from any.
type Host struct {
	p   Port
	cfg Config
	c   counters

	caps     atomic.Pointer[Caps]
	seq      uint8
	longBusy bool // B_BUSY outlasted a request: refuse until it clears
	bound    bool

	frame [MaxFrame]byte
	rbuf  [MaxFrame]byte
}

// New returns a Host driving p with cfg (zero fields take defaults). Call
// Init before the first Transact to learn the BMC's limits.
func New(p Port, cfg Config) *Host {
	h := &Host{p: p, cfg: cfg.withDefaults()}
	h.caps.Store(&Caps{ResponseTime: DefaultResponseTimeout, Retries: DefaultRetries})
	return h
}

// Config returns the effective configuration, defaults filled in.
func (h *Host) Config() Config { return h.cfg }

// Caps returns the BMC's capabilities as Init found them.
func (h *Host) Caps() Caps { return *h.caps.Load() }

// Stats returns a snapshot of the counters.
func (h *Host) Stats() Stats {
	return Stats{
		Transactions: h.c.transactions.Load(),
		Failures:     h.c.failures.Load(),
		CtrlReads:    h.c.ctrlReads.Load(),
		CtrlWrites:   h.c.ctrlWrites.Load(),
		BufReads:     h.c.bufReads.Load(),
		BufWrites:    h.c.bufWrites.Load(),
		Sleeps:       h.c.wait.Sleeps.Load(),
		SleepTime:    time.Duration(h.c.wait.SleepNanos.Load()),
		Retries:      h.c.retries.Load(),
		Timeouts:     h.c.timeouts.Load(),
		Stale:        h.c.stale.Load(),
		BusyRefused:  h.c.busyRefused.Load(),
	}
}

func (h *Host) bindThread() error {
	if h.bound {
		return nil
	}
	tb, ok := h.p.(threadBinder)
	if !ok {
		h.bound = true
		return nil
	}
	runtime.LockOSThread()
	if err := tb.BindThread(); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	h.bound = true
	return nil
}

// Init checks that an interface answers, puts it in a known state (H_BUSY
// clear, write pointer reset, SMS_ATN and the BT interrupt cleared: the
// host polls), and asks the BMC for its capabilities, which set the
// response time, the retries and the longest request from then on. A BMC
// that does not answer Get BT Interface Capabilities keeps the defaults
// (as the kernel does); the error says why, for a log line. It may be
// called from any goroutine before the first Transact.
func (h *Host) Init(deadline time.Time) (Caps, error) {
	if tb, ok := h.p.(threadBinder); ok && !h.bound {
		// Bind this thread for Init's accesses only: the engine's
		// goroutine binds its own thread at its first Transact.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := tb.BindThread(); err != nil {
			return h.Caps(), &OpError{Phase: PhaseStart, Err: err}
		}
	}
	c, err := h.ctrl()
	if err != nil {
		return h.Caps(), &OpError{Phase: PhaseStart, Err: err}
	}
	if c == NoInterface {
		m, err := h.p.ReadIntMask()
		if err == nil && m == 0xFF {
			return h.Caps(), &OpError{Phase: PhaseStart, Ctrl: c, Err: ErrNoInterface}
		}
	}
	if err := h.p.WriteIntMask(B2HIrq); err != nil {
		return h.Caps(), &OpError{Phase: PhaseStart, Ctrl: c, Err: err}
	}
	if err := h.resetFlags(); err != nil {
		return h.Caps(), &OpError{Phase: PhaseStart, Ctrl: c, Err: err}
	}
	var resp [32]byte
	h.c.transactions.Add(1)
	out, err := h.transact([]byte{0x06 << 2, 0x36}, resp[:0], deadline)
	if err != nil {
		h.c.failures.Add(1)
		return h.Caps(), err
	}
	caps, err := ParseCaps(out)
	if err != nil {
		return h.Caps(), err
	}
	if caps.ResponseTime == 0 {
		caps.ResponseTime = DefaultResponseTimeout
	}
	h.caps.Store(&caps)
	return caps, nil
}

// Attention reads the control register once and reports whether SMS_ATN is
// set; if it is, it clears it (the host acknowledges SMS_ATN in BT, as the
// kernel does when idle) so the next report is a new attention. It
// returns ErrNoInterface if the registers read 0xFF.
func (h *Host) Attention() (bool, error) {
	if err := h.bindThread(); err != nil {
		return false, &OpError{Phase: PhaseStart, Err: err}
	}
	c, err := h.ctrl()
	if err != nil {
		return false, &OpError{Phase: PhaseStart, Err: err}
	}
	if c == NoInterface {
		return false, &OpError{Phase: PhaseStart, Ctrl: c, Err: ErrNoInterface}
	}
	if c&SMSAtn == 0 {
		return false, nil
	}
	if err := h.wctrl(SMSAtn); err != nil {
		return false, &OpError{Phase: PhaseStart, Ctrl: c, Err: err}
	}
	return true, nil
}

// Transact sends one request and reads its response. msg is
// netfn<<2|lun, cmd, data...; the response (netfn<<2|lun, cmd, cc,
// data...) is appended to resp[:0] and returned. A response whose sequence
// number, netfn or command does not match is discarded and the wait goes
// on, as the specification says.
//
// Transact takes at most min(deadline, now+TransactionTimeout) plus one
// poll. An attempt that times out is retried (Config.Retries) after the
// interface's flags are reset. When the BMC still shows B_BUSY as the last
// attempt times out, the error is ErrBusy (and a timeout), and later calls
// fail with ErrBusy at once, without writing, until B_BUSY clears, as the
// kernel's LONG_BUSY state does. Errors are *OpError wrapping ErrTimeout,
// ErrBusy, ErrRequestTooShort/TooLong, ErrProtocol, ErrNoInterface or a
// Port error.
func (h *Host) Transact(msg, resp []byte, deadline time.Time) ([]byte, error) {
	h.c.transactions.Add(1)
	if err := h.bindThread(); err != nil {
		h.c.failures.Add(1)
		return resp[:0], &OpError{Phase: PhaseStart, Err: err}
	}
	out, err := h.transact(msg, resp[:0], deadline)
	if err != nil {
		h.c.failures.Add(1)
	}
	return out, err
}

func (h *Host) transact(msg, resp []byte, deadline time.Time) ([]byte, error) {
	caps := h.caps.Load()
	if len(msg) < 2 {
		return resp, &OpError{Phase: PhaseRequest, Err: ErrRequestTooShort}
	}
	if len(msg) > MaxRequest || (caps.Known && caps.InputSize != 0 && len(msg)+2 > int(caps.InputSize)) {
		return resp, &OpError{Phase: PhaseRequest, Err: ErrRequestTooLong}
	}
	now := time.Now()
	dl := now.Add(h.cfg.TransactionTimeout)
	if !deadline.IsZero() && deadline.Before(dl) {
		dl = deadline
	}
	if h.longBusy {
		c, err := h.ctrl()
		if err == nil && c != NoInterface && c&HBusy != 0 {
			err = h.wctrl(HBusy) // clear a leftover H_BUSY
		}
		if err != nil {
			return resp, &OpError{Phase: PhaseStart, Ctrl: c, Err: err}
		}
		if c&BBusy != 0 {
			h.c.busyRefused.Add(1)
			return resp, &OpError{Phase: PhaseStart, Ctrl: c, Err: ErrBusy}
		}
		h.longBusy = false
		if err := h.resetFlags(); err != nil {
			return resp, &OpError{Phase: PhaseStart, Ctrl: c, Err: err}
		}
	}
	if !now.Before(dl) {
		return resp, &OpError{Phase: PhaseStart, Err: ErrTimeout, TimedOut: true}
	}
	seq := h.seq
	h.seq++
	f := h.frame[:0]
	f = append(f, byte(len(msg)+1), msg[0], seq)
	f = append(f, msg[1:]...)

	respTime := h.cfg.ResponseTimeout
	if respTime <= 0 {
		respTime = caps.ResponseTime
	}
	retries := h.cfg.Retries
	switch {
	case retries < 0:
		retries = 0
	case retries == 0 && caps.Known:
		retries = caps.Retries
	case retries == 0:
		retries = DefaultRetries
	}
	for attempt := 1; ; attempt++ {
		adl := time.Now().Add(respTime)
		if dl.Before(adl) {
			adl = dl
		}
		out, err := h.once(f, resp, adl)
		if err == nil {
			return out, nil
		}
		op := err.(*OpError)
		op.Seq, op.Attempts = seq, attempt
		if !op.TimedOut && !errors.Is(op.Err, ErrProtocol) {
			return resp, op // a Port error or no interface
		}
		if op.TimedOut {
			h.c.timeouts.Add(1)
		}
		if attempt > retries || !time.Now().Before(dl) {
			if op.TimedOut && op.Ctrl&BBusy != 0 {
				op.Err = ErrBusy
				h.longBusy = true
			}
			return resp, op
		}
		h.c.retries.Add(1)
		h.cfg.Logger.Debug("bt retry", "err", op)
		if err := h.resetFlags(); err != nil {
			return resp, &OpError{Phase: op.Phase, Seq: seq, Attempts: attempt, Err: err}
		}
	}
}

// once writes the frame f and waits for the matching response until dl.
func (h *Host) once(f, resp []byte, dl time.Time) ([]byte, error) {
	// Wait until the BMC is free, draining a stale response meanwhile.
	c, err := h.wait(dl, func(c uint8) (bool, error) {
		switch {
		case c&B2HAtn != 0:
			return false, h.drain()
		case c&HBusy != 0:
			// A leftover H_BUSY (an interrupted read) keeps a BMC from
			// posting its next response: clear it, as the kernel does
			// when idle.
			return false, h.wctrl(HBusy)
		}
		return c&(BBusy|H2BAtn) == 0, nil
	})
	if err != nil {
		return resp, h.fail(PhaseStart, c, err)
	}
	if c&HBusy != 0 {
		if err := h.wctrl(HBusy); err != nil { // clear a leftover H_BUSY
			return resp, h.fail(PhaseWrite, c, err)
		}
	}
	if err := h.wctrl(ClrWrPtr); err != nil {
		return resp, h.fail(PhaseWrite, c, err)
	}
	for _, b := range f {
		h.c.bufWrites.Add(1)
		if err := h.p.WriteBuf(b); err != nil {
			return resp, h.fail(PhaseWrite, c, err)
		}
	}
	if err := h.wctrl(H2BAtn); err != nil {
		return resp, h.fail(PhaseWrite, c, err)
	}
	// The BMC takes the request.
	if c, err = h.wait(dl, func(c uint8) (bool, error) { return c&(BBusy|H2BAtn) == 0, nil }); err != nil {
		return resp, h.fail(PhaseWrite, c, err)
	}
	for {
		if c, err = h.wait(dl, func(c uint8) (bool, error) { return c&B2HAtn != 0, nil }); err != nil {
			return resp, h.fail(PhaseRead, c, err)
		}
		n, err := h.readResponse(c, dl)
		if err != nil {
			return resp, err
		}
		r := h.rbuf[:n]
		if r[3] == f[3] && r[2] == f[2] && r[1]&0xF8 == f[1]&0xF8 {
			resp = append(resp, r[1], r[3])
			return append(resp, r[4:]...), nil
		}
		h.c.stale.Add(1)
		h.cfg.Logger.Debug("bt: discarded a response that is not for the request",
			"want_seq", f[2], "got_seq", r[2], "want_cmd", f[3], "got_cmd", r[3])
	}
}

// readResponse acknowledges B2H_ATN and reads one response into rbuf,
// returning its length (length byte included).
func (h *Host) readResponse(c uint8, dl time.Time) (int, error) {
	if c&HBusy == 0 {
		if err := h.wctrl(HBusy); err != nil { // set H_BUSY: the host is reading
			return 0, h.fail(PhaseRead, c, err)
		}
	}
	if err := h.wctrl(B2HAtn); err != nil {
		return 0, h.fail(PhaseRead, c, err)
	}
	// Some BMCs do not clear B2H_ATN at the first write: keep hitting it.
	c, err := h.wait(dl, func(c uint8) (bool, error) {
		if c&B2HAtn == 0 {
			return true, nil
		}
		return false, h.wctrl(B2HAtn)
	})
	if err != nil {
		return 0, h.fail(PhaseRead, c, err)
	}
	if err := h.wctrl(ClrRdPtr); err != nil {
		return 0, h.fail(PhaseRead, c, err)
	}
	n, err := h.readBuf()
	if err != nil {
		return 0, h.fail(PhaseRead, c, err)
	}
	h.rbuf[0] = n
	if n < 4 {
		// No room for netfn, seq, cmd and a completion code.
		_ = h.wctrl(HBusy)
		return 0, h.fail(PhaseRead, c, &lengthError{n})
	}
	for i := 1; i <= int(n); i++ {
		if h.rbuf[i], err = h.readBuf(); err != nil {
			return 0, h.fail(PhaseRead, c, err)
		}
	}
	if err := h.wctrl(HBusy); err != nil { // clear H_BUSY: done reading
		return 0, h.fail(PhaseRead, c, err)
	}
	return int(n) + 1, nil
}

// lengthError is the cause when a response's length byte is impossible.
type lengthError struct{ n uint8 }

func (e *lengthError) Error() string {
	return ErrProtocol.Error() + ": response length byte " + hex(e.n) + " (at least 4: netfn, seq, cmd, completion code)"
}
func (e *lengthError) Unwrap() error { return ErrProtocol }

// drain reads and discards a response the BMC signals with B2H_ATN that
// nobody waits for (a late answer to a timed-out request).
func (h *Host) drain() error {
	h.c.stale.Add(1)
	if err := h.wctrl(HBusy); err != nil {
		return err
	}
	if err := h.wctrl(B2HAtn); err != nil {
		return err
	}
	if err := h.wctrl(ClrRdPtr); err != nil {
		return err
	}
	n, err := h.readBuf()
	if err != nil {
		return err
	}
	for i := 0; i < int(n); i++ {
		if _, err := h.readBuf(); err != nil {
			return err
		}
	}
	return h.wctrl(HBusy)
}

// resetFlags puts the handshake bits in a known state: H_BUSY clear,
// the write pointer at the start, SMS_ATN clear (the kernel's
// reset_flags, without its write of the BMC hardware-reset bit).
func (h *Host) resetFlags() error {
	c, err := h.ctrl()
	if err != nil {
		return err
	}
	if c != NoInterface && c&HBusy != 0 {
		if err := h.wctrl(HBusy); err != nil {
			return err
		}
	}
	if err := h.wctrl(ClrWrPtr); err != nil {
		return err
	}
	return h.wctrl(SMSAtn)
}

func (h *Host) fail(phase string, c uint8, err error) *OpError {
	return &OpError{Phase: phase, Ctrl: c, Err: err, TimedOut: errors.Is(err, ErrTimeout)}
}

func (h *Host) ctrl() (uint8, error) {
	h.c.ctrlReads.Add(1)
	return h.p.ReadCtrl()
}

func (h *Host) wctrl(v uint8) error {
	h.c.ctrlWrites.Add(1)
	return h.p.WriteCtrl(v)
}

func (h *Host) readBuf() (uint8, error) {
	h.c.bufReads.Add(1)
	return h.p.ReadBuf()
}

// wait polls the control register until done reports true, done fails,
// or dl passes (ErrTimeout with the last value seen), spinning first and
// then sleeping (portwait). A register reading 0xFF ends the wait at once
// with ErrNoInterface, so a missing interface does not cost the deadline.
func (h *Host) wait(dl time.Time, done func(c uint8) (bool, error)) (uint8, error) {
	p := portwait.Policy{Spin: h.cfg.SpinFor, MinSleep: h.cfg.MinSleep, MaxSleep: h.cfg.MaxSleep}
	var w portwait.Wait
	for {
		c, err := h.ctrl()
		if err != nil {
			return c, err
		}
		if c == NoInterface {
			return c, ErrNoInterface
		}
		ok, err := done(c)
		if err != nil {
			return c, err
		}
		if ok {
			return c, nil
		}
		if !w.Pause(p, dl, &h.c.wait) {
			return c, ErrTimeout
		}
	}
}
