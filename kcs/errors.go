package kcs

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/ipmi-cuse/ipmi-cuse/internal/timeout"
)

// Sentinel errors callers branch on. Transact returns them wrapped in an
// *OpError carrying the phase, byte index and status seen.
var (
	// ErrTimeout: a wait for IBF/OBF did not finish in time, or the
	// transaction deadline passed. errors.Is(err, os.ErrDeadlineExceeded)
	// is true as well.
	ErrTimeout error = timeout.Error("kcs: timeout")
	// ErrProtocol: the BMC was in an unexpected state or sent garbage.
	ErrProtocol = errors.New("kcs: protocol error")
	// ErrNoInterface: the status register reads 0xFF (nothing at the port).
	ErrNoInterface = errors.New("kcs: no interface (status reads 0xff)")
	// ErrResponseTooLong: the response exceeded MaxResponse bytes; the first
	// MaxResponse bytes are returned with it (as the kernel truncates).
	ErrResponseTooLong = errors.New("kcs: response longer than 272 bytes, truncated")
	// ErrResponseTooShort: the response had fewer than 3 bytes (no
	// completion code). It also matches ErrProtocol. The bytes read are
	// returned with it, so the caller can pad them as the kernel does.
	ErrResponseTooShort = fmt.Errorf("%w: response shorter than 3 bytes", ErrProtocol)
	// ErrRequestTooShort: the request has fewer than 2 bytes (netfn/lun, cmd).
	ErrRequestTooShort = errors.New("kcs: request shorter than 2 bytes")
	// ErrRequestTooLong: the request exceeds MaxRequest bytes.
	ErrRequestTooLong = errors.New("kcs: request longer than 272 bytes")
)

// BMCError is a non-zero KCS error status code the BMC reported during the
// GET_STATUS/ABORT recovery sequence. Transact returns it (inside an
// *OpError) only when it gave up; a recovery followed by a successful retry
// returns no error.
type BMCError struct {
	// Code is the KCS error status code (ErrCodeAborted, ...).
	Code uint8
}

// Error names the KCS error code, so logs say what the BMC reported.
func (e *BMCError) Error() string {
	var what string
	switch e.Code {
	case ErrCodeNone:
		what = "no error"
	case ErrCodeAborted:
		what = "aborted by command"
	case ErrCodeIllegalControl:
		what = "illegal control code"
	case ErrCodeLength:
		what = "length error"
	case ErrCodeUnspecified:
		what = "unspecified error"
	default:
		what = "reserved code"
	}
	return "kcs: BMC error status 0x" + strconv.FormatUint(uint64(e.Code), 16) + " (" + what + ")"
}

// Phases reported in OpError.Phase.
const (
	PhaseStart    = "start"     // checking the interface is idle before WRITE_START
	PhaseWrite    = "write"     // sending request bytes
	PhaseWriteEnd = "write-end" // WRITE_END before the last request byte
	PhaseRead     = "read"      // reading response bytes
	PhaseRecovery = "recovery"  // the GET_STATUS/ABORT error recovery sequence
	PhaseRequest  = "request"   // validating the request before touching the ports
)

// OpError describes a failed transaction: where it failed, what the status
// register said, and why (Err). It unwraps to Err and, when the BMC
// reported an error status code during the last recovery, to BMC as well.
type OpError struct {
	// Phase is one of the Phase* constants.
	Phase string
	// Index is the request byte index (write phases), the number of response
	// bytes read (read phase), the request length (request phase), or -1.
	Index int
	// Status is the last status register value seen.
	Status Status
	// Attempts is the number of times the request was started (1 = no retry).
	Attempts int
	// Err is the cause: a sentinel above or a Port error.
	Err error
	// BMC is the error status code read by the last recovery, or nil.
	BMC *BMCError
}

// Error describes where in the transaction it failed (phase, byte, status
// seen, attempts) and why.
func (e *OpError) Error() string {
	s := "kcs: " + e.Phase + " phase"
	if e.Index >= 0 {
		s += ", byte " + strconv.Itoa(e.Index)
	}
	if e.Phase != PhaseRequest {
		s += ", status " + e.Status.String()
	}
	if e.Attempts > 1 {
		s += ", after " + strconv.Itoa(e.Attempts) + " attempts"
	}
	s += ": " + e.Err.Error()
	if e.BMC != nil {
		s += "; last " + e.BMC.Error()[len("kcs: "):]
	}
	return s
}

// Unwrap returns the cause and the BMC error code, if any.
func (e *OpError) Unwrap() []error {
	if e.BMC != nil {
		return []error{e.Err, e.BMC}
	}
	return []error{e.Err}
}

// Timeout reports whether the cause is a timeout.
func (e *OpError) Timeout() bool { return errors.Is(e.Err, ErrTimeout) }

// waitError is the cause of a failed IBF/OBF wait, with what was awaited.
type waitError struct {
	what string // "IBF=0" or "OBF=1"
	err  error
}

func (e *waitError) Error() string { return e.err.Error() + " waiting for " + e.what }
func (e *waitError) Unwrap() error { return e.err }
