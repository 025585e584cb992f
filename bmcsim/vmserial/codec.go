// Package vmserial is the BMC side of OpenIPMI's "VM" serial protocol, the
// one QEMU's ipmi-bmc-extern device speaks over a character device (a TCP
// socket in the testbed). It puts a bmcsim.Responder behind that socket so
// a guest's KCS interface reaches the simulated BMC.
//
// Wire format (QEMU hw/ipmi/ipmi_bmc_extern.c, OpenIPMI lanserv): a message
// is seq, netfn<<2|lun, cmd, data..., checksum, terminated by 0xA0; the
// checksum makes the sum of all bytes, seq included, zero mod 256. A
// control command is op, args..., terminated by 0xA1. Inside a frame the
// bytes 0xA0, 0xA1 and 0xAA are sent as 0xAA followed by the byte with bit
// 4 set.
package vmserial

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Special bytes of the protocol.
const (
	MsgChar    = 0xA0 // ends a message
	CmdChar    = 0xA1 // ends a control command
	EscapeChar = 0xAA // the next byte has bit 4 set and must have it cleared
)

// Control command operations (first byte of a command frame).
const (
	OpNoAttn           = 0x00 // BMC→QEMU: clear SMS_ATN
	OpAttn             = 0x01 // BMC→QEMU: set SMS_ATN
	OpAttnIRQ          = 0x02 // BMC→QEMU: set SMS_ATN and raise the interrupt
	OpPowerOff         = 0x03 // BMC→QEMU: power the VM off
	OpReset            = 0x04 // both: reset the VM / QEMU reports a VM reset
	OpEnableIRQ        = 0x05 // BMC→QEMU: enable the interface interrupt
	OpDisableIRQ       = 0x06 // BMC→QEMU: disable it
	OpSendNMI          = 0x07 // BMC→QEMU: NMI to the guest
	OpCapabilities     = 0x08 // QEMU→BMC: capability bits follow
	OpGracefulShutdown = 0x09 // BMC→QEMU: ACPI shutdown request
	OpVersion          = 0xFF // QEMU→BMC: protocol version follows
)

// Capability bits of OpCapabilities.
const (
	CapPower            = 0x01
	CapReset            = 0x02
	CapIRQ              = 0x04
	CapNMI              = 0x08
	CapAttn             = 0x10
	CapGracefulShutdown = 0x20
)

// MaxBody is the longest unescaped frame body accepted: QEMU's
// MAX_IPMI_MSG_SIZE (300) plus sequence number and checksum.
const MaxBody = 302

// Kind tells messages from control commands.
type Kind uint8

// Frame kinds.
const (
	KindMessage Kind = iota // an IPMI message, terminated by 0xA0
	KindCommand             // a control command, terminated by 0xA1
)

// Frame is one decoded frame. For a message, Seq is the sequence number
// and Data is netfn<<2|lun, cmd, [completion code,] data (no checksum).
// For a command, Seq is zero and Data is the op followed by its arguments.
type Frame struct {
	Kind Kind
	Seq  byte
	Data []byte
}

// Frame errors. All wrap ErrBadFrame, so a reader can tell a frame to
// drop (errors.Is(err, ErrBadFrame)) from an I/O error.
var (
	ErrBadFrame = errors.New("bad frame")
	ErrChecksum = fmt.Errorf("%w: checksum", ErrBadFrame)
	ErrShort    = fmt.Errorf("%w: too short", ErrBadFrame)
	ErrTooLong  = fmt.Errorf("%w: too long", ErrBadFrame)
	ErrEscape   = fmt.Errorf("%w: escape not followed by a data byte", ErrBadFrame)
	ErrNoEnd    = fmt.Errorf("%w: no terminator", ErrBadFrame)
)

func addEscaped(dst []byte, c byte) []byte {
	switch c {
	case MsgChar, CmdChar, EscapeChar:
		return append(dst, EscapeChar, c|0x10)
	}
	return append(dst, c)
}

// Encode appends the wire form of f to dst: escaped body, checksum for a
// message, terminator.
func Encode(dst []byte, f Frame) []byte {
	if f.Kind == KindCommand {
		for _, c := range f.Data {
			dst = addEscaped(dst, c)
		}
		return append(dst, CmdChar)
	}
	sum := f.Seq
	dst = addEscaped(dst, f.Seq)
	for _, c := range f.Data {
		sum += c
		dst = addEscaped(dst, c)
	}
	dst = addEscaped(dst, -sum)
	return append(dst, MsgChar)
}

// Decode decodes one frame in wire form, raw = escaped body followed by
// its terminator. A message needs seq, netfn, cmd and checksum (4 bytes)
// and a correct checksum; a command needs its op byte.
func Decode(raw []byte) (Frame, error) {
	if len(raw) == 0 {
		return Frame{}, ErrNoEnd
	}
	term := raw[len(raw)-1]
	if term != MsgChar && term != CmdChar {
		return Frame{}, ErrNoEnd
	}
	body := make([]byte, 0, len(raw))
	esc := false
	for _, c := range raw[:len(raw)-1] {
		switch {
		case c == MsgChar || c == CmdChar:
			return Frame{}, fmt.Errorf("%w: terminator %#x inside the frame", ErrBadFrame, c)
		case c == EscapeChar:
			if esc {
				return Frame{}, ErrEscape
			}
			esc = true
			continue
		case esc:
			c &^= 0x10
			esc = false
		}
		if len(body) >= MaxBody {
			return Frame{}, ErrTooLong
		}
		body = append(body, c)
	}
	if esc {
		return Frame{}, ErrEscape
	}
	if term == CmdChar {
		if len(body) < 1 {
			return Frame{}, ErrShort
		}
		return Frame{Kind: KindCommand, Data: body}, nil
	}
	if len(body) < 4 {
		return Frame{}, ErrShort
	}
	var sum byte
	for _, c := range body {
		sum += c
	}
	if sum != 0 {
		return Frame{}, ErrChecksum
	}
	return Frame{Kind: KindMessage, Seq: body[0], Data: body[1 : len(body)-1]}, nil
}

// Reader splits a byte stream into frames.
type Reader struct {
	r   *bufio.Reader
	raw []byte
}

// NewReader returns a Reader reading frames from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReader(r)} }

// Next returns the next frame. A malformed frame gives an error wrapping
// ErrBadFrame and the stream stays usable (the bad frame is skipped, as
// QEMU does); any other error is the underlying reader's and is final.
func (r *Reader) Next() (Frame, error) {
	r.raw = r.raw[:0]
	tooLong := false
	for {
		c, err := r.r.ReadByte()
		if err != nil {
			return Frame{}, err
		}
		if len(r.raw) < 2*MaxBody+2 {
			r.raw = append(r.raw, c)
		} else if c != MsgChar && c != CmdChar {
			tooLong = true
			continue
		}
		if c == MsgChar || c == CmdChar {
			if tooLong {
				return Frame{}, ErrTooLong
			}
			if len(r.raw) == 1 && c == CmdChar {
				return Frame{}, ErrShort
			}
			return Decode(r.raw)
		}
	}
}
