// Package fdstore keeps descriptors in the service manager's file
// descriptor store (systemd's FDSTORE=1, sd_pid_notify_with_fds(3)) and
// takes them back after a restart (LISTEN_FDS, LISTEN_FDNAMES,
// sd_listen_fds_with_names(3)), so a CUSE channel, and with it the device
// and every client's open file, survives the daemon's crash.
//
// Plain notifications go through github.com/coreos/go-systemd/v22; that
// library has no call that passes descriptors, so Store writes the
// datagram with SCM_RIGHTS itself, as sd_notify(3) documents.
package fdstore

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// ErrName means a descriptor name systemd would refuse (FDNAME= allows at
// most 255 printable characters, no ':').
var ErrName = errors.New("fdstore: invalid descriptor name")

func checkName(name string) error {
	if name == "" || len(name) > 255 || strings.ContainsAny(name, ":\n\r\t ") {
		return fmt.Errorf("%w: %q", ErrName, name)
	}
	for _, r := range name {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("%w: %q", ErrName, name)
		}
	}
	return nil
}

// Store gives f to the service manager's store under name. It reports
// false (and no error) when there is no service manager ($NOTIFY_SOCKET
// unset). f's blocking mode is not changed.
func Store(name string, f *os.File) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return false, nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("fdstore: %s: %w", name, err)
	}
	addr := &unix.SockaddrUnix{Name: sock} // a leading '@' is an abstract socket
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("fdstore: socket: %w", err)
	}
	defer unix.Close(s)
	msg := []byte("FDSTORE=1\nFDNAME=" + name + "\n")
	var werr error
	// Control, not Fd: Fd would switch a non-blocking descriptor (the
	// CUSE channel the reader waits on) to blocking mode.
	cerr := rc.Control(func(fd uintptr) {
		werr = unix.Sendmsg(s, msg, unix.UnixRights(int(fd)), addr, 0)
	})
	if err := errors.Join(cerr, werr); err != nil {
		return false, fmt.Errorf("fdstore: storing %s: %w", name, err)
	}
	return true, nil
}

// Remove asks the service manager to close and forget the descriptors
// stored under name.
func Remove(name string) (bool, error) {
	if err := checkName(name); err != nil {
		return false, err
	}
	ok, err := daemon.SdNotify(false, "FDSTOREREMOVE=1\nFDNAME="+name)
	if err != nil {
		return false, fmt.Errorf("fdstore: removing %s: %w", name, err)
	}
	return ok, nil
}

// Inherited returns the descriptors the service manager passed to this
// process, by name (empty when it passed none), and clears LISTEN_PID,
// LISTEN_FDS and LISTEN_FDNAMES so no child takes them as its own.
func Inherited() map[string][]*os.File {
	return activation.FilesWithNames()
}
