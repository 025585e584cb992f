package fdstore

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeManager listens where $NOTIFY_SOCKET points and returns each
// datagram with the descriptors it carried.
func fakeManager(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func recv(t *testing.T, c *net.UnixConn) (string, []int) {
	t.Helper()
	buf, oob := make([]byte, 4096), make([]byte, 4096)
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		r, err := unix.ParseUnixRights(&m)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, r...)
	}
	return string(buf[:n]), fds
}

func TestStoreSendsDescriptorKeepsNonblocking(t *testing.T) {
	m := fakeManager(t)
	r, w, err := os.Pipe() // non-blocking, like the CUSE channel
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ok, err := Store("cuse-ipmi0", r)
	if !ok || err != nil {
		t.Fatalf("Store = %v, %v", ok, err)
	}
	msg, fds := recv(t, m)
	if msg != "FDSTORE=1\nFDNAME=cuse-ipmi0\n" || len(fds) != 1 {
		t.Fatalf("manager got %q with %d descriptors", msg, len(fds))
	}
	// The received descriptor is the same pipe.
	got := os.NewFile(uintptr(fds[0]), "got")
	defer got.Close()
	w.Write([]byte("x"))
	b := make([]byte, 1)
	if n, err := got.Read(b); n != 1 || b[0] != 'x' {
		t.Errorf("stored descriptor reads %d %q %v", n, b, err)
	}
	rc, _ := r.SyscallConn()
	rc.Control(func(fd uintptr) {
		if fl, _ := unix.FcntlInt(fd, unix.F_GETFL, 0); fl&unix.O_NONBLOCK == 0 {
			t.Error("Store made the descriptor blocking")
		}
	})
}

func TestRemove(t *testing.T) {
	m := fakeManager(t)
	if ok, err := Remove("cuse-ipmi0"); !ok || err != nil {
		t.Fatalf("Remove = %v, %v", ok, err)
	}
	if msg, _ := recv(t, m); msg != "FDSTOREREMOVE=1\nFDNAME=cuse-ipmi0" {
		t.Errorf("manager got %q", msg)
	}
}

func TestNoManager(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if ok, err := Store("x", os.Stdin); ok || err != nil {
		t.Errorf("Store without a manager = %v, %v; want false, nil", ok, err)
	}
}

func TestBadNames(t *testing.T) {
	for _, n := range []string{"", "a:b", "a b", strings.Repeat("x", 256), "é"} {
		if _, err := Store(n, os.Stdin); !errors.Is(err, ErrName) {
			t.Errorf("Store(%q) = %v, want ErrName", n, err)
		}
	}
}

func TestInherited(t *testing.T) {
	// Files(true) reads descriptors from 3 on: pass one there.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := unix.Dup2(int(r.Fd()), 3); err != nil {
		t.Skip("cannot place a descriptor at 3:", err)
	}
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	t.Setenv("LISTEN_FDS", "1")
	t.Setenv("LISTEN_FDNAMES", "cuse-ipmi0")
	got := Inherited()
	if len(got["cuse-ipmi0"]) != 1 {
		t.Fatalf("Inherited = %v", got)
	}
	if os.Getenv("LISTEN_FDS") != "" {
		t.Error("LISTEN_FDS left in the environment")
	}
}
