//go:build !(linux && (amd64 || 386))

package kcs

// OpenArchPort is not available on this platform: it returns ErrUnsupported.
func OpenArchPort(cfg IOConfig) (*IOPort, error) {
	return nil, ErrUnsupported
}
