// Package privdrop takes away what ipmi-cuse does not need once it serves:
// every capability set (effective, permitted, inheritable, ambient, and the
// bounding set when the process holds CAP_SETPCAP to empty it) on every
// thread, with no_new_privs set, and optionally the root identity
// (switching to an unprivileged user). A bounding set left as the service
// manager gave it grants nothing: with no permitted capability and
// no_new_privs, no exec can bring one back.
//
// capset(2) and prctl(2) act on the calling thread only, and a Go program
// has many threads, one of them the engine's, locked to hold iopl. Drop
// applies each step to every thread with syscall.AllThreadsSyscall, which
// exists only in programs built without cgo (CGO_ENABLED=0, as `make build`
// and the Debian package build them); in a cgo build Drop returns
// ErrCgo without changing anything. Threads the runtime starts later are
// cloned from dropped ones and inherit the empty sets.
//
// What stays: descriptors opened before the drop keep the access they were
// opened with (/dev/cuse, /dev/port, sockets), and a thread's iopl level,
// which a capability gates only when it is set, stays with the thread.
package privdrop

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrCgo is returned by Drop in a program built with cgo, where Go cannot
// run a system call on every thread.
var ErrCgo = errors.New("privdrop: built with cgo, which cannot change every thread's capabilities; build with CGO_ENABLED=0 (make build)")

// Config says what to drop to.
type Config struct {
	// User, when not empty, is the account (name or numeric uid) to switch
	// to: its uid, its primary gid, and no supplementary groups.
	User string
}

// Drop empties every capability set and sets no_new_privs on every thread
// of the process, switching to cfg.User first if set. Any failure leaves
// the process in an unknown mix of privileges: the caller should exit.
func Drop(cfg Config) error {
	uid, gid := -1, -1
	if cfg.User != "" {
		var err error
		if uid, gid, err = lookupUser(cfg.User); err != nil {
			return err
		}
	}
	// A harmless probe first, so a cgo build fails before anything changed.
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_GET_NO_NEW_PRIVS, 0, 0); e == syscall.ENOTSUP {
		return ErrCgo
	}
	// The bounding set first: dropping from it needs CAP_SETPCAP, which a
	// hardened unit may not grant.
	if hasEffective(unix.CAP_SETPCAP) {
		last, err := lastCap()
		if err != nil {
			return err
		}
		for c := 0; c <= last; c++ {
			if err := allThreads("PR_CAPBSET_DROP", unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
				return err
			}
		}
	}
	if uid >= 0 {
		// Go applies these to every thread (without cgo, through the same
		// mechanism). Leaving uid 0 also clears the permitted, effective
		// and ambient sets; the steps below make that explicit.
		if err := syscall.Setgroups([]int{gid}); err != nil {
			return fmt.Errorf("privdrop: setgroups: %w", err)
		}
		if err := syscall.Setresgid(gid, gid, gid); err != nil {
			return fmt.Errorf("privdrop: setresgid %d: %w", gid, err)
		}
		if err := syscall.Setresuid(uid, uid, uid); err != nil {
			return fmt.Errorf("privdrop: setresuid %d: %w", uid, err)
		}
	}
	if err := allThreads("PR_CAP_AMBIENT_CLEAR_ALL", unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return err
	}
	if err := allThreads("PR_SET_NO_NEW_PRIVS", unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return err
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // all zero: nothing effective, permitted or inheritable
	err := allThreads("capset", unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	if err != nil {
		return err
	}
	return Verify(os.Getpid())
}

func allThreads(what string, trap, a1, a2, a3 uintptr) error {
	if _, _, e := syscall.AllThreadsSyscall(trap, a1, a2, a3); e != 0 {
		if e == syscall.ENOTSUP {
			return ErrCgo
		}
		return fmt.Errorf("privdrop: %s on every thread: %w", what, e)
	}
	return nil
}

// hasEffective reports whether the calling thread has capability c in its
// effective set (every thread has the same sets until Drop).
func hasEffective(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(uint(c)%32)) != 0
}

// lastCap is the highest capability number the kernel knows.
func lastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("privdrop: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("privdrop: cap_last_cap: %w", err)
	}
	return n, nil
}

// lookupUser resolves a user name or number to its uid and primary gid.
func lookupUser(name string) (uid, gid int, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr == nil {
			u, err = user.LookupId(name)
		}
	}
	if err != nil {
		return 0, 0, fmt.Errorf("privdrop: --user %q: %w", name, err)
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, fmt.Errorf("privdrop: uid %q: %w", u.Uid, err)
	}
	if gid, err = strconv.Atoi(u.Gid); err != nil {
		return 0, 0, fmt.Errorf("privdrop: gid %q: %w", u.Gid, err)
	}
	return uid, gid, nil
}

// ThreadState is one thread's privilege state from /proc/PID/task/TID/status.
type ThreadState struct {
	TID                               string
	CapInh, CapPrm, CapEff, CapBnd    uint64
	CapAmb                            uint64
	NoNewPrivs                        bool
	UID, GID                          string // real, effective, saved, fs
	parsed, hasNoNewPrivs, hasAmbient bool
}

// Threads reads the privilege state of every thread of pid.
func Threads(pid int) ([]ThreadState, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return nil, fmt.Errorf("privdrop: no threads of %d in /proc: %v", pid, err)
	}
	var out []ThreadState
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // the thread ended meanwhile
			}
			return nil, fmt.Errorf("privdrop: %w", err)
		}
		st, err := ParseStatus(b)
		if err != nil {
			return nil, fmt.Errorf("privdrop: %s: %w", p, err)
		}
		st.TID = filepath.Base(filepath.Dir(p))
		out = append(out, st)
	}
	return out, nil
}

// ParseStatus reads the capability, no_new_privs and identity lines of a
// /proc status file.
func ParseStatus(b []byte) (ThreadState, error) {
	var st ThreadState
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		hex := func(dst *uint64) error {
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return fmt.Errorf("%s %q: %w", k, v, err)
			}
			*dst = n
			return nil
		}
		var err error
		switch k {
		case "CapInh":
			err = hex(&st.CapInh)
		case "CapPrm":
			err = hex(&st.CapPrm)
			st.parsed = true
		case "CapEff":
			err = hex(&st.CapEff)
		case "CapBnd":
			err = hex(&st.CapBnd)
		case "CapAmb":
			err = hex(&st.CapAmb)
			st.hasAmbient = true
		case "NoNewPrivs":
			st.NoNewPrivs, st.hasNoNewPrivs = v == "1", true
		case "Uid":
			st.UID = strings.Join(strings.Fields(v), " ")
		case "Gid":
			st.GID = strings.Join(strings.Fields(v), " ")
		}
		if err != nil {
			return st, err
		}
	}
	if !st.parsed || !st.hasNoNewPrivs || !st.hasAmbient {
		return st, errors.New("no CapPrm, CapAmb or NoNewPrivs line")
	}
	return st, nil
}

// Dropped reports whether the thread holds nothing: the inheritable,
// permitted, effective and ambient sets empty and no_new_privs set (the
// bounding set then grants nothing; see the package doc).
func (t ThreadState) Dropped() bool {
	return t.CapInh == 0 && t.CapPrm == 0 && t.CapEff == 0 && t.CapAmb == 0 && t.NoNewPrivs
}

// Verify checks every thread of pid with Dropped.
func Verify(pid int) error {
	ts, err := Threads(pid)
	if err != nil {
		return err
	}
	for _, t := range ts {
		if !t.Dropped() {
			return fmt.Errorf("privdrop: thread %s still holds privileges: %+v", t.TID, t)
		}
	}
	return nil
}
