package cuse

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fuzzFile answers quickly and derives its behaviour from the request, so
// fuzzed requests reach every reply shape, including device answers the
// kernel would refuse.
type fuzzFile struct{}

func (fuzzFile) Read(_ context.Context, dst []byte, _ bool) (int, syscall.Errno) {
	return copy(dst, "data"), 0
}

func (fuzzFile) Write(_ context.Context, src []byte) (int, syscall.Errno) { return len(src), 0 }

func (fuzzFile) Ioctl(_ context.Context, in *IoctlIn) IoctlOut {
	switch in.Arg & 3 {
	case 0: // retry with iovecs taken from the input, split at the middle
		var iovs []Iovec
		for b := in.In; len(b) >= 16; b = b[16:] {
			iovs = append(iovs, Iovec{Base: binary.LittleEndian.Uint64(b), Len: binary.LittleEndian.Uint64(b[8:])})
		}
		if len(iovs) == 0 {
			iovs = []Iovec{{Base: in.Arg, Len: uint64(in.Cmd & 0xffff)}}
		}
		return IoctlOut{Retry: true, InIovs: iovs[:len(iovs)/2], OutIovs: iovs[len(iovs)/2:]}
	case 1: // echo the input as output, possibly more than out_size
		return IoctlOut{Result: int32(in.Cmd), Out: in.In}
	case 2:
		return IoctlOut{Errno: syscall.Errno(in.Arg >> 8 & 0x3ff)}
	}
	return IoctlOut{Result: -int32(in.Arg >> 8 & 0xff)}
}

func (fuzzFile) Poll(wake func()) uint32 {
	if wake != nil {
		wake()
	}
	return 1
}

func (fuzzFile) Release() {}

type fuzzDevice struct{}

func (fuzzDevice) Open(_ context.Context, flags uint32) (File, syscall.Errno) {
	if flags&0x80000000 != 0 {
		return nil, syscall.Errno(flags & 0xfff)
	}
	return fuzzFile{}, 0
}

// checkReply reports what is wrong with one server message, as the kernel's
// fuse_dev_do_write would see it.
func checkReply(msg []byte) error {
	h, ok := decode[fuse.OutHeader](msg)
	switch {
	case !ok:
		return errors.New("shorter than fuse_out_header")
	case int(h.Length) != len(msg):
		return errors.New("header length differs from message length")
	case h.Unique == 0:
		if h.Status != notifyPoll || len(msg) != outHeaderSize+notifyPollWakeupOut {
			return errors.New("notification is not a 24-byte FUSE_NOTIFY_POLL")
		}
	case h.Status > 0 || h.Status <= -512:
		return errors.New("error out of range")
	case h.Status < 0 && len(msg) != outHeaderSize:
		return errors.New("error reply with payload")
	}
	return nil
}

// FuzzRequestDecode feeds arbitrary bytes to the server as one request
// message (as one read() of /dev/cuse would return them): the server must
// not panic, and everything it writes back must be a reply the kernel would
// accept.
func FuzzRequestDecode(f *testing.F) {
	hdr := func(op uint32, body []byte) []byte {
		h := fuse.InHeader{Length: uint32(inHeaderSize + len(body)), Opcode: op, Unique: 10}
		return append(encode(nil, &h), body...)
	}
	iov := append(append(le64(0x1000), le64(16)...), append(le64(0x2000), le64(8)...)...)
	for _, seed := range [][]byte{
		hdr(opOpen, openInBody(2)),
		hdr(opRead, readInBody(1, 100, 0)),
		hdr(opWrite, writeInBody(1, []byte("abc"))),
		hdr(opRelease, releaseInBody(1)),
		hdr(opFlush, make([]byte, 24)),
		hdr(opPoll, pollInBody(1, 3, fuse.FUSE_POLL_SCHEDULE_NOTIFY, 1)),
		hdr(opInterrupt, interruptInBody(10)),
		hdr(opIoctl, ioctlInBody(1, fuse.IOCTL_UNRESTRICTED, 0x20, 0, nil, 0)),
		hdr(opIoctl, ioctlInBody(1, fuse.IOCTL_UNRESTRICTED, 0x20, 0, iov, 0)),
		hdr(opIoctl, ioctlInBody(1, fuse.IOCTL_UNRESTRICTED, 0x20, 1, iov, 8)),
		hdr(opIoctl, ioctlInBody(1, fuse.IOCTL_UNRESTRICTED|fuse.IOCTL_COMPAT, 0x20, 0x7002, nil, 0)),
		hdr(opCuseInit, make([]byte, 16)),
		hdr(77, nil),
		{1, 2, 3},
	} {
		f.Add(seed)
	}

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		f.Fatal(err)
	}
	ch := os.NewFile(uintptr(fds[0]), "cuse-server")
	kfd := fds[1]
	defer ch.Close()
	defer unix.Close(kfd)
	s := New(Config{DevName: "fuzz", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, fuzzDevice{})
	s.ch = ch
	s.baseCtx = context.Background()
	buf := make([]byte, 1<<18)

	f.Fuzz(func(t *testing.T, msg []byte) {
		s.mu.Lock()
		if s.files[1] == nil {
			s.files[1] = &openFile{fh: 1, file: fuzzFile{}}
		}
		s.mu.Unlock()
		s.dispatch(msg)
		s.handlers.Wait()
		for {
			n, _, err := unix.Recvfrom(kfd, buf, unix.MSG_DONTWAIT)
			if err != nil {
				break
			}
			if err := checkReply(buf[:n]); err != nil {
				t.Fatalf("server wrote a reply the kernel would reject (%v): % x", err, buf[:n])
			}
		}
	})
}
