// Package cuse serves a character device through the Linux CUSE protocol on
// /dev/cuse. It knows nothing about what the device means: it decodes
// requests, runs the unrestricted-ioctl retry protocol and poll
// notifications, and calls a Device.
package cuse

import (
	"context"
	"syscall"
)

// Iovec is a range of the calling process's memory: what a device asks the
// kernel to copy in or out during an unrestricted ioctl retry.
type Iovec struct {
	Base uint64
	Len  uint64
}

// IoctlIn is one ioctl as the device sees it.
type IoctlIn struct {
	// Cmd is the ioctl command number.
	Cmd uint32
	// Arg is the raw argument (a user pointer for most ioctls).
	Arg uint64
	// Flags are the FUSE_IOCTL_* flags from the kernel.
	Flags uint32
	// In holds the bytes copied from the InIovs the device asked for in its
	// previous retry reply, concatenated in order; empty on the first call.
	In []byte
	// OutSize is how many bytes the kernel will accept back.
	OutSize uint32

	// Storage for the reply (Retry, OutBuf). It stays with the IoctlIn:
	// the server reuses one IoctlIn for the ioctls it answers on its
	// reader (Config.InlineIoctl), so a device that builds its replies
	// there allocates nothing per round.
	iovs [scratchIovecs]Iovec
	out  []byte
}

// scratchIovecs is how many ranges a retry reply can ask for without
// allocating (IPMI's largest asks for 3 in and 3 out).
const scratchIovecs = 8

// Retry returns a retry reply asking for inIovs and outIovs, leaving out
// empty ranges. The ranges are copied into storage that belongs to in, so
// the caller's lists may live on its stack; the reply is meant to be
// returned for in, and is valid until in is used for another request.
func (in *IoctlIn) Retry(inIovs, outIovs []Iovec) IoctlOut {
	n := 0
	for _, v := range inIovs {
		if v.Len > 0 {
			n++
		}
	}
	nIn := n
	for _, v := range outIovs {
		if v.Len > 0 {
			n++
		}
	}
	buf := in.iovs[:0]
	if n > len(in.iovs) {
		buf = make([]Iovec, 0, n)
	}
	for _, v := range inIovs {
		if v.Len > 0 {
			buf = append(buf, v)
		}
	}
	for _, v := range outIovs {
		if v.Len > 0 {
			buf = append(buf, v)
		}
	}
	out := IoctlOut{Retry: true}
	if nIn > 0 {
		out.InIovs = buf[:nIn:nIn]
	}
	if n > nIn {
		out.OutIovs = buf[nIn:n:n]
	}
	return out
}

// OutBuf returns n zero bytes for IoctlOut.Out, from storage that belongs
// to in and is reused with it (see Retry): valid until in is used for
// another request, which is after the server has copied the output into
// its reply.
func (in *IoctlIn) OutBuf(n int) []byte {
	if cap(in.out) < n {
		in.out = make([]byte, n, max(n, 512))
	}
	b := in.out[:n]
	clear(b)
	return b
}

// reset makes in the next request's, keeping its storage.
func (in *IoctlIn) reset(cmd uint32, arg uint64, flags uint32, data []byte, outSize uint32) {
	in.Cmd, in.Arg, in.Flags, in.In, in.OutSize = cmd, arg, flags, data, outSize
}

// IoctlOut is the device's answer to an ioctl: either a retry asking for user
// memory, or a final result.
type IoctlOut struct {
	// Retry asks the kernel to call again with InIovs copied in, and to
	// accept output for OutIovs.
	Retry bool
	// InIovs and OutIovs are the ranges for a retry.
	InIovs, OutIovs []Iovec
	// Result is the ioctl's return value on success.
	Result int32
	// Out is copied to the OutIovs of the previous retry, in order.
	Out []byte
	// Errno, if non-zero, fails the ioctl with that error.
	Errno syscall.Errno
}

// Device is what a CUSE server serves: it opens files.
type Device interface {
	// Open is called for each open(2) of the device node.
	Open(ctx context.Context, flags uint32) (File, syscall.Errno)
}

// File is one open file of the device. Methods may be called concurrently
// from several goroutines; ctx is cancelled when the kernel interrupts the
// request (the caller got a signal) or the server shuts down.
type File interface {
	// Read reads into dst; it may block unless nonblock is set.
	Read(ctx context.Context, dst []byte, nonblock bool) (int, syscall.Errno)
	// Write writes src.
	Write(ctx context.Context, src []byte) (int, syscall.Errno)
	// Ioctl handles one step of an ioctl (see IoctlIn and IoctlOut).
	Ioctl(ctx context.Context, in *IoctlIn) IoctlOut
	// Poll returns the file's ready events (POLLIN, ...). If wake is not
	// nil, the file must call it once, later, when its readiness may have
	// changed, so the server can notify the kernel.
	Poll(wake func()) uint32
	// Release is called once when the last reference to the file is gone.
	Release()
}
