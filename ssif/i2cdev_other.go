//go:build !linux

package ssif

import (
	"errors"
	"os"
)

// DevBus is not available on this platform.
type DevBus struct{}

// OpenDevBus is not available on this platform.
func OpenDevBus(bus int, addr uint8) (*DevBus, error) {
	return nil, errors.New("ssif: i2c-dev is Linux only")
}

// NewDevBus is not available on this platform.
func NewDevBus(f *os.File, addr uint8) (*DevBus, error) {
	return nil, errors.New("ssif: i2c-dev is Linux only")
}

// BusOf is not available on this platform.
func BusOf(f *os.File) (int, error) { return 0, errors.New("ssif: i2c-dev is Linux only") }
