package kcs

import "errors"

// FailureKind classifies a failed Transact for operators (the metrics
// package labels KCS errors with it).
type FailureKind int

// The kinds of failed transactions, most specific first.
const (
	FailTimeout     FailureKind = iota // a wait or the transaction deadline ran out (ErrTimeout)
	FailBMCError                       // the BMC reported a KCS error code and retries were spent (*BMCError)
	FailNoInterface                    // the status register reads 0xFF (ErrNoInterface)
	FailTruncated                      // the response exceeded MaxResponse (ErrResponseTooLong)
	FailProtocol                       // unexpected state or garbage from the BMC (ErrProtocol)
	FailRequest                        // the request itself was invalid (too short or long)
	FailOther                          // anything else (the port failed)
	numFailureKinds
)

// FailureKinds lists every kind, in order, for iteration.
var FailureKinds = []FailureKind{FailTimeout, FailBMCError, FailNoInterface, FailTruncated, FailProtocol, FailRequest, FailOther}

// String is the kind's label value.
func (k FailureKind) String() string {
	switch k {
	case FailTimeout:
		return "timeout"
	case FailBMCError:
		return "bmc_error"
	case FailNoInterface:
		return "no_interface"
	case FailTruncated:
		return "truncated"
	case FailProtocol:
		return "protocol"
	case FailRequest:
		return "request"
	}
	return "other"
}

// ClassifyFailure returns the kind of a Transact error.
func ClassifyFailure(err error) FailureKind {
	var be *BMCError
	switch {
	case errors.Is(err, ErrTimeout):
		return FailTimeout
	case errors.As(err, &be):
		return FailBMCError
	case errors.Is(err, ErrNoInterface):
		return FailNoInterface
	case errors.Is(err, ErrResponseTooLong):
		return FailTruncated
	case errors.Is(err, ErrProtocol):
		return FailProtocol
	case errors.Is(err, ErrRequestTooShort), errors.Is(err, ErrRequestTooLong):
		return FailRequest
	}
	return FailOther
}
