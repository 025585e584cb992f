// Package ssif drives an IPMI SMBus System Interface (SSIF, IPMI v2.0
// section 12) from the host side, over a small SMBus interface so the
// same code runs against a real bus (/dev/i2c-N through i2c-dev) and a
// simulated BMC.
//
// A request is one SMBus block write (command 02h) of up to 32 bytes, or a
// multi-part write (06h start, 07h middle, 08h end) for longer ones; the
// response is read with block reads (03h), and a response over 32 bytes
// comes in parts (a first block starting 00h 01h, then 09h reads whose
// first byte is the block number, FFh for the last). A BMC that is busy
// NAKs its address: the host retries, as the Linux driver
// (drivers/char/ipmi/ipmi_ssif.c) does, within a bounded time.
package ssif

import (
	"errors"
)

// Bus is an SMBus with the BMC at a fixed address, as the host sees it.
// Every error is a failed bus transaction; errors for which Retryable
// reports true (a NAK while the BMC is busy, a bus timeout or arbitration
// loss) are retried, any other ends the transaction.
type Bus interface {
	// WriteBlock is an SMBus block write: command code, byte count, data
	// (at most BlockMax bytes).
	WriteBlock(cmd uint8, data []byte) error
	// ReadBlock is an SMBus block read: command code, then the device
	// sends a byte count and that many bytes, copied into buf (which holds
	// BlockMax bytes). It returns the count.
	ReadBlock(cmd uint8, buf []byte) (int, error)
}

// BlockMax is the longest SMBus block (I2C_SMBUS_BLOCK_MAX).
const BlockMax = 32

// SSIF SMBus command codes (IPMI v2.0 table 12-2/12-3).
const (
	CmdWrite       uint8 = 0x02 // single-part write
	CmdWriteStart  uint8 = 0x06 // multi-part write: first 32 bytes
	CmdWriteMiddle uint8 = 0x07 // multi-part write: next 32 bytes
	CmdWriteEnd    uint8 = 0x08 // multi-part write: the last 1..32 bytes
	CmdRead        uint8 = 0x03 // single-part read, or the first part
	CmdReadMiddle  uint8 = 0x09 // multi-part read: next block
)

// ErrNAK is what a simulated bus returns for a NAK (the BMC is busy or
// has no response yet). Real buses return errnos (see Retryable).
var ErrNAK = errors.New("ssif: NAK")

// Retryable reports whether a bus error is one a busy BMC causes (a NAK,
// a timeout, a lost arbitration), which the SSIF rules retry, rather than
// a failure of the bus itself.
func Retryable(err error) bool {
	if errors.Is(err, ErrNAK) {
		return true
	}
	var r interface{ Retryable() bool }
	return errors.As(err, &r) && r.Retryable()
}
