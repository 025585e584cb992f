// Package cusetest plays the kernel's side of a CUSE unrestricted ioctl
// against a cuse.File, without /dev/cuse: a fake process address space
// (Memory) and a fake kernel (Kernel) that runs the retry protocol of
// fs/fuse/ioctl.c round by round. Tests of any cuse.Device (the IPMI ioctl
// ABI, the watchdog, the message handler above them) use it to call ioctl(2)
// the way a process would, and to catch devices that break the protocol.
//
// What the Kernel does, as the kernel does (see shared/spec/cuse-protocol.md):
//   - the first round carries no payload and OutSize 0; FlagUnrestricted is
//     always set;
//   - a retry reply with more than MaxIovecs iovecs, or whose in or out
//     lengths add up to more than MaxIoctlSize, fails with ENOMEM; with
//     FlagCompat every base and length must fit in 32 bits, else EIO;
//   - the in-iovecs are copied from Memory, concatenated, into the next
//     round; an unmapped range fails the call with EFAULT before the device
//     sees that round;
//   - a final reply's output longer than the last round's OutSize fails with
//     EIO; otherwise it is scattered over the last round's out-iovecs in
//     order (EFAULT on an unmapped range) before a negative Result becomes
//     the errno;
//   - ENOSYS from the device, as an errno or a result, reaches the caller as
//     ENOTTY.
//
// Checks that no kernel makes but that show a device bug (an errno reply
// carrying output, which the kernel drops; zero-length iovecs; a call that
// makes no progress) are reported through the Kernel's testing.TB.
package cusetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"syscall"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
)

// FUSE_IOCTL_* flags of fuse_ioctl_in.flags.
const (
	FlagCompat       = 0x01 // FUSE_IOCTL_COMPAT: a 32-bit caller on a 64-bit kernel
	FlagUnrestricted = 0x02 // FUSE_IOCTL_UNRESTRICTED: set on every CUSE ioctl
	FlagRetry        = 0x04 // FUSE_IOCTL_RETRY
	Flag32Bit        = 0x08 // FUSE_IOCTL_32BIT: set with FlagCompat
)

// Kernel limits on a retry reply.
const (
	MaxIovecs    = 256        // FUSE_IOCTL_MAX_IOV: in + out iovecs
	MaxIoctlSize = 32 * 4096  // max_pages × PAGE_SIZE: sum of the in (or the out) lengths
	maxUint32    = 0xFFFFFFFF // compat callers' iovecs must fit in 32 bits
)

// DefaultMaxRounds bounds the rounds of one call when Kernel.MaxRounds is 0.
// The kernel has no bound; a test does, so a device that never stops asking
// fails instead of hanging.
const DefaultMaxRounds = 8

// ErrFault is the kind of error Memory returns for an access outside every
// mapped region, which the Kernel turns into EFAULT.
var ErrFault = errors.New("cusetest: bad address")

// Memory is a fake process address space: a few mapped regions at fixed
// addresses. It is safe for concurrent use, but the bytes of a region are
// shared with whoever mapped it, without locking.
type Memory struct {
	mu      sync.Mutex
	regions map[uint64][]byte
}

// NewMemory returns an address space with nothing mapped.
func NewMemory() *Memory { return &Memory{regions: map[uint64][]byte{}} }

// Map maps b at base, replacing a region already mapped at base. b is not
// copied: writes by the Kernel show in b, which Map returns so that a test
// can map and keep a buffer in one line.
func (m *Memory) Map(base uint64, b []byte) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.regions == nil {
		m.regions = map[uint64][]byte{}
	}
	m.regions[base] = b
	return b
}

// Unmap removes the region mapped at base, if any.
func (m *Memory) Unmap(base uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.regions, base)
}

// span returns the mapped bytes [base, base+n) of one region.
func (m *Memory) span(base, n uint64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n == 0 {
		return nil, nil // copying nothing never faults
	}
	end := base + n
	if end < base {
		return nil, fmt.Errorf("[%#x, +%d): %w", base, n, ErrFault)
	}
	for rb, r := range m.regions {
		if base >= rb && end <= rb+uint64(len(r)) {
			return r[base-rb : end-rb], nil
		}
	}
	return nil, fmt.Errorf("[%#x, +%d): %w", base, n, ErrFault)
}

// Read returns a copy of the n bytes at base, or an error wrapping ErrFault
// if they are not all inside one mapped region.
func (m *Memory) Read(base, n uint64) ([]byte, error) {
	b, err := m.span(base, n)
	if err != nil {
		return nil, fmt.Errorf("read %w", err)
	}
	return append([]byte{}, b...), nil
}

// Write copies b to base, or returns an error wrapping ErrFault (writing
// nothing) if the range is not inside one mapped region.
func (m *Memory) Write(base uint64, b []byte) error {
	dst, err := m.span(base, uint64(len(b)))
	if err != nil {
		return fmt.Errorf("write %w", err)
	}
	copy(dst, b)
	return nil
}

// Kernel runs ioctl(2) calls against cuse.Files over Mem. A Kernel is for
// one goroutine at a time (Rounds is per Kernel); use one per goroutine.
type Kernel struct {
	// TB receives protocol violations of the device: Errorf for a reply
	// the kernel would tolerate, Fatalf for a call that makes no progress.
	// With TB nil they panic.
	TB testing.TB
	// Mem is the caller's address space.
	Mem *Memory
	// MaxRounds bounds the rounds of one call; 0 means DefaultMaxRounds.
	MaxRounds int
	// Rounds is how many rounds the last Ioctl took.
	Rounds int
}

// NewKernel returns a Kernel reporting to tb over mem (a new empty Memory
// if mem is nil).
func NewKernel(tb testing.TB, mem *Memory) *Kernel {
	if mem == nil {
		mem = NewMemory()
	}
	return &Kernel{TB: tb, Mem: mem}
}

// Ioctl performs one ioctl(2) of cmd with argument arg on f and returns the
// errno the caller sees, 0 for success. flags are the FUSE_IOCTL_* flags
// beyond FlagUnrestricted (which is always set): 0 for a native 64-bit
// caller, FlagCompat|Flag32Bit for an i386 one.
func (k *Kernel) Ioctl(ctx context.Context, f cuse.File, cmd uint32, arg uint64, flags uint32) syscall.Errno {
	if k.TB != nil {
		k.TB.Helper()
	}
	c := k.Start(f, cmd, arg, flags)
	for {
		if _, done := c.Step(ctx); done {
			k.Rounds = c.Rounds()
			return c.Errno()
		}
	}
}

// Start begins an ioctl(2) without sending anything, for tests that do
// other work between its rounds (see Call.Step).
func (k *Kernel) Start(f cuse.File, cmd uint32, arg uint64, flags uint32) *Call {
	flags |= FlagUnrestricted
	return &Call{k: k, f: f, cmd: cmd, arg: arg, flags: flags,
		next: &cuse.IoctlIn{Cmd: cmd, Arg: arg, Flags: flags}}
}

// Call is one ioctl(2) in progress.
type Call struct {
	k       *Kernel
	f       cuse.File
	cmd     uint32
	arg     uint64
	flags   uint32
	next    *cuse.IoctlIn // the next round to send
	outIovs []cuse.Iovec  // out-iovecs of the round in flight
	rounds  int
	done    bool
	errno   syscall.Errno
}

// Step sends the next round to the file and handles its reply like the
// kernel: a retry is checked and its in-iovecs copied in for the next round;
// a final reply is scattered over the out-iovecs. It returns the file's
// reply and whether the call is over, after which Errno is what the caller
// sees. Step on a finished call changes nothing and returns done.
func (c *Call) Step(ctx context.Context) (out cuse.IoctlOut, done bool) {
	if c.k.TB != nil {
		c.k.TB.Helper()
	}
	if c.done {
		return cuse.IoctlOut{}, true
	}
	max := c.k.MaxRounds
	if max == 0 {
		max = DefaultMaxRounds
	}
	if c.rounds >= max {
		c.k.fatalf("ioctl %#x: no progress after %d rounds", c.cmd, max)
		c.finish(syscall.EIO) // only reached when TB.Fatalf does not stop the goroutine
		return cuse.IoctlOut{}, true
	}
	c.rounds++
	in := c.next
	out = c.f.Ioctl(ctx, in)
	if !out.Retry {
		c.finish(c.final(in, out))
		return out, true
	}
	if errno := c.retry(out); errno != 0 {
		c.finish(errno)
		return out, true
	}
	return out, false
}

// Errno is the errno the caller saw, once Step returned done.
func (c *Call) Errno() syscall.Errno { return c.errno }

// Rounds is how many rounds the file has been sent so far.
func (c *Call) Rounds() int { return c.rounds }

func (c *Call) finish(errno syscall.Errno) {
	c.done, c.errno = true, errno
}

// final handles a final reply to round in.
func (c *Call) final(in *cuse.IoctlIn, out cuse.IoctlOut) syscall.Errno {
	if out.Errno != 0 {
		if len(out.Out) != 0 {
			c.k.errorf("ioctl %#x: errno %v with %d output bytes (dropped by the kernel)", c.cmd, out.Errno, len(out.Out))
		}
		if out.Errno == syscall.ENOSYS {
			return syscall.ENOTTY
		}
		return out.Errno
	}
	if uint64(len(out.Out)) > uint64(in.OutSize) {
		return syscall.EIO
	}
	rest := out.Out
	for _, iov := range c.outIovs {
		if len(rest) == 0 {
			break
		}
		n := min(uint64(len(rest)), iov.Len)
		if err := c.k.Mem.Write(iov.Base, rest[:n]); err != nil {
			return syscall.EFAULT
		}
		rest = rest[n:]
	}
	switch {
	case out.Result == -int32(syscall.ENOSYS):
		return syscall.ENOTTY
	case out.Result < 0:
		return syscall.Errno(-out.Result)
	}
	return 0
}

// retry checks a retry reply and prepares the next round.
func (c *Call) retry(out cuse.IoctlOut) syscall.Errno {
	if len(out.InIovs)+len(out.OutIovs) > MaxIovecs {
		return syscall.ENOMEM
	}
	compat := c.flags&FlagCompat != 0
	inTotal, inOK := c.total("in", out.InIovs, compat)
	outTotal, outOK := c.total("out", out.OutIovs, compat)
	if !inOK || !outOK {
		return syscall.EIO
	}
	if inTotal > MaxIoctlSize || outTotal > MaxIoctlSize {
		return syscall.ENOMEM
	}
	payload := make([]byte, 0, inTotal)
	for _, iov := range out.InIovs {
		b, err := c.k.Mem.Read(iov.Base, iov.Len)
		if err != nil {
			return syscall.EFAULT
		}
		payload = append(payload, b...)
	}
	c.next = &cuse.IoctlIn{Cmd: c.cmd, Arg: c.arg, Flags: c.flags, In: payload, OutSize: uint32(outTotal)}
	c.outIovs = out.OutIovs
	return 0
}

// total adds up the lengths of iovs (saturating, so an overflow still
// exceeds MaxIoctlSize), reports zero-length iovecs, and returns false if a
// compat caller's iovec does not fit in 32 bits.
func (c *Call) total(dir string, iovs []cuse.Iovec, compat bool) (uint64, bool) {
	var sum uint64
	for _, iov := range iovs {
		if iov.Len == 0 {
			c.k.errorf("ioctl %#x: zero-length %s iovec", c.cmd, dir)
		}
		if compat && (iov.Base > maxUint32 || iov.Len > maxUint32) {
			return 0, false
		}
		if sum > math.MaxUint64-iov.Len {
			sum = math.MaxUint64
		} else {
			sum += iov.Len
		}
	}
	return sum, true
}

func (k *Kernel) errorf(format string, args ...any) {
	if k.TB == nil {
		panic(fmt.Sprintf("cusetest: "+format, args...))
	}
	k.TB.Helper()
	k.TB.Errorf(format, args...)
}

func (k *Kernel) fatalf(format string, args ...any) {
	if k.TB == nil {
		panic(fmt.Sprintf("cusetest: "+format, args...))
	}
	k.TB.Helper()
	k.TB.Fatalf(format, args...)
}
