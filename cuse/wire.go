package cuse

// This file declares, once, the parts of the FUSE/CUSE wire ABI
// (include/uapi/linux/fuse.h) that github.com/hanwen/go-fuse/v2/fuse does not
// export, and the explicit helpers that copy wire structs in and out of byte
// slices. Everything else (InHeader, OutHeader, OpenIn, OpenOut, ReadIn,
// WriteIn, WriteOut, ReleaseIn, InterruptIn, IoctlIn, IoctlOut) comes from
// go-fuse. Byte order is host order; every struct's size is pinned by
// wire_test.go against /work/shared/spec/cuse-protocol.md.

import (
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Opcodes a CUSE server sees. go-fuse keeps its opcodes unexported (_OP_*).
const (
	opOpen      = 14   // FUSE_OPEN
	opRead      = 15   // FUSE_READ
	opWrite     = 16   // FUSE_WRITE
	opRelease   = 18   // FUSE_RELEASE
	opFsync     = 20   // FUSE_FSYNC (never sent for CUSE)
	opFlush     = 25   // FUSE_FLUSH (never sent for CUSE)
	opInterrupt = 36   // FUSE_INTERRUPT
	opIoctl     = 39   // FUSE_IOCTL
	opPoll      = 40   // FUSE_POLL
	opCuseInit  = 4096 // CUSE_INIT (same value as fuse.CUSE_INIT)
)

// Protocol constants go-fuse does not define (or defines under another name).
const (
	fuseKernelVersion = 7 // FUSE_KERNEL_VERSION: the only major the kernel accepts.
	// ourMinorVersion is the highest FUSE_KERNEL_MINOR_VERSION this server
	// speaks; ≥ 16 so retry iovecs are the fixed 16-byte fuse_ioctl_iovec.
	// On a 64-bit server the pre-16 native struct iovec is byte-identical,
	// so min(kernel minor, ourMinorVersion) is always a correct answer.
	ourMinorVersion = 31

	ioctl32Bit     = 1 << 3 // FUSE_IOCTL_32BIT
	ioctlCompatX32 = 1 << 5 // FUSE_IOCTL_COMPAT_X32

	notifyPoll = 1 // FUSE_NOTIFY_POLL, as it appears (positive) in fuse_out_header.error

	// ioctlMaxData is the kernel's limit on the summed lengths of the in
	// (and, separately, the out) iovecs of one ioctl round:
	// fc->max_pages (32, never raised for CUSE) × PAGE_SIZE.
	ioctlMaxData = 32 * 4096

	minReadBuffer = 8192 // FUSE_MIN_READ_BUFFER

	// maxErrno bounds the errno a reply may carry: the kernel rejects
	// out_header.error ≤ −512 with EINVAL.
	maxErrno = 511
)

// Wire sizes from the spec (bytes). The go-fuse *In types embed InHeader, so
// their Go size is the kernel size plus inHeaderSize.
const (
	inHeaderSize        = 40 // struct fuse_in_header
	outHeaderSize       = 16 // struct fuse_out_header
	cuseInitInSize      = 16 // struct cuse_init_in
	cuseInitOutSize     = 72 // struct cuse_init_out
	openInSize          = 8  // struct fuse_open_in
	openOutSize         = 16 // struct fuse_open_out
	readInSize          = 40 // struct fuse_read_in
	writeInSize         = 40 // struct fuse_write_in
	writeOutSize        = 8  // struct fuse_write_out
	releaseInSize       = 24 // struct fuse_release_in
	interruptInSize     = 8  // struct fuse_interrupt_in
	ioctlInSize         = 32 // struct fuse_ioctl_in
	ioctlOutSize        = 16 // struct fuse_ioctl_out
	ioctlIovecSize      = 16 // struct fuse_ioctl_iovec
	pollInSize          = 24 // struct fuse_poll_in
	pollOutSize         = 8  // struct fuse_poll_out
	notifyPollWakeupOut = 8  // struct fuse_notify_poll_wakeup_out
)

// cuseInitIn is struct cuse_init_in, the payload of CUSE_INIT (go-fuse's
// _CuseInitIn is unexported). It does not embed the header.
type cuseInitIn struct {
	Major  uint32
	Minor  uint32
	Unused uint32
	Flags  uint32 // CUSE_UNRESTRICTED_IOCTL offered by the kernel
}

// cuseInitOut is struct cuse_init_out, the fixed part of the CUSE_INIT reply;
// the "KEY=value\0" device-info block follows it.
type cuseInitOut struct {
	Major    uint32
	Minor    uint32
	Unused   uint32
	Flags    uint32
	MaxRead  uint32
	MaxWrite uint32
	DevMajor uint32
	DevMinor uint32
	Spare    [10]uint32
}

// ioctlIovec is struct fuse_ioctl_iovec, one user-memory range in a
// FUSE_IOCTL_RETRY reply (minor ≥ 16).
type ioctlIovec struct {
	Base uint64
	Len  uint64
}

// pollIn is struct fuse_poll_in with its header (go-fuse's _PollIn is
// unexported and calls Events "Padding").
type pollIn struct {
	fuse.InHeader
	Fh     uint64
	Kh     uint64 // kernel poll handle, for FUSE_NOTIFY_POLL
	Flags  uint32 // FUSE_POLL_SCHEDULE_NOTIFY
	Events uint32 // requested POLL* bits (since 7.21)
}

// pollOut is struct fuse_poll_out.
type pollOut struct {
	Revents uint32
	Padding uint32
}

// notifyPollWakeup is struct fuse_notify_poll_wakeup_out, the payload of a
// FUSE_NOTIFY_POLL notification.
type notifyPollWakeup struct {
	Kh uint64
}

// wireStruct lists the fixed-layout types decode and encode accept.
type wireStruct interface {
	fuse.InHeader | fuse.OutHeader | fuse.OpenIn | fuse.OpenOut | fuse.ReadIn |
		fuse.WriteIn | fuse.WriteOut | fuse.ReleaseIn | fuse.InterruptIn |
		fuse.IoctlIn | fuse.IoctlOut | cuseInitIn | cuseInitOut | ioctlIovec |
		pollIn | pollOut | notifyPollWakeup
}

// decode copies the first sizeof(T) bytes of b into a T. It reports false if
// b is too short. Copying (rather than casting the buffer) keeps it safe for
// any alignment of b.
func decode[T wireStruct](b []byte) (T, bool) {
	var v T
	n := int(unsafe.Sizeof(v))
	if len(b) < n {
		return v, false
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&v)), n), b)
	return v, true
}

// encode appends the wire bytes of v to dst.
func encode[T wireStruct](dst []byte, v *T) []byte {
	return append(dst, unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))...)
}
