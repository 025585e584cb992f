package kcs

import (
	"fmt"
	"os"

	"github.com/u-root/u-root/pkg/memio"
)

// OpenDevPortAccess opens /dev/port and returns it as a byte-wide
// memio.PortReadWriter with one pread/pwrite per access (the accessor
// OpenDevPort uses), for other port-I/O system interfaces (BT) that lay
// out their registers differently from KCS.
func OpenDevPortAccess() (memio.PortReadWriter, error) {
	f, err := os.OpenFile(DevPortPath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s for IPMI registers (needs root/CAP_SYS_RAWIO and CONFIG_DEVPORT): %w", DevPortPath, err)
	}
	return &devPort{f: f}, nil
}

// DevPortAccessFromFile is OpenDevPortAccess on an open /dev/port (one a
// process inherited: reading and writing it needs no capability). The
// accessor owns f and closes it.
func DevPortAccessFromFile(f *os.File) memio.PortReadWriter { return &devPort{f: f} }

// File returns /dev/port's open file, so a daemon can hand the descriptor
// to a successor process.
func (d *devPort) File() *os.File { return d.f }

// File returns the open /dev/port file behind p, or nil when p uses in/out
// instructions (or a fake).
func (p *IOPort) File() *os.File {
	if f, ok := p.rw.(interface{ File() *os.File }); ok {
		return f.File()
	}
	return nil
}
