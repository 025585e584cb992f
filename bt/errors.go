package bt

import (
	"errors"
	"strconv"

	"github.com/ipmi-cuse/ipmi-cuse/internal/timeout"
)

// ccError is an error that carries the completion code the kernel's BT
// driver answers with for it; the ioctl layer uses CompletionCode.
type ccError struct {
	cc  uint8
	msg string
}

func (e *ccError) Error() string { return e.msg }

// CompletionCode is the completion code a client sees for this error.
func (e *ccError) CompletionCode() uint8 { return e.cc }

// Sentinel errors callers branch on. Transact returns them inside an
// *OpError.
var (
	// ErrTimeout: the BMC did not take the request or answer within the
	// response time, or the transaction deadline passed.
	// errors.Is(err, os.ErrDeadlineExceeded) is true as well.
	ErrTimeout error = timeout.Error("bt: timeout")
	// ErrBusy: the BMC kept B_BUSY set past the response time. As the
	// kernel does, the interface then refuses requests at once (without
	// touching the BMC) until B_BUSY clears. Clients see completion code
	// 0xC0 (node busy), as with the kernel.
	ErrBusy error = &ccError{cc: 0xC0, msg: "bt: BMC busy (B_BUSY set)"}
	// ErrRequestTooLong: the request does not fit the BMC's input buffer
	// (Get BT Interface Capabilities) or a BT length byte. Clients see
	// 0xC8 (request length exceeded).
	ErrRequestTooLong error = &ccError{cc: 0xC8, msg: "bt: request longer than the BMC's input buffer"}
	// ErrRequestTooShort: the request has fewer than 2 bytes (netfn, cmd).
	ErrRequestTooShort error = &ccError{cc: 0xC7, msg: "bt: request shorter than 2 bytes"}
	// ErrProtocol: the BMC sent a response with an impossible length.
	ErrProtocol = errors.New("bt: protocol error")
	// ErrNoInterface: the control and interrupt mask registers read 0xFF.
	ErrNoInterface = errors.New("bt: no interface (registers read 0xff)")
)

// Phases reported in OpError.Phase.
const (
	PhaseRequest = "request" // validating the request before touching the ports
	PhaseStart   = "start"   // waiting for the interface to be free
	PhaseWrite   = "write"   // writing the request and waiting for the BMC to take it
	PhaseRead    = "read"    // waiting for and reading the response
)

// OpError describes a failed transaction: where it failed, the control
// register seen last, how many attempts ran, and why (Err).
type OpError struct {
	// Phase is one of the Phase* constants.
	Phase string
	// Ctrl is the last control register value seen.
	Ctrl uint8
	// Seq is the sequence number of the last attempt.
	Seq uint8
	// Attempts is the number of times the request was written.
	Attempts int
	// Err is the cause: a sentinel above or a Port error.
	Err error
	// TimedOut is set when the time ran out (Err may be ErrBusy then).
	TimedOut bool
}

// Error says where the transaction failed and why.
func (e *OpError) Error() string {
	s := "bt: " + e.Phase + " phase, ctrl " + CtrlString(e.Ctrl) + ", seq " + strconv.Itoa(int(e.Seq))
	if e.Attempts > 1 {
		s += ", after " + strconv.Itoa(e.Attempts) + " attempts"
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the cause, and ErrTimeout when the time ran out.
func (e *OpError) Unwrap() []error {
	if e.TimedOut && e.Err != ErrTimeout {
		return []error{e.Err, ErrTimeout}
	}
	return []error{e.Err}
}

// Timeout reports whether the time ran out.
func (e *OpError) Timeout() bool { return e.TimedOut || errors.Is(e.Err, ErrTimeout) }

// CtrlString names the set bits of a control register value.
func CtrlString(v uint8) string {
	if v == 0 {
		return "[]"
	}
	names := []string{"CLR_WR", "CLR_RD", "H2B_ATN", "B2H_ATN", "SMS_ATN", "OEM0", "H_BUSY", "B_BUSY"}
	s := "["
	for i, n := range names {
		if v&(1<<i) != 0 {
			if len(s) > 1 {
				s += " "
			}
			s += n
		}
	}
	return s + "]"
}
