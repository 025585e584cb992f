package bmcsim

import "errors"

// Sentinel errors of the test-facing BMC methods.
var (
	// ErrQueueFull: the receive message queue or event buffer is full.
	ErrQueueFull = errors.New("queue full")
	// ErrBadArgument: a test helper was given malformed input.
	ErrBadArgument = errors.New("bad argument")
	// ErrNoSensor: no sensor has that number.
	ErrNoSensor = errors.New("no such sensor")
)
