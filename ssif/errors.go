package ssif

import (
	"errors"
	"os"
	"strconv"

	"github.com/ipmi-cuse/ipmi-cuse/internal/timeout"
)

// ccError carries the completion code the kernel's ipmi_ssif answers with
// (0xFF: it returns a "hosed" message); timeout marks a BMC that did not
// answer, which counts against its health.
type ccError struct {
	cc      uint8
	timeout bool
	msg     string
}

func (e *ccError) Error() string { return e.msg }

// CompletionCode is the completion code a client sees for this error.
func (e *ccError) CompletionCode() uint8 { return e.cc }

// Timeout reports whether the BMC failed to answer.
func (e *ccError) Timeout() bool { return e.timeout }

// Is matches os.ErrDeadlineExceeded for the errors of a BMC that did not
// answer.
func (e *ccError) Is(target error) bool { return e.timeout && target == os.ErrDeadlineExceeded }

// Sentinel errors callers branch on; Transact returns them inside an
// *OpError. Clients see completion code 0xFF for all but ErrTimeout, as
// with the kernel's ipmi_ssif, which returns a "hosed" message.
var (
	// ErrTimeout: the transaction deadline passed.
	ErrTimeout error = timeout.Error("ssif: timeout")
	// ErrWriteNAK: the BMC NAKed the request through every write retry.
	// It is a timeout too (the BMC is not answering).
	ErrWriteNAK error = &ccError{cc: 0xFF, timeout: true, msg: "ssif: the BMC NAKed the request through every retry"}
	// ErrNoResponse: the BMC NAKed every read of the response. It is a
	// timeout too.
	ErrNoResponse error = &ccError{cc: 0xFF, timeout: true, msg: "ssif: the BMC NAKed every read of the response"}
	// ErrRequestTooLong: the request is longer than the BMC takes (Get
	// System Interface Capabilities). Not sent.
	ErrRequestTooLong error = &ccError{cc: 0xFF, msg: "ssif: request longer than the BMC's maximum"}
	// ErrRequestTooShort: the request has fewer than 2 bytes.
	ErrRequestTooShort error = &ccError{cc: 0xFF, msg: "ssif: request shorter than 2 bytes"}
	// ErrProtocol: a response that breaks the SSIF rules (a multi-part
	// read out of sequence or with a short middle block through every
	// restart, or longer than 272 bytes, or shorter than 3).
	ErrProtocol = errors.New("ssif: protocol error")
)

// Phases reported in OpError.Phase.
const (
	PhaseRequest = "request" // validating the request
	PhaseWrite   = "write"   // writing the request (parts)
	PhaseRead    = "read"    // reading the response (parts)
)

// OpError describes a failed transaction.
type OpError struct {
	// Phase is one of the Phase* constants.
	Phase string
	// Part is the SMBus command of the failing transfer (CmdWrite...).
	Part uint8
	// Tries is the number of bus transfers of that kind tried.
	Tries int
	// Err is the cause: a sentinel above or a bus error.
	Err error
	// Last is the last bus error seen, if Err is not it.
	Last error
}

// Error says where the transaction failed and why.
func (e *OpError) Error() string {
	s := "ssif: " + e.Phase + " phase, command 0x" + strconv.FormatUint(uint64(e.Part), 16)
	if e.Tries > 1 {
		s += ", " + strconv.Itoa(e.Tries) + " tries"
	}
	s += ": " + e.Err.Error()
	if e.Last != nil && e.Last != e.Err {
		s += " (last: " + e.Last.Error() + ")"
	}
	return s
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }

// Timeout reports whether the BMC did not answer in time.
func (e *OpError) Timeout() bool {
	var t interface{ Timeout() bool }
	return errors.As(e.Err, &t) && t.Timeout()
}
