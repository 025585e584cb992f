package cuse

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// allocFile answers like a device that builds its replies in the IoctlIn's
// storage (IoctlIn.Retry and OutBuf), as ioctl.File does; its Poll calls
// the wake it is given at once.
type allocFile struct{ fuzzFile }

func (allocFile) Ioctl(_ context.Context, in *IoctlIn) IoctlOut {
	if in.Arg&1 == 0 {
		return in.Retry([]Iovec{{Base: 0x10, Len: 8}, {Base: 0x20, Len: 8}}, []Iovec{{Base: 0x30, Len: 8}})
	}
	return IoctlOut{Out: in.OutBuf(16)}
}

func (allocFile) Poll(wake func()) uint32 {
	if wake != nil {
		wake()
	}
	return 1
}

// TestDispatchAllocs pins what answering the per-request path's requests
// allocates: a POLL (with and without a notification it triggers), an
// ioctl retry round and a final ioctl answer, inline as the daemon runs
// them. Each is built, written with a raw write(2) and done with inside
// dispatch, from pooled buffers and the reader's reused IoctlIn.
func TestDispatchAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("coverage and the race detector change allocation counts")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ch := os.NewFile(uintptr(fds[0]), "cuse-server")
	defer ch.Close()
	defer unix.Close(fds[1])
	s := New(Config{DevName: "alloc", InlineIoctl: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, fuzzDevice{})
	s.ch = ch
	s.baseCtx = context.Background()
	s.files[1] = &openFile{fh: 1, file: allocFile{}}
	hdr := func(op uint32, body []byte) []byte {
		h := fuse.InHeader{Length: uint32(inHeaderSize + len(body)), Opcode: op, Unique: 10}
		return append(encode(nil, &h), body...)
	}
	buf := make([]byte, 4096)
	for _, tc := range []struct {
		name    string
		msg     []byte
		replies int // messages written: the reply, and a poll notification
	}{
		// Before the pooled buffers, raw writes and the guarded debug
		// line: 3, 9 and 6; before the reused IoctlIn with its reply
		// storage and the per-file wake function, a POLL that asked for a
		// notification cost 2 and each ioctl round 1 plus the device's
		// iovec lists.
		{"poll", hdr(opPoll, pollInBody(1, 3, 0, 1)), 1},
		{"poll, notify", hdr(opPoll, pollInBody(1, 3, fuse.FUSE_POLL_SCHEDULE_NOTIFY, 1)), 2},
		{"ioctl retry", hdr(opIoctl, ioctlInBody(1, fuse.IOCTL_UNRESTRICTED, 0x20, 0, nil, 0)), 1},
		{"ioctl answer", hdr(opIoctl, ioctlInBody(1, fuse.IOCTL_UNRESTRICTED, 0x20, 1, make([]byte, 16), 16)), 1},
	} {
		n := testing.AllocsPerRun(200, func() {
			s.dispatch(tc.msg)
			for range tc.replies {
				if _, err := unix.Read(fds[1], buf); err != nil {
					t.Fatalf("%s: no reply: %v", tc.name, err)
				}
			}
		})
		if n > 0 {
			t.Errorf("%s: %.1f allocations per request, want none", tc.name, n)
		}
	}
}
