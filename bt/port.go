// Package bt drives an IPMI Block Transfer (BT) system interface from the
// host side (IPMI v2.0 section 11), over a small port interface so the same
// code runs against real I/O ports and a simulated BMC.
//
// A BT message is written whole into the BMC's buffer and read back whole
// from it: a length byte, netfn/LUN, a sequence number, the command and the
// data. The control register carries the handshake (H2B_ATN, B2H_ATN,
// H_BUSY, B_BUSY) and SMS_ATN. The host side follows the Linux driver
// (drivers/char/ipmi/ipmi_bt_sm.c) where the specification leaves a choice,
// and bounds every wait.
package bt

import (
	"errors"
	"fmt"
	"os"

	"github.com/u-root/u-root/pkg/memio"
)

// Port is the three BT registers as the host sees them: the control
// register at the base address, the host-to-BMC / BMC-to-host buffer at
// base+spacing and the interrupt mask at base+2*spacing. It is the only way
// the host state machine touches hardware.
type Port interface {
	// ReadCtrl reads BT_CTRL.
	ReadCtrl() (uint8, error)
	// WriteCtrl writes BT_CTRL (each 1 bit acts; 0 bits do nothing).
	WriteCtrl(v uint8) error
	// ReadBuf reads the next byte of the BMC-to-host buffer.
	ReadBuf() (uint8, error)
	// WriteBuf writes the next byte of the host-to-BMC buffer.
	WriteBuf(v uint8) error
	// ReadIntMask reads BT_INTMASK.
	ReadIntMask() (uint8, error)
	// WriteIntMask writes BT_INTMASK.
	WriteIntMask(v uint8) error
}

// BT_CTRL bits (IPMI v2.0 table 11-1).
const (
	// ClrWrPtr: write 1 to point the host-to-BMC buffer at its first byte.
	ClrWrPtr uint8 = 0x01
	// ClrRdPtr: write 1 to point the BMC-to-host buffer at its first byte.
	ClrRdPtr uint8 = 0x02
	// H2BAtn: the host writes 1 when a request is in the buffer; the BMC
	// clears it when it takes the request.
	H2BAtn uint8 = 0x04
	// B2HAtn: the BMC sets it when a response is in the buffer; the host
	// writes 1 to clear it.
	B2HAtn uint8 = 0x08
	// SMSAtn: the BMC has messages or events for the host; write 1 to clear.
	SMSAtn uint8 = 0x10
	// OEM0 is OEM-defined.
	OEM0 uint8 = 0x20
	// HBusy: the host is reading the BMC-to-host buffer. Writing 1 toggles it.
	HBusy uint8 = 0x40
	// BBusy: the BMC is busy with a request (read-only).
	BBusy uint8 = 0x80
)

// BT_INTMASK bits (IPMI v2.0 table 11-2).
const (
	// B2HIrqEn enables the BMC-to-host interrupt.
	B2HIrqEn uint8 = 0x01
	// B2HIrq is the interrupt status; write 1 to clear.
	B2HIrq uint8 = 0x02
	// BMCHwRst, written as 1, resets the BMC's hardware on BMCs that
	// implement it. The host never writes it.
	BMCHwRst uint8 = 0x80
)

// NoInterface is what the control register reads when nothing answers at
// the port address (a floating bus reads all ones; no BMC sets every bit).
const NoInterface uint8 = 0xFF

// IOConfig locates the BT registers in x86 I/O space (from SMBIOS type 38,
// ACPI or flags).
type IOConfig struct {
	// Base is the control register address; 0 means DefaultIOBase (0xE4).
	Base uint16
	// Spacing is the distance between registers; 0 means 1.
	Spacing uint16
}

// DefaultIOBase is where QEMU's isa-ipmi-bt and most BT BMCs live.
const DefaultIOBase = 0xE4

// ErrUnsupported is returned by the real-port constructors on platforms
// without x86 I/O ports.
var ErrUnsupported = errors.New("bt: I/O port access not supported on this platform")

// IOPort is a Port on real I/O ports, through a memio.PortReadWriter (in/out
// instructions after iopl, or /dev/port). It is for one goroutine at a time.
type IOPort struct {
	rw                 memio.PortReadWriter
	ctrl, buf, intmask uint16
	b                  memio.Uint8
	// bind, if set, grants the calling OS thread access (iopl).
	bind func() error
}

var _ Port = (*IOPort)(nil)

// NewIOPort returns a Port using rw at cfg's addresses; bind, if not nil,
// grants the calling thread access to the ports (see BindThread).
func NewIOPort(rw memio.PortReadWriter, cfg IOConfig, bind func() error) (*IOPort, error) {
	if cfg.Base == 0 {
		cfg.Base = DefaultIOBase
	}
	if cfg.Spacing == 0 {
		cfg.Spacing = 1
	}
	if uint32(cfg.Base)+2*uint32(cfg.Spacing) > 0xFFFF {
		return nil, fmt.Errorf("bt: interrupt mask register %#x+2*%#x is beyond the 16-bit I/O space", cfg.Base, cfg.Spacing)
	}
	return &IOPort{rw: rw, ctrl: cfg.Base, buf: cfg.Base + cfg.Spacing, intmask: cfg.Base + 2*cfg.Spacing, bind: bind}, nil
}

// BindThread grants the calling OS thread access to the ports (iopl); it
// does nothing for /dev/port. The Host calls it from its locked thread.
func (p *IOPort) BindThread() error {
	if p.bind == nil {
		return nil
	}
	return p.bind()
}

// Addrs returns the control, buffer and interrupt mask register addresses.
func (p *IOPort) Addrs() (ctrl, buf, intmask uint16) { return p.ctrl, p.buf, p.intmask }

// ReadCtrl implements Port.
func (p *IOPort) ReadCtrl() (uint8, error) { return p.in(p.ctrl) }

// WriteCtrl implements Port.
func (p *IOPort) WriteCtrl(v uint8) error { return p.out(p.ctrl, v) }

// ReadBuf implements Port.
func (p *IOPort) ReadBuf() (uint8, error) { return p.in(p.buf) }

// WriteBuf implements Port.
func (p *IOPort) WriteBuf(v uint8) error { return p.out(p.buf, v) }

// ReadIntMask implements Port.
func (p *IOPort) ReadIntMask() (uint8, error) { return p.in(p.intmask) }

// WriteIntMask implements Port.
func (p *IOPort) WriteIntMask(v uint8) error { return p.out(p.intmask, v) }

// Close releases the accessor (closes /dev/port).
func (p *IOPort) Close() error { return p.rw.Close() }

func (p *IOPort) in(addr uint16) (uint8, error) {
	if err := p.rw.In(addr, &p.b); err != nil {
		return 0xFF, fmt.Errorf("bt: inb %#x: %w", addr, err)
	}
	return uint8(p.b), nil
}

func (p *IOPort) out(addr uint16, v uint8) error {
	p.b = memio.Uint8(v)
	if err := p.rw.Out(addr, &p.b); err != nil {
		return fmt.Errorf("bt: outb %#x: %w", addr, err)
	}
	return nil
}

// File returns the open /dev/port file behind p, or nil when p uses in/out
// instructions, so a daemon can hand the descriptor to a successor.
func (p *IOPort) File() *os.File {
	if f, ok := p.rw.(interface{ File() *os.File }); ok {
		return f.File()
	}
	return nil
}
