//go:build !(linux && (amd64 || 386))

package kcs

import "github.com/u-root/u-root/pkg/memio"

// OpenArchPort is not available on this platform: it returns ErrUnsupported.
func OpenArchPort(cfg IOConfig) (*IOPort, error) {
	return nil, ErrUnsupported
}

// OpenArchAccess is not available on this platform: it returns ErrUnsupported.
func OpenArchAccess() (rw memio.PortReadWriter, bind func() error, err error) {
	return nil, nil, ErrUnsupported
}
