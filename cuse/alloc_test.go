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

// TestDispatchAllocs pins what answering the per-request path's requests
// allocates: a POLL, an ioctl retry round and a final ioctl answer, inline
// as the daemon runs them. Each is built, written with a raw write(2) and done with inside
// dispatch, from pooled buffers.
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
	s.files[1] = &openFile{fh: 1, file: fuzzFile{}}
	hdr := func(op uint32, body []byte) []byte {
		h := fuse.InHeader{Length: uint32(inHeaderSize + len(body)), Opcode: op, Unique: 10}
		return append(encode(nil, &h), body...)
	}
	iov := make([]byte, 32)
	iov[0], iov[8], iov[16], iov[24] = 0x10, 8, 0x20, 8
	buf := make([]byte, 4096)
	for _, tc := range []struct {
		name string
		msg  []byte
		max  float64
	}{
		// The device's IoctlIn (passed to an interface method, so it
		// escapes) is one allocation of every ioctl; the fake device's
		// retry builds its iovec slices (two more). Before the pooled
		// buffers, raw writes and the guarded debug line: 3, 9 and 6.
		{"poll", hdr(opPoll, pollInBody(1, 3, 0, 1)), 0},
		{"ioctl retry", hdr(opIoctl, ioctlInBody(1, fuse.IOCTL_UNRESTRICTED, 0x20, 0, iov, 0)), 3},
		{"ioctl answer", hdr(opIoctl, ioctlInBody(1, fuse.IOCTL_UNRESTRICTED, 0x20, 1, iov, 64)), 1},
	} {
		n := testing.AllocsPerRun(200, func() {
			s.dispatch(tc.msg)
			if _, err := unix.Read(fds[1], buf); err != nil {
				t.Fatalf("%s: no reply: %v", tc.name, err)
			}
		})
		if n > tc.max {
			t.Errorf("%s: %.1f allocations per request, want at most %.0f", tc.name, n, tc.max)
		}
		t.Logf("%s: %.1f allocations", tc.name, n)
	}
}
