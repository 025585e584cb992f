package kcs

import (
	"errors"
	"log/slog"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/internal/portwait"
)

// Config tunes a Host. Zero values mean the defaults, which follow the
// Linux driver (drivers/char/ipmi/ipmi_kcs_sm.c) where it has one.
type Config struct {
	// WaitTimeout bounds one wait for IBF=0 or OBF=1; when it passes the
	// host runs error recovery and retries. Default 5s, as the kernel.
	WaitTimeout time.Duration
	// TransactionTimeout bounds one whole Transact call, error recovery and
	// retries included. Default 10s.
	TransactionTimeout time.Duration
	// MaxErrorRetries is how many times a request is restarted after error
	// recovery before Transact gives up. Default 10, as the kernel; the
	// deadline bounds it too. A negative value means no retries.
	MaxErrorRetries int
	// SpinFor is how long each wait busy-polls the status register before
	// it starts sleeping. Default 20µs: most BMCs take a byte in a few µs,
	// so a short spin avoids a sleep per byte without burning a CPU on a
	// slow BMC.
	SpinFor time.Duration
	// MinSleep is the first sleep after the spin; each further sleep in the
	// same wait doubles, up to MaxSleep. Defaults 20µs and 1ms.
	MinSleep time.Duration
	// MaxSleep caps the sleep between status polls. Default 1ms.
	MaxSleep time.Duration
	// ErrorStatusWait bounds the drain of a stuck OBF at the start of error
	// recovery (the kernel's ERROR0 2 s wait). Default 2s.
	ErrorStatusWait time.Duration
	// Logger receives one Debug line per error recovery. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Defaults for Config.
const (
	DefaultWaitTimeout        = 5 * time.Second
	DefaultTransactionTimeout = 10 * time.Second
	DefaultMaxErrorRetries    = 10
	DefaultSpinFor            = 20 * time.Microsecond
	DefaultMinSleep           = 20 * time.Microsecond
	DefaultMaxSleep           = time.Millisecond
	DefaultErrorStatusWait    = 2 * time.Second
)

func (c Config) withDefaults() Config {
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = DefaultWaitTimeout
	}
	if c.TransactionTimeout <= 0 {
		c.TransactionTimeout = DefaultTransactionTimeout
	}
	if c.MaxErrorRetries == 0 {
		c.MaxErrorRetries = DefaultMaxErrorRetries
	} else if c.MaxErrorRetries < 0 {
		c.MaxErrorRetries = 0
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
	if c.ErrorStatusWait <= 0 {
		c.ErrorStatusWait = DefaultErrorStatusWait
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Stats are cumulative counters of a Host, cheap enough to keep always on;
// benchmarks and health reports read them.
type Stats struct {
	Transactions  uint64        // Transact calls
	Failures      uint64        // Transact calls that returned an error
	StatusReads   uint64        // status register reads
	DataReads     uint64        // data register reads
	DataWrites    uint64        // data register writes (request bytes, READ, 0x00)
	CommandWrites uint64        // command register writes
	Sleeps        uint64        // sleeps between status polls
	SleepTime     time.Duration // total time asked to sleep
	Recoveries    uint64        // GET_STATUS/ABORT recovery sequences run
	Retries       uint64        // request restarts after an error
	Timeouts      uint64        // IBF/OBF waits that timed out
	// WaitTimeoutsIBF and WaitTimeoutsOBF split Timeouts by the flag
	// waited for (IBF clear: the BMC did not take a byte; OBF set: it did
	// not answer).
	WaitTimeoutsIBF, WaitTimeoutsOBF uint64
	// FailuresByKind splits Failures by ClassifyFailure.
	FailuresByKind [numFailureKinds]uint64
}

type counters struct {
	transactions, failures, statusReads, dataReads, dataWrites, commandWrites atomic.Uint64
	recoveries, retries, timeouts, timeoutsOBF                                atomic.Uint64
	byKind                                                                    [numFailureKinds]atomic.Uint64
	wait                                                                      portwait.Counters
}

// Host is the host side of one KCS interface. It is not safe for
// concurrent use: one goroutine (the engine) owns it and the Port, as the
// hardware allows only one transaction at a time. Stats may be called from
// any goroutine.
type Host struct {
	p   Port
	cfg Config
	c   counters
	// dirty is set when a transaction ended with the interface in an
	// unknown state; the next Transact runs error recovery first.
	dirty bool
	// bound is set once the goroutine using the Host has been locked to
	// its OS thread and the port's BindThread succeeded there.
	bound bool
}

// bindThread makes sure a port whose access right belongs to one OS thread
// (ThreadBinder) can be used from the calling goroutine: on first use it
// locks the goroutine to its thread for good and binds the port there. A
// Host is used by one goroutine (the engine's), so this happens once.
func (h *Host) bindThread() error {
	if h.bound {
		return nil
	}
	tb, ok := h.p.(ThreadBinder)
	if !ok || !threadBound(h.p) {
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

// threadBound reports whether p's access belongs to one thread: a
// ThreadBinder is, unless it says otherwise with a ThreadBound method.
func threadBound(p Port) bool {
	if tb, ok := p.(interface{ ThreadBound() bool }); ok {
		return tb.ThreadBound()
	}
	_, ok := p.(ThreadBinder)
	return ok
}

// AnyThread reports whether Transact and Attention may be called from any
// goroutine (one at a time): the port's access does not belong to one OS
// thread. When it is false, the first goroutine to call them is locked to
// its thread, and every later call must come from that goroutine.
func (h *Host) AnyThread() bool { return !threadBound(h.p) }

// New returns a Host driving p with cfg (zero fields take defaults).
func New(p Port, cfg Config) *Host {
	return &Host{p: p, cfg: cfg.withDefaults()}
}

// Config returns the effective configuration, defaults filled in.
func (h *Host) Config() Config { return h.cfg }

// Stats returns a snapshot of the counters.
func (h *Host) Stats() Stats {
	s := Stats{
		Transactions:  h.c.transactions.Load(),
		Failures:      h.c.failures.Load(),
		StatusReads:   h.c.statusReads.Load(),
		DataReads:     h.c.dataReads.Load(),
		DataWrites:    h.c.dataWrites.Load(),
		CommandWrites: h.c.commandWrites.Load(),
		Sleeps:        h.c.wait.Sleeps.Load(),
		SleepTime:     time.Duration(h.c.wait.SleepNanos.Load()),
		Recoveries:    h.c.recoveries.Load(),
		Retries:       h.c.retries.Load(),
		Timeouts:      h.c.timeouts.Load(),
	}
	s.WaitTimeoutsOBF = h.c.timeoutsOBF.Load()
	s.WaitTimeoutsIBF = s.Timeouts - s.WaitTimeoutsOBF
	for i := range s.FailuresByKind {
		s.FailuresByKind[i] = h.c.byKind[i].Load()
	}
	return s
}

// Attention reads the status register once and reports whether SMS_ATN is
// set, for the engine to poll while idle. It returns ErrNoInterface if the
// status reads 0xFF.
func (h *Host) Attention() (bool, error) {
	if err := h.bindThread(); err != nil {
		return false, &OpError{Phase: PhaseStart, Index: -1, Err: err}
	}
	s, err := h.status()
	if err != nil {
		return false, &OpError{Phase: PhaseStart, Index: -1, Err: err}
	}
	if s == NoInterface {
		return false, &OpError{Phase: PhaseStart, Index: -1, Status: s, Err: ErrNoInterface}
	}
	return s&SMSAtn != 0, nil
}

// Transact sends one request and reads its response. msg is
// netfn<<2|lun, cmd, data...; the response (netfn<<2|lun, cmd, cc, data...)
// is appended to resp[:0] and returned. It does not check that the response
// matches the request (the message layer does, as in Linux).
//
// Transact never takes longer than min(deadline, now+TransactionTimeout)
// (a zero deadline means TransactionTimeout alone), plus at most one status
// poll. On an ERROR state, an out-of-sequence state or a wait timeout it
// runs the GET_STATUS/ABORT recovery sequence and restarts the request, up
// to MaxErrorRetries times. Errors are *OpError wrapping a sentinel:
// ErrTimeout, ErrProtocol, ErrNoInterface, ErrRequestTooShort/TooLong,
// ErrResponseTooShort, ErrResponseTooLong (with the first 272 bytes
// returned), a Port error, and, when the BMC reported one, a *BMCError.
// After an error the next Transact recovers the interface first.
//
// With a resp of capacity MaxResponse, a successful Transact allocates
// nothing.
func (h *Host) Transact(msg, resp []byte, deadline time.Time) ([]byte, error) {
	h.c.transactions.Add(1)
	resp = resp[:0]
	if len(msg) < 2 {
		err := &OpError{Phase: PhaseRequest, Index: len(msg), Attempts: 0, Err: ErrRequestTooShort}
		h.countFailure(err)
		return resp, err
	}
	if len(msg) > MaxRequest {
		err := &OpError{Phase: PhaseRequest, Index: len(msg), Attempts: 0, Err: ErrRequestTooLong}
		h.countFailure(err)
		return resp, err
	}
	if err := h.bindThread(); err != nil {
		err := &OpError{Phase: PhaseStart, Index: -1, Err: err}
		h.countFailure(err)
		return resp, err
	}
	now := time.Now()
	dl := now.Add(h.cfg.TransactionTimeout)
	if !deadline.IsZero() && deadline.Before(dl) {
		dl = deadline
	}
	if !now.Before(dl) {
		err := &OpError{Phase: PhaseStart, Index: -1, Err: &waitError{what: "the start (deadline already passed)", err: ErrTimeout}}
		h.countFailure(err)
		return resp, err
	}
	out, err := h.transact(msg, resp, dl)
	if err != nil {
		h.countFailure(err)
	}
	return out, err
}

func (h *Host) transact(msg, resp []byte, dl time.Time) ([]byte, error) {
	var lastBMC *BMCError
	attempts := 0
	for errorsSeen := 0; ; errorsSeen++ {
		if h.dirty {
			code, err := h.recover(dl)
			if err != nil {
				var op *OpError
				if errors.As(err, &op) {
					op.Attempts = attempts
					op.BMC = lastBMC
				}
				if h.final(err, dl) || errorsSeen >= h.cfg.MaxErrorRetries {
					return resp[:0], err
				}
				h.c.retries.Add(1)
				continue
			}
			h.dirty = false
			if code != ErrCodeNone {
				lastBMC = &BMCError{Code: code}
			}
		}
		attempts++
		out, err := h.once(msg, resp, dl)
		if err == nil {
			return out, nil
		}
		op := err.(*OpError)
		op.Attempts = attempts
		op.BMC = lastBMC
		switch {
		case errors.Is(op.Err, ErrResponseTooLong), errors.Is(op.Err, ErrResponseTooShort):
			// The transaction itself completed; the interface is idle.
			return out, err
		}
		h.dirty = true
		if h.final(err, dl) || errorsSeen >= h.cfg.MaxErrorRetries {
			return out[:0], err
		}
		h.c.retries.Add(1)
	}
}

// final reports whether err ends the transaction without retry: the
// deadline passed, there is no interface, or the Port itself failed.
func (h *Host) final(err error, dl time.Time) bool {
	if !time.Now().Before(dl) {
		return true
	}
	op := err.(*OpError)
	var we *waitError
	switch {
	case errors.Is(op.Err, ErrNoInterface):
		return true
	case errors.As(op.Err, &we), errors.Is(op.Err, ErrProtocol):
		return false
	}
	return true // a Port I/O error
}

// stateError is the cause when the interface is in an unexpected state.
type stateError struct {
	got  State
	want string
}

func (e *stateError) Error() string {
	return ErrProtocol.Error() + ": state " + e.got.String() + ", want " + e.want
}
func (e *stateError) Unwrap() error { return ErrProtocol }

func (h *Host) fail(phase string, idx int, s Status, err error) *OpError {
	return &OpError{Phase: phase, Index: idx, Status: s, Err: err}
}

// once runs one attempt: START_OP, the write phase and the read phase.
func (h *Host) once(msg, resp []byte, dl time.Time) ([]byte, error) {
	s, err := h.status()
	if err != nil {
		return resp, h.fail(PhaseStart, -1, s, err)
	}
	if s == NoInterface {
		return resp, h.fail(PhaseStart, -1, s, ErrNoInterface)
	}
	if s, err = h.waitIBF(dl); err != nil {
		return resp, h.fail(PhaseStart, -1, s, err)
	}
	if s.State() != StateIdle {
		return resp, h.fail(PhaseStart, -1, s, &stateError{s.State(), "IDLE"})
	}
	if err := h.drain(s); err != nil {
		return resp, h.fail(PhaseStart, -1, s, err)
	}
	if err := h.cmd(CmdWriteStart); err != nil {
		return resp, h.fail(PhaseStart, -1, s, err)
	}
	last := len(msg) - 1
	for i, b := range msg {
		if s, err = h.waitWriteState(dl); err != nil {
			return resp, h.fail(PhaseWrite, i, s, err)
		}
		if i == last {
			if err := h.cmd(CmdWriteEnd); err != nil {
				return resp, h.fail(PhaseWriteEnd, i, s, err)
			}
			if s, err = h.waitWriteState(dl); err != nil {
				return resp, h.fail(PhaseWriteEnd, i, s, err)
			}
		}
		if err := h.data(b); err != nil {
			return resp, h.fail(PhaseWrite, i, s, err)
		}
	}
	n := 0 // response bytes read, including discarded ones
	for {
		if s, err = h.waitIBF(dl); err != nil {
			return resp, h.fail(PhaseRead, n, s, err)
		}
		switch s.State() {
		case StateRead:
			// The status that showed IBF clear and READ shows OBF too
			// when the byte is already there (a fast BMC, nearly
			// always): read it without polling the status again, as
			// Linux's KCS state machine acts on one status read.
			if s&OBF == 0 {
				if s, err = h.waitOBF(dl, StateRead); err != nil {
					return resp, h.fail(PhaseRead, n, s, err)
				}
			}
			b, err := h.read()
			if err != nil {
				return resp, h.fail(PhaseRead, n, s, err)
			}
			if len(resp) < MaxResponse {
				resp = append(resp, b)
			} else if !time.Now().Before(dl) {
				// Only a misbehaving BMC sends this much; the byte count no
				// longer bounds the loop, so the deadline must.
				return resp, h.fail(PhaseRead, n, s, &waitError{what: "IDLE after an overlong response", err: ErrTimeout})
			}
			n++
			if err := h.data(CmdRead); err != nil {
				return resp, h.fail(PhaseRead, n, s, err)
			}
		case StateIdle:
			if n == 0 {
				// IDLE right after the write phase: the BMC dropped the
				// request (it reset) instead of answering. Linux would
				// return an empty reply; recovering and retrying gets the
				// real answer.
				return resp, h.fail(PhaseRead, n, s, &stateError{s.State(), "READ"})
			}
			// Transaction complete. Like Linux, do not wait for the dummy
			// byte (some BMCs never send it); drain it if it is there, and
			// the next START_OP drains it if it comes later.
			if err := h.drain(s); err != nil {
				return resp, h.fail(PhaseRead, n, s, err)
			}
			if n > MaxResponse {
				return resp, h.fail(PhaseRead, n, s, ErrResponseTooLong)
			}
			if n < 3 {
				return resp, h.fail(PhaseRead, n, s, ErrResponseTooShort)
			}
			return resp, nil
		default:
			return resp, h.fail(PhaseRead, n, s, &stateError{s.State(), "READ or IDLE"})
		}
	}
}

// waitWriteState waits for IBF=0, checks the state is WRITE and drains OBF.
func (h *Host) waitWriteState(dl time.Time) (Status, error) {
	s, err := h.waitIBF(dl)
	if err != nil {
		return s, err
	}
	if s.State() != StateWrite {
		return s, &stateError{s.State(), "WRITE"}
	}
	return s, h.drain(s)
}

// recover runs the GET_STATUS/ABORT sequence (IPMI v2.0 figure 9-8, the
// kernel's ERROR0..ERROR3) and returns the error status code the BMC
// reported. It leaves the interface IDLE on success.
func (h *Host) recover(dl time.Time) (uint8, error) {
	h.c.recoveries.Add(1)
	// ERROR0: drain OBF; if it stays set, keep draining for a while.
	edl := time.Now().Add(h.cfg.ErrorStatusWait)
	if dl.Before(edl) {
		edl = dl
	}
	var s Status
	var err error
	for {
		if s, err = h.status(); err != nil {
			return 0, h.fail(PhaseRecovery, -1, s, err)
		}
		if s == NoInterface {
			// Do not spend the deadline draining a floating bus.
			return 0, h.fail(PhaseRecovery, -1, s, ErrNoInterface)
		}
		if s&OBF == 0 || !time.Now().Before(edl) {
			break
		}
		if _, err := h.read(); err != nil {
			return 0, h.fail(PhaseRecovery, -1, s, err)
		}
	}
	if err := h.cmd(CmdGetStatusAbort); err != nil {
		return 0, h.fail(PhaseRecovery, -1, s, err)
	}
	// ERROR1
	if s, err = h.waitIBF(dl); err != nil {
		return 0, h.fail(PhaseRecovery, -1, s, err)
	}
	if err := h.drain(s); err != nil {
		return 0, h.fail(PhaseRecovery, -1, s, err)
	}
	if err := h.data(0x00); err != nil {
		return 0, h.fail(PhaseRecovery, -1, s, err)
	}
	// ERROR2
	if s, err = h.waitIBF(dl); err != nil {
		return 0, h.fail(PhaseRecovery, -1, s, err)
	}
	if s.State() != StateRead {
		return 0, h.fail(PhaseRecovery, -1, s, &stateError{s.State(), "READ"})
	}
	if s, err = h.waitOBF(dl, StateRead); err != nil {
		return 0, h.fail(PhaseRecovery, -1, s, err)
	}
	code, err := h.read()
	if err != nil {
		return 0, h.fail(PhaseRecovery, -1, s, err)
	}
	if err := h.data(CmdRead); err != nil {
		return 0, h.fail(PhaseRecovery, -1, s, err)
	}
	// ERROR3
	if s, err = h.waitIBF(dl); err != nil {
		return 0, h.fail(PhaseRecovery, -1, s, err)
	}
	if s.State() != StateIdle {
		return 0, h.fail(PhaseRecovery, -1, s, &stateError{s.State(), "IDLE"})
	}
	if err := h.drain(s); err != nil {
		return 0, h.fail(PhaseRecovery, -1, s, err)
	}
	h.cfg.Logger.Debug("kcs error recovery", "code", code)
	return code, nil
}

func (h *Host) status() (Status, error) {
	h.c.statusReads.Add(1)
	v, err := h.p.ReadStatus()
	return Status(v), err
}

func (h *Host) read() (uint8, error) {
	h.c.dataReads.Add(1)
	return h.p.ReadData()
}

func (h *Host) data(b uint8) error {
	h.c.dataWrites.Add(1)
	return h.p.WriteData(b)
}

func (h *Host) cmd(c uint8) error {
	h.c.commandWrites.Add(1)
	return h.p.WriteCommand(c)
}

// drain reads and discards a byte if s shows OBF set.
func (h *Host) drain(s Status) error {
	if s&OBF == 0 {
		return nil
	}
	_, err := h.read()
	return err
}

const (
	errWaitIBF = "IBF=0"
	errWaitOBF = "OBF=1"
)

// waitIBF polls until IBF is clear.
func (h *Host) waitIBF(dl time.Time) (Status, error) {
	return h.wait(dl, false, 0)
}

// waitOBF polls until OBF is set. It fails early with a protocol error if
// the state leaves st (the BMC reset or went to ERROR: no byte will come).
func (h *Host) waitOBF(dl time.Time, st State) (Status, error) {
	return h.wait(dl, true, st)
}

// wait is the polling loop: it polls the status register until the
// condition holds, the per-wait timeout (WaitTimeout from the first miss)
// passes, or dl passes, spinning first and then sleeping (portwait).
func (h *Host) wait(dl time.Time, obf bool, st State) (Status, error) {
	p := portwait.Policy{Spin: h.cfg.SpinFor, MinSleep: h.cfg.MinSleep, MaxSleep: h.cfg.MaxSleep, Limit: h.cfg.WaitTimeout}
	var w portwait.Wait
	for {
		s, err := h.status()
		if err != nil {
			return s, err
		}
		if obf {
			if s&OBF != 0 {
				return s, nil
			}
			if s&IBF == 0 && s.State() != st {
				return s, &stateError{s.State(), st.String() + " with OBF"}
			}
		} else if s&IBF == 0 {
			return s, nil
		}
		if !w.Pause(p, dl, &h.c.wait) {
			h.c.timeouts.Add(1)
			what := errWaitIBF
			if obf {
				what = errWaitOBF
				h.c.timeoutsOBF.Add(1)
			}
			return s, &waitError{what: what, err: ErrTimeout}
		}
	}
}

// countFailure counts a failed Transact.
func (h *Host) countFailure(err error) {
	h.c.failures.Add(1)
	h.c.byKind[ClassifyFailure(err)].Add(1)
}
