package watchdog

import (
	"encoding/binary"
	"errors"

	"github.com/ipmi-cuse/ipmi-cuse/internal/ioc"
)

// This file declares the Linux watchdog userspace ABI
// (include/uapi/linux/watchdog.h) in one place: ioctl numbers computed from
// their _IOC parts, option and status bits, and struct watchdog_info with
// explicit codecs. Every number is asserted in abi_test.go.

// ErrShort is returned by the decoders when the input is shorter than the
// value being decoded.
var ErrShort = errors.New("watchdog: buffer shorter than the ioctl argument")

// IOC builds an ioctl command number from its parts like the C _IOC macro:
// dir<<30 | size<<16 | typ<<8 | nr. The encoding itself lives in
// internal/ioc, shared with the IPMI ABI.
func IOC(dir, typ, nr, size uint32) uint32 { return ioc.IOC(dir, typ, nr, size) }

// IOCMagic is WATCHDOG_IOCTL_BASE, the type byte 'W' of every WDIOC command.
const IOCMagic = 'W'

// Argument sizes on x86-64; 32-bit callers use the same layouts, so the
// command numbers are the same in both ABIs (compat_ptr_ioctl).
const (
	SizeofInfo = 40 // struct watchdog_info
	SizeofInt  = 4  // int arguments
)

// WDIOC_* command numbers.
const (
	IoctlGetSupport    = ioc.Read<<ioc.DirShift | SizeofInfo<<ioc.SizeShift | IOCMagic<<ioc.TypeShift                // WDIOC_GETSUPPORT (nr 0), _IOR struct watchdog_info
	IoctlGetStatus     = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 1             // WDIOC_GETSTATUS, _IOR int
	IoctlGetBootStatus = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 2             // WDIOC_GETBOOTSTATUS, _IOR int
	IoctlGetTemp       = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 3             // WDIOC_GETTEMP, _IOR int
	IoctlSetOptions    = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 4             // WDIOC_SETOPTIONS, _IOR int
	IoctlKeepalive     = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 5             // WDIOC_KEEPALIVE, _IOR int
	IoctlSetTimeout    = (ioc.Read|ioc.Write)<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 6 // WDIOC_SETTIMEOUT, _IOWR int
	IoctlGetTimeout    = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 7             // WDIOC_GETTIMEOUT, _IOR int
	IoctlSetPretimeout = (ioc.Read|ioc.Write)<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 8 // WDIOC_SETPRETIMEOUT, _IOWR int
	IoctlGetPretimeout = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 9             // WDIOC_GETPRETIMEOUT, _IOR int
	IoctlGetTimeLeft   = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 10            // WDIOC_GETTIMELEFT, _IOR int
)

// WDIOF_* bits of watchdog_info.options and of the GETSTATUS/GETBOOTSTATUS
// results.
const (
	OptOverheat      = 0x0001 // WDIOF_OVERHEAT
	OptFanFault      = 0x0002 // WDIOF_FANFAULT
	OptExtern1       = 0x0004 // WDIOF_EXTERN1
	OptExtern2       = 0x0008 // WDIOF_EXTERN2
	OptPowerUnder    = 0x0010 // WDIOF_POWERUNDER
	OptCardReset     = 0x0020 // WDIOF_CARDRESET: the last reboot was caused by the watchdog
	OptPowerOver     = 0x0040 // WDIOF_POWEROVER
	OptSetTimeout    = 0x0080 // WDIOF_SETTIMEOUT
	OptMagicClose    = 0x0100 // WDIOF_MAGICCLOSE
	OptPretimeout    = 0x0200 // WDIOF_PRETIMEOUT
	OptAlarmOnly     = 0x0400 // WDIOF_ALARMONLY
	OptKeepalivePing = 0x8000 // WDIOF_KEEPALIVEPING
)

// WDIOS_* values for WDIOC_SETOPTIONS.
const (
	SetOptDisableCard = 0x0001 // WDIOS_DISABLECARD: stop the timer
	SetOptEnableCard  = 0x0002 // WDIOS_ENABLECARD: start the timer
	SetOptTempPanic   = 0x0004 // WDIOS_TEMPPANIC
)

// Poll bits in userspace values (the CUSE POLL reply uses them as they are).
const (
	pollIn     = 0x1
	pollRdNorm = 0x40
)

// Info is struct watchdog_info, what WDIOC_GETSUPPORT returns.
type Info struct {
	Options         uint32   // WDIOF_* the device supports
	FirmwareVersion uint32   // firmware version of the card
	Identity        [32]byte // NUL-padded identity string
}

// Encode returns the 40-byte x86-64 layout: options @0, firmware_version
// @4, identity[32] @8.
func (i Info) Encode() []byte {
	b := make([]byte, SizeofInfo)
	binary.LittleEndian.PutUint32(b[0:], i.Options)
	binary.LittleEndian.PutUint32(b[4:], i.FirmwareVersion)
	copy(b[8:], i.Identity[:])
	return b
}

// DecodeInfo parses struct watchdog_info from its first 40 bytes.
func DecodeInfo(b []byte) (Info, error) {
	if len(b) < SizeofInfo {
		return Info{}, ErrShort
	}
	var i Info
	i.Options = binary.LittleEndian.Uint32(b[0:])
	i.FirmwareVersion = binary.LittleEndian.Uint32(b[4:])
	copy(i.Identity[:], b[8:SizeofInfo])
	return i, nil
}

// EncodeInt returns a C int in the x86 (little-endian) layout.
func EncodeInt(v int32) []byte {
	return binary.LittleEndian.AppendUint32(nil, uint32(v))
}

// DecodeInt parses a C int from the first 4 bytes of b.
func DecodeInt(b []byte) (int32, error) {
	if len(b) < SizeofInt {
		return 0, ErrShort
	}
	return int32(binary.LittleEndian.Uint32(b)), nil
}
