//go:build !linux

package ssif

import "errors"

// DevBus is not available on this platform.
type DevBus struct{}

// OpenDevBus is not available on this platform.
func OpenDevBus(bus int, addr uint8) (*DevBus, error) {
	return nil, errors.New("ssif: i2c-dev is Linux only")
}
