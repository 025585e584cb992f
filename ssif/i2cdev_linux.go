package ssif

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The i2c-dev ABI (include/uapi/linux/i2c-dev.h, i2c.h). x/sys/unix does
// not declare these.
const (
	ioctlI2CSlave = 0x0703 // I2C_SLAVE: set the address of later transfers
	ioctlI2CFuncs = 0x0705 // I2C_FUNCS: the adapter's functionality mask
	ioctlI2CSMBus = 0x0720 // I2C_SMBUS: one SMBus transfer

	smbusRead      = 1 // I2C_SMBUS_READ
	smbusWrite     = 0 // I2C_SMBUS_WRITE
	smbusBlockData = 5 // I2C_SMBUS_BLOCK_DATA

	funcSMBusReadBlock  = 0x01000000 // I2C_FUNC_SMBUS_READ_BLOCK_DATA
	funcSMBusWriteBlock = 0x02000000 // I2C_FUNC_SMBUS_WRITE_BLOCK_DATA
)

// smbusIoctlData is struct i2c_smbus_ioctl_data (16 bytes on 64-bit).
type smbusIoctlData struct {
	readWrite uint8
	command   uint8
	size      uint32
	data      *[BlockMax + 2]byte // union i2c_smbus_data: block[0] is the count
}

// DevBus is a Bus on /dev/i2c-N through i2c-dev. It is for one goroutine at
// a time.
type DevBus struct {
	f     *os.File
	addr  uint8
	block [BlockMax + 2]byte
}

var _ Bus = (*DevBus)(nil)

// errnoError is a bus errno with its retry classification.
type errnoError struct {
	op    string
	errno syscall.Errno
}

func (e *errnoError) Error() string { return "ssif: " + e.op + ": " + e.errno.Error() }
func (e *errnoError) Unwrap() error { return e.errno }

// Retryable: ENXIO and EREMOTEIO are a NAK of the address (what i2c-piix4
// and i2c-i801 return), EIO a NAK or bus error, EAGAIN lost arbitration,
// ETIMEDOUT a bus timeout, EBUSY a bus held by another master.
func (e *errnoError) Retryable() bool {
	switch e.errno {
	case unix.ENXIO, unix.EREMOTEIO, unix.EIO, unix.EAGAIN, unix.ETIMEDOUT, unix.EBUSY:
		return true
	}
	return false
}

// OpenDevBus opens /dev/i2c-bus, checks the adapter can do SMBus block
// reads and writes, and sets the BMC's 7-bit address.
func OpenDevBus(bus int, addr uint8) (*DevBus, error) {
	path := fmt.Sprintf("/dev/i2c-%d", bus)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("ssif: open %s (needs root and the i2c-dev module): %w", path, err)
	}
	b, err := NewDevBus(f, addr)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// NewDevBus is OpenDevBus on an open /dev/i2c-N (an inherited descriptor).
func NewDevBus(f *os.File, addr uint8) (*DevBus, error) {
	if addr == 0 || addr > 0x7F {
		return nil, fmt.Errorf("ssif: %#x is not a 7-bit SMBus address", addr)
	}
	var funcs uint64
	if err := ioctl(f, ioctlI2CFuncs, uintptr(unsafe.Pointer(&funcs))); err != nil {
		return nil, fmt.Errorf("ssif: I2C_FUNCS: %w", err)
	}
	if funcs&(funcSMBusReadBlock|funcSMBusWriteBlock) != funcSMBusReadBlock|funcSMBusWriteBlock {
		return nil, fmt.Errorf("ssif: the adapter cannot do SMBus block reads and writes (functionality %#x)", funcs)
	}
	if err := ioctl(f, ioctlI2CSlave, uintptr(addr)); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("ssif: address %#x is in use by a kernel driver (ipmi_ssif? unload it): %w", addr, err)
		}
		return nil, fmt.Errorf("ssif: I2C_SLAVE %#x: %w", addr, err)
	}
	return &DevBus{f: f, addr: addr}, nil
}

func ioctl(f *os.File, req, arg uintptr) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, arg)
	if e != 0 {
		return e
	}
	return nil
}

// File returns the open /dev/i2c-N, for a hand-over to a successor.
func (b *DevBus) File() *os.File { return b.f }

// Addr returns the BMC's 7-bit address.
func (b *DevBus) Addr() uint8 { return b.addr }

// Close closes the device.
func (b *DevBus) Close() error { return b.f.Close() }

// WriteBlock implements Bus.
func (b *DevBus) WriteBlock(cmd uint8, data []byte) error {
	if len(data) > BlockMax {
		return fmt.Errorf("ssif: block of %d bytes (at most %d)", len(data), BlockMax)
	}
	b.block[0] = uint8(len(data))
	copy(b.block[1:], data)
	d := smbusIoctlData{readWrite: smbusWrite, command: cmd, size: smbusBlockData, data: &b.block}
	if err := ioctl(b.f, ioctlI2CSMBus, uintptr(unsafe.Pointer(&d))); err != nil {
		return &errnoError{op: fmt.Sprintf("block write %#02x", cmd), errno: err.(syscall.Errno)}
	}
	return nil
}

// ReadBlock implements Bus.
func (b *DevBus) ReadBlock(cmd uint8, buf []byte) (int, error) {
	d := smbusIoctlData{readWrite: smbusRead, command: cmd, size: smbusBlockData, data: &b.block}
	if err := ioctl(b.f, ioctlI2CSMBus, uintptr(unsafe.Pointer(&d))); err != nil {
		return 0, &errnoError{op: fmt.Sprintf("block read %#02x", cmd), errno: err.(syscall.Errno)}
	}
	n := int(b.block[0])
	if n > BlockMax {
		n = BlockMax // the kernel caps the count; be safe anyway
	}
	return copy(buf, b.block[1:1+n]), nil
}

// i2cMajor is the i2c-dev character device's major number (I2C_MAJOR in
// include/linux/i2c-dev.h); its minor is the adapter's number.
const i2cMajor = 89

// BusOf returns the adapter number of an open /dev/i2c-N (the minor of
// its device number, as i2c-dev registers it), so an inherited descriptor
// says which bus it is without its path.
func BusOf(f *os.File) (int, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, fmt.Errorf("ssif: fstat %s: %w", f.Name(), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != i2cMajor {
		return 0, fmt.Errorf("ssif: %s is not an i2c-dev device (%d:%d)", f.Name(), unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return int(unix.Minor(st.Rdev)), nil
}
