package kcs

import (
	"errors"
	"fmt"
	"os"

	"github.com/u-root/u-root/pkg/memio"
)

// Default register addresses (DEFAULT_KCS_IO_PORT in Linux).
const (
	DefaultIOBase    = 0xCA2
	DefaultIOSpacing = 1
)

// IOConfig locates the KCS registers in x86 I/O space: data at Base,
// status/command at Base+Spacing (from SMBIOS type 38, ACPI or flags).
type IOConfig struct {
	// Base is the data register address; 0 means DefaultIOBase (0xCA2).
	Base uint16
	// Spacing is the distance to the status register; 0 means 1.
	Spacing uint16
}

// ErrUnsupported is returned by the real-port constructors on platforms
// without x86 I/O ports.
var ErrUnsupported = errors.New("kcs: I/O port access not supported on this platform")

// IOPort is a Port on real I/O ports, through a memio.PortReadWriter
// (in/out instructions after iopl, or /dev/port). Like the Host, it is for
// one goroutine at a time.
type IOPort struct {
	rw           memio.PortReadWriter
	data, status uint16
	buf          memio.Uint8 // reused so accesses do not allocate
	// bind, if set, grants the calling OS thread access to the ports
	// (iopl for in/out instructions).
	bind func() error
}

// ThreadBinder is implemented by ports whose access right belongs to one OS
// thread (x86 in/out after iopl). BindThread grants it to the calling
// thread; the caller must have locked its goroutine to that thread with
// runtime.LockOSThread and must make every access from it.
type ThreadBinder interface {
	BindThread() error
}

// ThreadBound reports whether access belongs to the thread BindThread ran
// on: in/out instructions where iopl could not be raised on every thread.
// It is false for /dev/port, whose access goes through a file descriptor,
// and for in/out once every thread holds iopl (see OpenArchPort).
func (p *IOPort) ThreadBound() bool { return p.bind != nil }

// BindThread grants the calling OS thread access to the ports. It does
// nothing when the port is not ThreadBound.
func (p *IOPort) BindThread() error {
	if p.bind == nil {
		return nil
	}
	return p.bind()
}

var _ Port = (*IOPort)(nil)

// NewIOPort returns a Port using rw at the addresses in cfg. It is the
// common part of OpenArchPort and OpenDevPort, and lets tests use a fake rw.
func NewIOPort(rw memio.PortReadWriter, cfg IOConfig) (*IOPort, error) {
	if cfg.Base == 0 {
		cfg.Base = DefaultIOBase
	}
	if cfg.Spacing == 0 {
		cfg.Spacing = DefaultIOSpacing
	}
	if uint32(cfg.Base)+uint32(cfg.Spacing) > 0xFFFF {
		return nil, fmt.Errorf("kcs: status register %#x+%#x is beyond the 16-bit I/O space", cfg.Base, cfg.Spacing)
	}
	return &IOPort{rw: rw, data: cfg.Base, status: cfg.Base + cfg.Spacing}, nil
}

// Addrs returns the data and status/command register addresses.
func (p *IOPort) Addrs() (data, status uint16) { return p.data, p.status }

// ReadStatus implements Port.
func (p *IOPort) ReadStatus() (uint8, error) { return p.in(p.status) }

// ReadData implements Port.
func (p *IOPort) ReadData() (uint8, error) { return p.in(p.data) }

// WriteCommand implements Port.
func (p *IOPort) WriteCommand(code uint8) error { return p.out(p.status, code) }

// WriteData implements Port.
func (p *IOPort) WriteData(b uint8) error { return p.out(p.data, b) }

// Close releases the underlying accessor (closes /dev/port).
func (p *IOPort) Close() error { return p.rw.Close() }

func (p *IOPort) in(addr uint16) (uint8, error) {
	if err := p.rw.In(addr, &p.buf); err != nil {
		return 0xFF, fmt.Errorf("kcs: inb %#x: %w", addr, err)
	}
	return uint8(p.buf), nil
}

func (p *IOPort) out(addr uint16, v uint8) error {
	p.buf = memio.Uint8(v)
	if err := p.rw.Out(addr, &p.buf); err != nil {
		return fmt.Errorf("kcs: outb %#x: %w", addr, err)
	}
	return nil
}

// devPort accesses /dev/port with one pread/pwrite per byte. memio's
// LinuxPort does a Seek plus a reflective binary.Read/Write per access (two
// syscalls and allocations, see BenchmarkDevPortAccess), too slow for a
// status polling loop.
type devPort struct {
	f *os.File
	b [1]byte
}

func (d *devPort) In(addr uint16, v memio.UintN) error {
	p, ok := v.(*memio.Uint8)
	if !ok {
		return fmt.Errorf("kcs: /dev/port access must be 8 bits, got %d", v.Size())
	}
	if _, err := d.f.ReadAt(d.b[:], int64(addr)); err != nil {
		return err
	}
	*p = memio.Uint8(d.b[0])
	return nil
}

func (d *devPort) Out(addr uint16, v memio.UintN) error {
	p, ok := v.(*memio.Uint8)
	if !ok {
		return fmt.Errorf("kcs: /dev/port access must be 8 bits, got %d", v.Size())
	}
	d.b[0] = uint8(*p)
	_, err := d.f.WriteAt(d.b[:], int64(addr))
	return err
}

func (d *devPort) Close() error { return d.f.Close() }

// DevPortPath is the device OpenDevPort opens.
var DevPortPath = "/dev/port"

// OpenDevPort opens /dev/port (needs CAP_SYS_RAWIO and a kernel with
// CONFIG_DEVPORT) and returns a Port at cfg's addresses. Each register
// access is one pread/pwrite system call.
func OpenDevPort(cfg IOConfig) (*IOPort, error) {
	f, err := os.OpenFile(DevPortPath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("kcs: open %s for KCS registers (needs root/CAP_SYS_RAWIO and CONFIG_DEVPORT): %w", DevPortPath, err)
	}
	p, err := NewIOPort(&devPort{f: f}, cfg)
	if err != nil {
		f.Close()
		return nil, err
	}
	return p, nil
}

// DevPortFromFile returns a Port at cfg's addresses on f, an open
// /dev/port (for a process that inherited it: opening /dev/port needs
// CAP_SYS_RAWIO, reading and writing an open one does not). The Port owns
// f and closes it.
func DevPortFromFile(f *os.File, cfg IOConfig) (*IOPort, error) {
	return NewIOPort(&devPort{f: f}, cfg)
}
