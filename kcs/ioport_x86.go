//go:build linux && (amd64 || 386)

package kcs

import (
	"fmt"
	"syscall"

	"github.com/u-root/u-root/pkg/memio"
)

// OpenArchPort returns a Port using in/out instructions (memio.ArchPort)
// at cfg's addresses. It raises the I/O privilege level with iopl(3) first,
// so a refusal (EPERM without CAP_SYS_RAWIO, or a kernel without iopl
// emulation) is reported here rather than on the first access. This is the
// fastest access: no system call per register access.
func OpenArchPort(cfg IOConfig) (*IOPort, error) {
	if err := syscall.Iopl(3); err != nil {
		return nil, fmt.Errorf("kcs: iopl(3) for KCS I/O ports (needs root/CAP_SYS_RAWIO; try /dev/port): %w", err)
	}
	return NewIOPort(&memio.ArchPort{}, cfg)
}
