// Package timeout declares the timeout error of the transports (kcs, bt,
// ssif) once. errors.Is matches it against os.ErrDeadlineExceeded and its
// Timeout method reports true, so the engine and the ioctl layer classify
// any transport's timeout without importing the transport.
package timeout

import "os"

// Error is a transport's timeout; its value is the message ("kcs:
// timeout"). Each transport declares its ErrTimeout as one Error, so
// errors.Is(err, kcs.ErrTimeout) stays true only for that transport's.
type Error string

func (e Error) Error() string { return string(e) }

// Timeout reports true: the interface{ Timeout() bool } check of net.Error.
func (Error) Timeout() bool { return true }

// Temporary reports true: waiting longer, or again, may succeed.
func (Error) Temporary() bool { return true }

// Is matches os.ErrDeadlineExceeded.
func (Error) Is(target error) bool { return target == os.ErrDeadlineExceeded }
