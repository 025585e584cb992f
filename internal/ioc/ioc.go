// Package ioc declares the Linux _IOC ioctl number encoding
// (include/uapi/asm-generic/ioctl.h, which x86-64 uses) once, for every
// package of ipmi-cuse that declares an ioctl ABI (ioctl for /dev/ipmi0,
// watchdog for /dev/watchdog).
//
// A command number packs a direction, a type byte, a number and the
// argument size: dir<<30 | size<<16 | type<<8 | nr. Go constants cannot call
// functions, so ABI packages build their exported command constants from the
// shift and direction constants here, and tests check them against IOC and
// the hex values a C compiler prints.
package ioc

// Directions of _IOC_DIR, seen from user space: Write means the caller
// writes the argument to the driver, Read that it reads it back.
const (
	None  = 0 // _IOC_NONE
	Write = 1 // _IOC_WRITE
	Read  = 2 // _IOC_READ
)

// Field widths and positions.
const (
	NRBits   = 8  // _IOC_NRBITS
	TypeBits = 8  // _IOC_TYPEBITS
	SizeBits = 14 // _IOC_SIZEBITS
	DirBits  = 2  // _IOC_DIRBITS

	NRShift   = 0                    // _IOC_NRSHIFT
	TypeShift = NRShift + NRBits     // _IOC_TYPESHIFT
	SizeShift = TypeShift + TypeBits // _IOC_SIZESHIFT
	DirShift  = SizeShift + SizeBits // _IOC_DIRSHIFT
	nrMask    = 1<<NRBits - 1        // _IOC_NRMASK
	typeMask  = 1<<TypeBits - 1      // _IOC_TYPEMASK
	sizeMask  = 1<<SizeBits - 1      // _IOC_SIZEMASK
	dirMask   = 1<<DirBits - 1       // _IOC_DIRMASK
)

// IOC builds a command number from its parts like the C _IOC macro:
// dir<<30 | size<<16 | typ<<8 | nr. Like the macro it does not mask the
// parts; callers pass values that fit their fields.
func IOC(dir, typ, nr, size uint32) uint32 {
	return dir<<DirShift | size<<SizeShift | typ<<TypeShift | nr<<NRShift
}

// IO is _IO: a command without an argument.
func IO(typ, nr uint32) uint32 { return IOC(None, typ, nr, 0) }

// R is _IOR: the caller reads an argument of size bytes back.
func R(typ, nr, size uint32) uint32 { return IOC(Read, typ, nr, size) }

// W is _IOW: the caller passes an argument of size bytes in.
func W(typ, nr, size uint32) uint32 { return IOC(Write, typ, nr, size) }

// RW is _IOWR: the argument goes both ways.
func RW(typ, nr, size uint32) uint32 { return IOC(Read|Write, typ, nr, size) }

// Dir is _IOC_DIR: the direction bits of cmd.
func Dir(cmd uint32) uint32 { return cmd >> DirShift & dirMask }

// Type is _IOC_TYPE: the type byte of cmd.
func Type(cmd uint32) uint32 { return cmd >> TypeShift & typeMask }

// NR is _IOC_NR: the number of cmd within its type.
func NR(cmd uint32) uint32 { return cmd >> NRShift & nrMask }

// Size is _IOC_SIZE: the argument size encoded in cmd.
func Size(cmd uint32) uint32 { return cmd >> SizeShift & sizeMask }
