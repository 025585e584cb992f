package cusetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
)

// scripted is a cuse.File whose Ioctl replies come from a list, one per
// round, and which records every round it was sent.
type scripted struct {
	replies []cuse.IoctlOut
	seen    []cuse.IoctlIn
}

func (s *scripted) Ioctl(_ context.Context, in *cuse.IoctlIn) cuse.IoctlOut {
	s.seen = append(s.seen, *in)
	if len(s.replies) == 0 {
		return cuse.IoctlOut{Errno: syscall.EINVAL}
	}
	out := s.replies[0]
	s.replies = s.replies[1:]
	return out
}
func (s *scripted) Read(context.Context, []byte, bool) (int, syscall.Errno) { return 0, syscall.EINVAL }
func (s *scripted) Write(context.Context, []byte) (int, syscall.Errno)      { return 0, syscall.EINVAL }
func (s *scripted) Poll(func()) uint32                                      { return 0 }
func (s *scripted) Release()                                                {}

// recorder is a testing.TB that keeps what a Kernel reports.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
	fatal  string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func retry(in, out []cuse.Iovec) cuse.IoctlOut {
	return cuse.IoctlOut{Retry: true, InIovs: in, OutIovs: out}
}

func iov(base, l uint64) cuse.Iovec { return cuse.Iovec{Base: base, Len: l} }

func iovs(n int, base, l uint64) []cuse.Iovec {
	v := make([]cuse.Iovec, n)
	for i := range v {
		v[i] = cuse.Iovec{Base: base, Len: l}
	}
	return v
}

const (
	argBase  = 0x1000
	dataBase = 0x2000
	highBase = 0x1_0000_0000
)

// TestIoctl runs scripted devices through the retry protocol and checks the
// errno the caller sees, the rounds the device saw and the caller's memory.
func TestIoctl(t *testing.T) {
	tests := []struct {
		name    string
		flags   uint32
		replies []cuse.IoctlOut
		want    syscall.Errno
		rounds  int
		// wantIn are the payloads of rounds 2.., wantOutSize their OutSize.
		wantIn      [][]byte
		wantOutSize []uint32
		wantArg     []byte // the 8 bytes at argBase afterwards
		wantData    []byte // the 4 bytes at dataBase afterwards
	}{
		{name: "one round", replies: []cuse.IoctlOut{{Result: 3}}, rounds: 1,
			wantArg: []byte{1, 2, 3, 4, 5, 6, 7, 8}, wantData: []byte{0xA, 0xB, 0xC, 0xD}},
		{name: "in-iovecs concatenated, output scattered",
			replies: []cuse.IoctlOut{
				retry([]cuse.Iovec{iov(dataBase+2, 2), iov(argBase, 3)}, []cuse.Iovec{iov(argBase+6, 2), iov(dataBase, 4)}),
				{Out: []byte{0xF1, 0xF2, 0xF3}},
			},
			rounds: 2, wantIn: [][]byte{{0xC, 0xD, 1, 2, 3}}, wantOutSize: []uint32{6},
			wantArg: []byte{1, 2, 3, 4, 5, 6, 0xF1, 0xF2}, wantData: []byte{0xF3, 0xB, 0xC, 0xD}},
		{name: "three rounds", replies: []cuse.IoctlOut{
			retry([]cuse.Iovec{iov(argBase, 8)}, nil),
			retry([]cuse.Iovec{iov(dataBase, 4)}, []cuse.Iovec{iov(argBase, 8)}),
			{Out: []byte{9}},
		}, rounds: 3, wantIn: [][]byte{{1, 2, 3, 4, 5, 6, 7, 8}, {0xA, 0xB, 0xC, 0xD}}, wantOutSize: []uint32{0, 8},
			wantArg: []byte{9, 2, 3, 4, 5, 6, 7, 8}, wantData: []byte{0xA, 0xB, 0xC, 0xD}},
		{name: "negative result after output", replies: []cuse.IoctlOut{
			retry(nil, []cuse.Iovec{iov(dataBase, 4)}),
			{Out: []byte{7, 7}, Result: -int32(syscall.EMSGSIZE)},
		}, want: syscall.EMSGSIZE, rounds: 2, wantOutSize: []uint32{4}, wantIn: [][]byte{{}},
			wantArg: []byte{1, 2, 3, 4, 5, 6, 7, 8}, wantData: []byte{7, 7, 0xC, 0xD}},
		{name: "errno", replies: []cuse.IoctlOut{{Errno: syscall.EBUSY}}, want: syscall.EBUSY, rounds: 1},
		{name: "ENOSYS errno is ENOTTY", replies: []cuse.IoctlOut{{Errno: syscall.ENOSYS}}, want: syscall.ENOTTY, rounds: 1},
		{name: "ENOSYS result is ENOTTY", replies: []cuse.IoctlOut{{Result: -int32(syscall.ENOSYS)}}, want: syscall.ENOTTY, rounds: 1},
		{name: "output beyond OutSize", replies: []cuse.IoctlOut{
			retry(nil, []cuse.Iovec{iov(argBase, 2)}),
			{Out: []byte{1, 2, 3}},
		}, want: syscall.EIO, rounds: 2, wantArg: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{name: "output on the first round", replies: []cuse.IoctlOut{{Out: []byte{1}}}, want: syscall.EIO, rounds: 1},
		{name: "unmapped in-iovec", replies: []cuse.IoctlOut{retry([]cuse.Iovec{iov(argBase+4, 8)}, nil)},
			want: syscall.EFAULT, rounds: 1},
		{name: "unmapped out-iovec", replies: []cuse.IoctlOut{
			retry(nil, []cuse.Iovec{iov(0x9000, 4)}),
			{Out: []byte{1}},
		}, want: syscall.EFAULT, rounds: 2},
		{name: "short output leaves later out-iovecs alone", replies: []cuse.IoctlOut{
			retry(nil, []cuse.Iovec{iov(argBase, 1), iov(0x9000, 4)}),
			{Out: []byte{0xEE}},
		}, rounds: 2, wantArg: []byte{0xEE, 2, 3, 4, 5, 6, 7, 8}},
		{name: "256 iovecs", replies: []cuse.IoctlOut{retry(iovs(128, argBase, 1), iovs(128, argBase, 1)), {}}, rounds: 2},
		{name: "257 iovecs", replies: []cuse.IoctlOut{retry(iovs(129, argBase, 1), iovs(128, argBase, 1))},
			want: syscall.ENOMEM, rounds: 1},
		{name: "in total at the limit is checked before the fault",
			replies: []cuse.IoctlOut{retry(iovs(2, 0x9000, MaxIoctlSize/2), nil)}, want: syscall.EFAULT, rounds: 1},
		{name: "in total over the limit", replies: []cuse.IoctlOut{retry(iovs(2, 0x9000, MaxIoctlSize/2+1), nil)},
			want: syscall.ENOMEM, rounds: 1},
		{name: "out total over the limit", replies: []cuse.IoctlOut{retry(nil, iovs(3, argBase, MaxIoctlSize/2))},
			want: syscall.ENOMEM, rounds: 1},
		{name: "out lengths that overflow", replies: []cuse.IoctlOut{retry(nil, []cuse.Iovec{iov(argBase, 1<<63), iov(argBase, 1<<63)})},
			want: syscall.ENOMEM, rounds: 1},
		{name: "native caller above 4 GiB", replies: []cuse.IoctlOut{retry([]cuse.Iovec{iov(highBase, 2)}, nil), {}},
			rounds: 2, wantIn: [][]byte{{0x55, 0x66}}, wantOutSize: []uint32{0}},
		{name: "compat caller above 4 GiB", flags: FlagCompat | Flag32Bit,
			replies: []cuse.IoctlOut{retry([]cuse.Iovec{iov(highBase, 2)}, nil)}, want: syscall.EIO, rounds: 1},
		{name: "compat out-iovec above 4 GiB", flags: FlagCompat | Flag32Bit,
			replies: []cuse.IoctlOut{retry(nil, []cuse.Iovec{iov(highBase, 2)})}, want: syscall.EIO, rounds: 1},
		{name: "compat caller below 4 GiB", flags: FlagCompat | Flag32Bit,
			replies: []cuse.IoctlOut{retry([]cuse.Iovec{iov(argBase, 1)}, nil), {}}, rounds: 2,
			wantIn: [][]byte{{1}}, wantOutSize: []uint32{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := NewMemory()
			arg := mem.Map(argBase, []byte{1, 2, 3, 4, 5, 6, 7, 8})
			data := mem.Map(dataBase, []byte{0xA, 0xB, 0xC, 0xD})
			mem.Map(highBase, []byte{0x55, 0x66})
			dev := &scripted{replies: tt.replies}
			k := NewKernel(t, mem)
			if got := k.Ioctl(t.Context(), dev, 0xC0DE, argBase, tt.flags); got != tt.want {
				t.Errorf("errno %v, want %v", got, tt.want)
			}
			if k.Rounds != tt.rounds || len(dev.seen) != tt.rounds {
				t.Errorf("Rounds %d, device saw %d, want %d", k.Rounds, len(dev.seen), tt.rounds)
			}
			for i, in := range dev.seen {
				if in.Cmd != 0xC0DE || in.Arg != argBase || in.Flags != tt.flags|FlagUnrestricted {
					t.Errorf("round %d: cmd %#x arg %#x flags %#x", i+1, in.Cmd, in.Arg, in.Flags)
				}
				if i == 0 {
					if len(in.In) != 0 || in.OutSize != 0 {
						t.Errorf("round 1 carries %d bytes, OutSize %d", len(in.In), in.OutSize)
					}
					continue
				}
				if i-1 < len(tt.wantIn) && !bytes.Equal(in.In, tt.wantIn[i-1]) {
					t.Errorf("round %d payload % x, want % x", i+1, in.In, tt.wantIn[i-1])
				}
				if i-1 < len(tt.wantOutSize) && in.OutSize != tt.wantOutSize[i-1] {
					t.Errorf("round %d OutSize %d, want %d", i+1, in.OutSize, tt.wantOutSize[i-1])
				}
			}
			if tt.wantArg != nil && !bytes.Equal(arg, tt.wantArg) {
				t.Errorf("arg memory % x, want % x", arg, tt.wantArg)
			}
			if tt.wantData != nil && !bytes.Equal(data, tt.wantData) {
				t.Errorf("data memory % x, want % x", data, tt.wantData)
			}
		})
	}
}

// TestViolations: device bugs the kernel would tolerate or that would hang
// a caller are reported through the TB, and the call still ends.
func TestViolations(t *testing.T) {
	forever := make([]cuse.IoctlOut, 20)
	for i := range forever {
		forever[i] = retry([]cuse.Iovec{iov(argBase, 1)}, nil)
	}
	tests := []struct {
		name      string
		maxRounds int
		replies   []cuse.IoctlOut
		errors    []string // substrings, one per Errorf
		fatal     string
		rounds    int
	}{
		{name: "errno with output", replies: []cuse.IoctlOut{{Errno: syscall.EINVAL, Out: []byte{1}}},
			errors: []string{"with 1 output bytes"}, rounds: 1},
		{name: "zero-length iovecs", replies: []cuse.IoctlOut{retry([]cuse.Iovec{iov(argBase, 0)}, []cuse.Iovec{iov(argBase, 0)}), {}},
			errors: []string{"zero-length in iovec", "zero-length out iovec"}, rounds: 2},
		{name: "no progress", replies: forever, fatal: "no progress after 8 rounds", rounds: DefaultMaxRounds},
		{name: "no progress, bound 4", maxRounds: 4, replies: forever, fatal: "no progress after 4 rounds", rounds: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			mem := NewMemory()
			mem.Map(argBase, make([]byte, 8))
			k := NewKernel(rec, mem)
			k.MaxRounds = tt.maxRounds
			dev := &scripted{replies: tt.replies}
			done := make(chan struct{})
			go func() {
				defer close(done)
				k.Ioctl(context.Background(), dev, 1, argBase, 0)
			}()
			<-done
			if len(rec.errors) != len(tt.errors) {
				t.Fatalf("errors %q, want %d", rec.errors, len(tt.errors))
			}
			for i, want := range tt.errors {
				if !strings.Contains(rec.errors[i], want) {
					t.Errorf("error %q, want it to say %q", rec.errors[i], want)
				}
			}
			if (tt.fatal == "") != (rec.fatal == "") || !strings.Contains(rec.fatal, tt.fatal) {
				t.Errorf("fatal %q, want %q", rec.fatal, tt.fatal)
			}
			if len(dev.seen) != tt.rounds {
				t.Errorf("device saw %d rounds, want %d", len(dev.seen), tt.rounds)
			}
		})
	}
}

// TestNilTBPanics: without a TB a violation panics rather than pass unseen.
func TestNilTBPanics(t *testing.T) {
	k := NewKernel(nil, nil)
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "output bytes") {
			t.Errorf("recovered %v, want a panic about output bytes", r)
		}
	}()
	k.Ioctl(t.Context(), &scripted{replies: []cuse.IoctlOut{{Errno: syscall.EIO, Out: []byte{1}}}}, 1, 0, 0)
}

// TestCallSteps: a call driven round by round copies in at each retry, so
// memory changed between rounds is read fresh, and scatters at the end.
func TestCallSteps(t *testing.T) {
	mem := NewMemory()
	mem.Map(argBase, []byte{1})
	dev := &scripted{replies: []cuse.IoctlOut{
		retry([]cuse.Iovec{iov(argBase, 1)}, nil),
		retry([]cuse.Iovec{iov(argBase, 1)}, []cuse.Iovec{iov(dataBase, 2)}),
		{Out: []byte{5, 6}},
	}}
	c := NewKernel(t, mem).Start(dev, 7, argBase, 0)
	if out, done := c.Step(t.Context()); done || !out.Retry || c.Rounds() != 1 {
		t.Fatalf("round 1: %+v done %v rounds %d", out, done, c.Rounds())
	}
	mem.Map(argBase, []byte{2}) // the process changes its struct between rounds
	if _, done := c.Step(t.Context()); done {
		t.Fatal("round 2 finished the call")
	}
	data := mem.Map(dataBase, make([]byte, 2)) // mapped only now
	out, done := c.Step(t.Context())
	if !done || out.Retry || c.Errno() != 0 || c.Rounds() != 3 {
		t.Fatalf("round 3: %+v done %v errno %v rounds %d", out, done, c.Errno(), c.Rounds())
	}
	if !bytes.Equal(dev.seen[1].In, []byte{1}) || !bytes.Equal(dev.seen[2].In, []byte{2}) {
		t.Errorf("payloads % x, % x; want 01, 02", dev.seen[1].In, dev.seen[2].In)
	}
	if !bytes.Equal(data, []byte{5, 6}) {
		t.Errorf("data % x, want 05 06", data)
	}
	if _, done := c.Step(t.Context()); !done || len(dev.seen) != 3 {
		t.Errorf("Step after the end: done %v, device saw %d rounds", done, len(dev.seen))
	}
}

func TestMemory(t *testing.T) {
	m := NewMemory()
	a := m.Map(0x100, []byte{1, 2, 3, 4})
	m.Map(0x104, []byte{5, 6})
	m.Map(^uint64(0)-2, []byte{7, 8})
	tests := []struct {
		name  string
		base  uint64
		n     uint64
		want  []byte
		fault bool
	}{
		{"whole region", 0x100, 4, []byte{1, 2, 3, 4}, false},
		{"inside", 0x101, 2, []byte{2, 3}, false},
		{"across two adjacent regions", 0x102, 4, nil, true},
		{"before", 0xFF, 2, nil, true},
		{"unmapped", 0x9000, 1, nil, true},
		{"zero bytes anywhere", 0x9000, 0, []byte{}, false},
		{"top of the address space", ^uint64(0) - 2, 2, []byte{7, 8}, false},
		{"wraps around", ^uint64(0) - 2, 4, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.Read(tt.base, tt.n)
			if tt.fault {
				if !errors.Is(err, ErrFault) {
					t.Fatalf("Read err %v, want ErrFault", err)
				}
				if werr := m.Write(tt.base, make([]byte, tt.n)); !errors.Is(werr, ErrFault) {
					t.Errorf("Write err %v, want ErrFault", werr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("Read = % x, %v; want % x", got, err, tt.want)
			}
		})
	}
	got, _ := m.Read(0x100, 2)
	got[0] = 0xFF
	if a[0] != 1 {
		t.Error("Read returned the mapped bytes, not a copy")
	}
	if err := m.Write(0x102, []byte{9, 9}); err != nil || !bytes.Equal(a, []byte{1, 2, 9, 9}) {
		t.Errorf("Write: %v, region % x", err, a)
	}
	m.Unmap(0x100)
	if _, err := m.Read(0x100, 1); !errors.Is(err, ErrFault) {
		t.Errorf("Read after Unmap: %v, want ErrFault", err)
	}
	var zero Memory
	zero.Map(1, []byte{3})
	if b, err := zero.Read(1, 1); err != nil || b[0] != 3 {
		t.Errorf("zero Memory: % x, %v", b, err)
	}
}
