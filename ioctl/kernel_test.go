package ioctl

import (
	"context"
	"sync"
	"syscall"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// userMem is a fake process address space: a few mapped regions. Accesses
// outside them fault, which the fake kernel turns into EFAULT the way
// fs/fuse/ioctl.c does.
type userMem struct {
	regions map[uint64][]byte
}

func newMem() *userMem { return &userMem{regions: map[uint64][]byte{}} }

// mapAt maps b (not copied: the test keeps it to inspect writes) at base.
func (m *userMem) mapAt(base uint64, b []byte) []byte {
	m.regions[base] = b
	return b
}

// span returns the mapped bytes [base, base+n), or false on a fault.
func (m *userMem) span(base, n uint64) ([]byte, bool) {
	for rb, r := range m.regions {
		if base >= rb && base+n <= rb+uint64(len(r)) && base+n >= base {
			return r[base-rb : base-rb+n], true
		}
	}
	return nil, false
}

// fakeKernel runs the unrestricted ioctl protocol of fs/fuse/ioctl.c
// against a cuse.File, serving iovecs from a userMem.
type fakeKernel struct {
	t      *testing.T
	mem    *userMem
	rounds int // rounds of the last ioctl
}

const maxRounds = 8

// ioctl performs one ioctl(2) and returns the errno the caller would see (0
// for success).
func (k *fakeKernel) ioctl(f cuse.File, cmd uint32, arg uint64, flags uint32) syscall.Errno {
	k.t.Helper()
	in := &cuse.IoctlIn{Cmd: cmd, Arg: arg, Flags: flags | 0x2}
	var outIovs []cuse.Iovec
	for k.rounds = 1; ; k.rounds++ {
		if k.rounds > maxRounds {
			k.t.Fatalf("ioctl %#x: no progress after %d rounds", cmd, maxRounds)
		}
		out := f.Ioctl(context.Background(), in)
		if !out.Retry {
			if out.Errno != 0 {
				if len(out.Out) != 0 {
					k.t.Errorf("ioctl %#x: errno %v with %d output bytes (dropped by the kernel)", cmd, out.Errno, len(out.Out))
				}
				return out.Errno
			}
			if uint32(len(out.Out)) > in.OutSize {
				return syscall.EIO
			}
			rest := out.Out
			for _, iov := range outIovs {
				if len(rest) == 0 {
					break
				}
				n := min(uint64(len(rest)), iov.Len)
				dst, ok := k.mem.span(iov.Base, n)
				if !ok {
					return syscall.EFAULT
				}
				copy(dst, rest[:n])
				rest = rest[n:]
			}
			if out.Result < 0 {
				return syscall.Errno(-out.Result)
			}
			return 0
		}
		if len(out.InIovs)+len(out.OutIovs) > 256 {
			return syscall.ENOMEM
		}
		var payload []byte
		var inTotal, outTotal uint64
		for _, iov := range out.InIovs {
			if iov.Len == 0 {
				k.t.Errorf("ioctl %#x: zero-length in iovec", cmd)
			}
			if flags&fuseIoctlCompat != 0 && iov.Base+iov.Len > 1<<32 {
				return syscall.EIO
			}
			inTotal += iov.Len
			src, ok := k.mem.span(iov.Base, iov.Len)
			if !ok {
				return syscall.EFAULT
			}
			payload = append(payload, src...)
		}
		for _, iov := range out.OutIovs {
			if iov.Len == 0 {
				k.t.Errorf("ioctl %#x: zero-length out iovec", cmd)
			}
			outTotal += iov.Len
		}
		if inTotal > 131072 || outTotal > 131072 {
			return syscall.ENOMEM
		}
		outIovs = out.OutIovs
		in = &cuse.IoctlIn{Cmd: cmd, Arg: arg, Flags: flags | 0x2, In: payload, OutSize: uint32(outTotal)}
	}
}

// fakeEngine stands in for sched: it records requests and completes them
// either inside Submit (sync) or when the test says so.
type fakeEngine struct {
	mu      sync.Mutex
	sync    bool
	reply   func(*sched.Request) // fills Resp/Err; nil = echo a CC 0 reply
	err     error                // returned by Submit when set
	pending []*sched.Request
	seen    []*sched.Request
}

func okReply(r *sched.Request) {
	r.Resp = append(r.Resp[:0], r.Msg[0]|4, r.Msg[1], 0x00)
}

func (e *fakeEngine) Submit(r *sched.Request) error {
	e.mu.Lock()
	if e.err != nil {
		e.mu.Unlock()
		return e.err
	}
	e.seen = append(e.seen, r)
	if !e.sync {
		e.pending = append(e.pending, r)
		e.mu.Unlock()
		return nil
	}
	e.mu.Unlock()
	e.finish(r)
	return nil
}

func (e *fakeEngine) finish(r *sched.Request) {
	if e.reply != nil {
		e.reply(r)
	} else {
		okReply(r)
	}
	r.Done(r)
}

// completeAll completes every pending request, in order.
func (e *fakeEngine) completeAll() int {
	e.mu.Lock()
	p := e.pending
	e.pending = nil
	e.mu.Unlock()
	for _, r := range p {
		e.finish(r)
	}
	return len(p)
}

func (e *fakeEngine) last(t *testing.T) *sched.Request {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.seen) == 0 {
		t.Fatal("no request reached the engine")
	}
	return e.seen[len(e.seen)-1]
}

func (e *fakeEngine) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen)
}

// cuseIn steps through one ioctl round by round, for tests that interleave
// other work between rounds. Faults are test failures here.
type cuseIn struct {
	cmd     uint32
	next    *cuse.IoctlIn
	outIovs []cuse.Iovec
}

func (c *cuseIn) round(t *testing.T, f cuse.File, mem *userMem) cuse.IoctlOut {
	t.Helper()
	if c.next == nil {
		c.next = &cuse.IoctlIn{Cmd: c.cmd, Arg: argBase, Flags: 0x2}
	}
	out := f.Ioctl(context.Background(), c.next)
	if !out.Retry {
		return out
	}
	next := &cuse.IoctlIn{Cmd: c.cmd, Arg: argBase, Flags: 0x2}
	for _, iov := range out.InIovs {
		src, ok := mem.span(iov.Base, iov.Len)
		if !ok {
			t.Fatalf("fault reading %+v", iov)
		}
		next.In = append(next.In, src...)
	}
	for _, iov := range out.OutIovs {
		next.OutSize += uint32(iov.Len)
	}
	c.next, c.outIovs = next, out.OutIovs
	return out
}

func (c *cuseIn) scatter(t *testing.T, out cuse.IoctlOut, mem *userMem) {
	t.Helper()
	rest := out.Out
	for _, iov := range c.outIovs {
		n := min(uint64(len(rest)), iov.Len)
		dst, ok := mem.span(iov.Base, n)
		if !ok {
			t.Fatalf("fault writing %+v", iov)
		}
		copy(dst, rest[:n])
		rest = rest[n:]
	}
}
