package cuse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// testDevice opens testFiles whose behaviour comes from the device's hooks.
type testDevice struct {
	openErr syscall.Errno
	read    func(ctx context.Context, f *testFile, dst []byte, nonblock bool) (int, syscall.Errno)
	ioctl   func(ctx context.Context, f *testFile, in *IoctlIn) IoctlOut
	revents uint32
	wakeNow bool // Poll calls wake before returning (readiness changed meanwhile)

	mu    sync.Mutex
	files []*testFile
	flags []uint32
}

func (d *testDevice) Open(_ context.Context, flags uint32) (File, syscall.Errno) {
	if d.openErr != 0 {
		return nil, d.openErr
	}
	f := &testFile{dev: d, wakes: make(chan func(), 4)}
	d.mu.Lock()
	d.files = append(d.files, f)
	d.flags = append(d.flags, flags)
	d.mu.Unlock()
	return f, 0
}

func (d *testDevice) file(i int) *testFile {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.files[i]
}

// testFile records what the server asked of it.
type testFile struct {
	dev      *testDevice
	releases atomic.Int32
	afterRel atomic.Int32 // calls made after Release
	wakes    chan func()  // wake funcs passed to Poll (nil included)
	mu       sync.Mutex
	written  []byte
	nonblock []bool
}

func (f *testFile) checkLive() {
	if f.releases.Load() > 0 {
		f.afterRel.Add(1)
	}
}

func (f *testFile) Read(ctx context.Context, dst []byte, nonblock bool) (int, syscall.Errno) {
	f.checkLive()
	f.mu.Lock()
	f.nonblock = append(f.nonblock, nonblock)
	f.mu.Unlock()
	if f.dev.read != nil {
		return f.dev.read(ctx, f, dst, nonblock)
	}
	return copy(dst, "hello"), 0
}

func (f *testFile) Write(_ context.Context, src []byte) (int, syscall.Errno) {
	f.checkLive()
	f.mu.Lock()
	f.written = append(f.written, src...)
	f.mu.Unlock()
	return len(src), 0
}

func (f *testFile) Ioctl(ctx context.Context, in *IoctlIn) IoctlOut {
	f.checkLive()
	if f.dev.ioctl != nil {
		return f.dev.ioctl(ctx, f, in)
	}
	return IoctlOut{Errno: syscall.ENOTTY}
}

func (f *testFile) Poll(wake func()) uint32 {
	f.checkLive()
	f.wakes <- wake
	if f.dev.wakeNow && wake != nil {
		wake()
	}
	return f.dev.revents
}

func (f *testFile) Release() { f.releases.Add(1) }

// blockingRead blocks until ctx is done, then returns what ret says.
func blockingRead(started chan<- struct{}, ret syscall.Errno) func(context.Context, *testFile, []byte, bool) (int, syscall.Errno) {
	return func(ctx context.Context, _ *testFile, _ []byte, nonblock bool) (int, syscall.Errno) {
		if nonblock {
			return 0, syscall.EAGAIN
		}
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return 0, ret
	}
}

const cmdUpper = 0xC0105501 // test command: struct {u64 ptr; u64 len} at arg

// upperIoctl implements cmdUpper with the retry protocol, stateless between
// rounds: round 1 asks for the struct, round 2 for the buffer it points to
// (and offers it as output), round 3 writes the buffer back upper-cased and
// returns its length.
func upperIoctl(_ context.Context, _ *testFile, in *IoctlIn) IoctlOut {
	if in.Cmd != cmdUpper {
		return IoctlOut{Errno: syscall.ENOTTY}
	}
	if len(in.In) == 0 {
		return IoctlOut{Retry: true, InIovs: []Iovec{{Base: in.Arg, Len: 16}}}
	}
	if len(in.In) < 16 {
		return IoctlOut{Errno: syscall.EINVAL}
	}
	ptr := binary.LittleEndian.Uint64(in.In)
	n := binary.LittleEndian.Uint64(in.In[8:])
	if n > 4096 {
		return IoctlOut{Errno: syscall.EMSGSIZE}
	}
	buf := []Iovec{{Base: ptr, Len: n}}
	if uint64(len(in.In)) != 16+n || uint64(in.OutSize) != n {
		return IoctlOut{Retry: true, InIovs: []Iovec{{Base: in.Arg, Len: 16}, buf[0]}, OutIovs: buf}
	}
	return IoctlOut{Result: int32(n), Out: bytes.ToUpper(in.In[16:])}
}

func TestInit(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		opts      kernelOpts
		wantErr   error // from ServeFile; nil = serving
		wantMinor uint32
		wantMax   uint32
	}{
		{name: "current kernel", cfg: Config{DevName: "ipmi0"}, opts: kernelOpts{minor: 40}, wantMinor: 31, wantMax: DefaultMaxIO},
		{name: "older kernel minor", cfg: Config{DevName: "ipmi0", MaxRead: 100, MaxWrite: 1 << 20}, opts: kernelOpts{minor: 20}, wantMinor: 20, wantMax: 4096},
		{name: "fixed device number", cfg: Config{DevName: "ipmi0", DevMajor: 240, DevMinor: 3}, opts: kernelOpts{minor: 31}, wantMinor: 31, wantMax: DefaultMaxIO},
		{name: "wrong major", cfg: Config{DevName: "ipmi0"}, opts: kernelOpts{major: 8}, wantErr: ErrProtocol},
		{name: "restricted kernel", cfg: Config{DevName: "ipmi0"}, opts: kernelOpts{noFlags: true}, wantErr: ErrProtocol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := startKernelNoInit(t, tc.cfg, &testDevice{})
			msg := k.initHandshake(tc.opts)
			h, _ := decode[fuse.OutHeader](msg)
			if tc.wantErr != nil {
				if h.Status != -int32(syscall.EPROTO) || len(msg) != outHeaderSize {
					t.Errorf("reply status %d len %d, want -EPROTO header only", h.Status, len(msg))
				}
				if err := k.waitServe(); !errors.Is(err, tc.wantErr) {
					t.Errorf("ServeFile = %v, want %v", err, tc.wantErr)
				}
				return
			}
			info := "DEVNAME=" + tc.cfg.DevName + "\x00"
			if h.Status != 0 || int(h.Length) != outHeaderSize+cuseInitOutSize+len(info) {
				t.Fatalf("reply status %d len %d, want 0, %d", h.Status, h.Length, outHeaderSize+cuseInitOutSize+len(info))
			}
			out, _ := decode[cuseInitOut](msg[outHeaderSize:])
			want := cuseInitOut{Major: 7, Minor: tc.wantMinor, Flags: fuse.CUSE_UNRESTRICTED_IOCTL,
				MaxRead: tc.wantMax, MaxWrite: DefaultMaxIO, DevMajor: tc.cfg.DevMajor, DevMinor: tc.cfg.DevMinor}
			if tc.cfg.MaxWrite == 0 {
				want.MaxWrite = DefaultMaxIO
			}
			if out != want {
				t.Errorf("cuse_init_out = %+v, want %+v", out, want)
			}
			if got := string(msg[outHeaderSize+cuseInitOutSize:]); got != info {
				t.Errorf("info block %q, want %q", got, info)
			}
			select {
			case <-k.srv.Ready():
			case <-time.After(waitLong):
				t.Error("Ready not closed after init")
			}
		})
	}
}

func TestFirstMessageNotInit(t *testing.T) {
	k := startKernelNoInit(t, Config{}, &testDevice{})
	k.send(opOpen, openInBody(0))
	if err := k.waitServe(); !errors.Is(err, ErrProtocol) {
		t.Errorf("ServeFile = %v, want ErrProtocol", err)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		dev  Device
	}{
		{"empty name", Config{}, &testDevice{}},
		{"slash", Config{DevName: "a/b"}, &testDevice{}},
		{"space", Config{DevName: "a b"}, &testDevice{}},
		{"too long", Config{DevName: strings.Repeat("x", 5000)}, &testDevice{}},
		{"nil device", Config{DevName: "ok"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srvEnd, kEnd := socketPair(t)
			defer kEnd.Close()
			if err := New(tc.cfg, tc.dev).ServeFile(context.Background(), srvEnd); !errors.Is(err, ErrConfig) {
				t.Errorf("ServeFile = %v, want ErrConfig", err)
			}
		})
	}
}

func TestServeMissingCuse(t *testing.T) {
	cfg := Config{DevName: "x", CusePath: filepath.Join(t.TempDir(), "cuse")}
	err := New(cfg, &testDevice{}).Serve(context.Background())
	if !errors.Is(err, ErrNoCuse) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "modprobe cuse") {
		t.Errorf("Serve = %v, want ErrNoCuse wrapping ENOENT with a modprobe hint", err)
	}
}

// TestRequests covers each opcode's simple request/reply shapes.
func TestRequests(t *testing.T) {
	dev := &testDevice{ioctl: upperIoctl, revents: 0x41}
	k := startKernel(t, Config{}, dev)
	fh := k.open(uint32(os.O_RDWR | syscall.O_NONBLOCK))

	tests := []struct {
		name       string
		op         uint32
		body       []byte
		wantStatus syscall.Errno
		wantBody   []byte
	}{
		{"read", opRead, readInBody(fh, 100, 0), 0, []byte("hello")},
		{"read short size", opRead, readInBody(fh, 3, 0), 0, []byte("hel")},
		{"read bad fh", opRead, readInBody(999, 100, 0), syscall.EBADF, nil},
		{"write", opWrite, writeInBody(fh, []byte("abc")), 0, []byte{3, 0, 0, 0, 0, 0, 0, 0}},
		{"write truncated data", opWrite, writeInBody(fh, []byte("abc"))[:writeInSize+1], syscall.EINVAL, nil},
		{"poll without notify", opPoll, pollInBody(fh, 1, 0, 1), 0, []byte{0x41, 0, 0, 0, 0, 0, 0, 0}},
		{"poll bad fh", opPoll, pollInBody(77, 1, 0, 1), syscall.EBADF, nil},
		{"flush", opFlush, make([]byte, 24), 0, nil},
		{"unknown ioctl", opIoctl, ioctlInBody(fh, fuse.IOCTL_UNRESTRICTED, 0x1, 0, nil, 0), syscall.ENOTTY, nil},
		{"ioctl in_size mismatch", opIoctl, ioctlInBody(fh, fuse.IOCTL_UNRESTRICTED, cmdUpper, 0, nil, 0)[:ioctlInSize-1], syscall.EINVAL, nil},
		{"fsync unsupported", opFsync, make([]byte, 16), syscall.ENOSYS, nil},
		{"unknown opcode", 9999, nil, syscall.ENOSYS, nil},
		{"lookup opcode", 1, []byte("name\x00"), syscall.ENOSYS, nil},
		{"open too short", opOpen, []byte{1, 2}, syscall.EINVAL, nil},
		{"second init", opCuseInit, make([]byte, 16), syscall.EINVAL, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := k.call(tc.op, tc.body)
			if status != -int32(tc.wantStatus) {
				t.Errorf("status %d, want %d", status, -int32(tc.wantStatus))
			}
			if !bytes.Equal(body, tc.wantBody) {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
		})
	}
	f := dev.file(0)
	if got := string(f.written); got != "abc" {
		t.Errorf("device got writes %q, want %q", got, "abc")
	}
	if dev.flags[0]&syscall.O_NONBLOCK == 0 {
		t.Errorf("open flags %#x lost O_NONBLOCK", dev.flags[0])
	}
}

func TestReadNonblockFlag(t *testing.T) {
	dev := &testDevice{}
	k := startKernel(t, Config{}, dev)
	fh := k.open(uint32(os.O_RDWR))
	for _, flags := range []uint32{0, syscall.O_NONBLOCK} {
		if status, _ := k.call(opRead, readInBody(fh, 10, flags)); status != 0 {
			t.Fatalf("read status %d", status)
		}
	}
	f := dev.file(0)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.nonblock) != 2 || f.nonblock[0] || !f.nonblock[1] {
		t.Errorf("nonblock seen by device %v, want [false true]", f.nonblock)
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name string
		err  syscall.Errno
		want syscall.Errno
	}{
		{"busy", syscall.EBUSY, syscall.EBUSY},
		{"ENOSYS is never sent to OPEN", syscall.ENOSYS, syscall.ENXIO},
		{"errno out of range", syscall.Errno(600), syscall.ERANGE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := startKernel(t, Config{}, &testDevice{openErr: tc.err})
			status, body := k.call(opOpen, openInBody(0))
			if status != -int32(tc.want) || len(body) != 0 {
				t.Errorf("OPEN status %d body %d bytes, want %d", status, len(body), -int32(tc.want))
			}
		})
	}
}

// TestIoctlRetry runs a three-round unrestricted ioctl, on a goroutine per
// request and inline on the reader (Config.InlineIoctl).
func TestIoctlRetry(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			dev := &testDevice{ioctl: upperIoctl}
			k := startKernel(t, Config{InlineIoctl: inline}, dev)
			fh := k.open(uint32(os.O_RDWR))
			const argAddr, bufAddr = 0x10000, 0x20000
			arg := append(le64(bufAddr), le64(11)...)
			mem := &fakeMem{regions: map[uint64][]byte{argAddr: arg, bufAddr: []byte("hello world")}}
			res := k.ioctl(fh, fuse.IOCTL_UNRESTRICTED, cmdUpper, argAddr, mem)
			if res.errno != 0 || res.result != 11 {
				t.Fatalf("ioctl = %+v, want result 11", res)
			}
			if res.rounds != 3 {
				t.Errorf("rounds = %d, want 3 (struct, then buffer, then output)", res.rounds)
			}
			if got := string(mem.regions[bufAddr]); got != "HELLO WORLD" {
				t.Errorf("caller buffer = %q, want %q", got, "HELLO WORLD")
			}

			// A bad pointer in the struct: the kernel answers EFAULT itself and the
			// round never reaches the server; the server must carry on.
			bad := append(le64(0xdead0000), le64(4)...)
			mem.regions[argAddr] = bad
			if res := k.ioctl(fh, fuse.IOCTL_UNRESTRICTED, cmdUpper, argAddr, mem); res.errno != syscall.EFAULT {
				t.Errorf("ioctl with bad pointer = %+v, want EFAULT", res)
			}
			mem.regions[argAddr] = arg
			mem.regions[bufAddr] = []byte("second call")
			if res := k.ioctl(fh, fuse.IOCTL_UNRESTRICTED, cmdUpper, argAddr, mem); res.errno != 0 || string(mem.regions[bufAddr]) != "SECOND CALL" {
				t.Errorf("ioctl after a fault = %+v, buffer %q", res, mem.regions[bufAddr])
			}
		})
	}
}

// TestIoctlLimits checks that a device reply the kernel would refuse becomes
// the errno the kernel would give, and never reaches the kernel.
func TestIoctlLimits(t *testing.T) {
	many := func(n int) []Iovec {
		v := make([]Iovec, n)
		for i := range v {
			v[i] = Iovec{Base: uint64(i) * 16, Len: 1}
		}
		return v
	}
	tests := []struct {
		name    string
		flags   uint32
		outSize uint32
		out     IoctlOut
		want    syscall.Errno
		wantIov uint32 // iovec count in a successful retry
	}{
		{"256 iovecs ok", fuse.IOCTL_UNRESTRICTED, 0, IoctlOut{Retry: true, InIovs: many(200), OutIovs: many(56)}, 0, 256},
		{"257 iovecs", fuse.IOCTL_UNRESTRICTED, 0, IoctlOut{Retry: true, InIovs: many(200), OutIovs: many(57)}, syscall.ENOMEM, 0},
		{"zero-length iovecs dropped", fuse.IOCTL_UNRESTRICTED, 0, IoctlOut{Retry: true, InIovs: append(many(256), Iovec{Base: 1})}, 0, 256},
		{"in bytes at limit", fuse.IOCTL_UNRESTRICTED, 0, IoctlOut{Retry: true, InIovs: []Iovec{{1, 65536}, {2, 65536}}}, 0, 2},
		{"in bytes over limit", fuse.IOCTL_UNRESTRICTED, 0, IoctlOut{Retry: true, InIovs: []Iovec{{1, 65536}, {2, 65537}}}, syscall.ENOMEM, 0},
		{"out bytes over limit", fuse.IOCTL_UNRESTRICTED, 0, IoctlOut{Retry: true, OutIovs: []Iovec{{1, 131073}}}, syscall.ENOMEM, 0},
		{"huge len does not overflow", fuse.IOCTL_UNRESTRICTED, 0, IoctlOut{Retry: true, InIovs: []Iovec{{1, 1}, {2, ^uint64(0)}}}, syscall.ENOMEM, 0},
		{"compat base above 4G", fuse.IOCTL_UNRESTRICTED | fuse.IOCTL_COMPAT | ioctl32Bit, 0, IoctlOut{Retry: true, InIovs: []Iovec{{1 << 32, 4}}}, syscall.EIO, 0},
		{"compat base below 4G", fuse.IOCTL_UNRESTRICTED | fuse.IOCTL_COMPAT | ioctl32Bit, 0, IoctlOut{Retry: true, InIovs: []Iovec{{1<<32 - 8, 4}}}, 0, 1},
		{"retry asking for nothing", fuse.IOCTL_UNRESTRICTED, 0, IoctlOut{Retry: true}, syscall.EIO, 0},
		{"retry on restricted ioctl", 0, 0, IoctlOut{Retry: true, InIovs: []Iovec{{1, 4}}}, syscall.EIO, 0},
		{"output larger than out_size", fuse.IOCTL_UNRESTRICTED, 4, IoctlOut{Out: []byte("12345")}, syscall.EIO, 0},
		{"output fits out_size", fuse.IOCTL_UNRESTRICTED, 5, IoctlOut{Out: []byte("12345")}, 0, 0},
		{"errno passes", fuse.IOCTL_UNRESTRICTED, 0, IoctlOut{Errno: syscall.EMSGSIZE}, syscall.EMSGSIZE, 0},
		{"errno out of range", fuse.IOCTL_UNRESTRICTED, 0, IoctlOut{Errno: syscall.Errno(512)}, syscall.ERANGE, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev := &testDevice{ioctl: func(context.Context, *testFile, *IoctlIn) IoctlOut { return tc.out }}
			k := startKernel(t, Config{}, dev)
			fh := k.open(0)
			status, body := k.call(opIoctl, ioctlInBody(fh, tc.flags, 0x1234, 0, nil, tc.outSize))
			if status != -int32(tc.want) {
				t.Fatalf("status %d, want %d", status, -int32(tc.want))
			}
			if tc.want != 0 {
				return
			}
			out, ok := decode[fuse.IoctlOut](body)
			if !ok {
				t.Fatalf("reply payload %d bytes", len(body))
			}
			if tc.out.Retry {
				if out.Flags != fuse.IOCTL_RETRY || out.InIovs+out.OutIovs != tc.wantIov ||
					len(body) != ioctlOutSize+ioctlIovecSize*int(tc.wantIov) {
					t.Errorf("retry reply %+v with %d bytes, want %d iovecs", out, len(body), tc.wantIov)
				}
			} else if out.Flags != 0 || !bytes.Equal(body[ioctlOutSize:], tc.out.Out) {
				t.Errorf("final reply %+v data %q", out, body[ioctlOutSize:])
			}
		})
	}
}

func TestPollNotify(t *testing.T) {
	dev := &testDevice{}
	k := startKernel(t, Config{}, dev)
	fh := k.open(0)
	f := dev.file(0)

	status, body := k.call(opPoll, pollInBody(fh, 7, fuse.FUSE_POLL_SCHEDULE_NOTIFY, 0x41))
	if status != 0 || !bytes.Equal(body, make([]byte, pollOutSize)) {
		t.Fatalf("POLL reply %d %v, want 0 revents", status, body)
	}
	wake := <-f.wakes
	if wake == nil {
		t.Fatal("Poll got no wake func despite FUSE_POLL_SCHEDULE_NOTIFY")
	}
	wake()
	wake() // one-shot: the second call must not send another notification
	select {
	case msg := <-k.notifies:
		h, _ := decode[fuse.OutHeader](msg)
		w, _ := decode[notifyPollWakeup](msg[outHeaderSize:])
		if h.Status != notifyPoll || h.Unique != 0 || len(msg) != 24 || w.Kh != 7 {
			t.Errorf("notification %+v kh %d len %d, want NOTIFY_POLL kh 7 len 24", h, w.Kh, len(msg))
		}
	case <-time.After(waitLong):
		t.Fatal("no poll notification")
	}

	// A poll without SCHEDULE_NOTIFY gets no wake func.
	k.call(opPoll, pollInBody(fh, 7, 0, 0x41))
	if w := <-f.wakes; w != nil {
		t.Error("Poll got a wake func without FUSE_POLL_SCHEDULE_NOTIFY")
	}
	// A wake after RELEASE is dropped.
	k.call(opPoll, pollInBody(fh, 7, fuse.FUSE_POLL_SCHEDULE_NOTIFY, 0x41))
	late := <-f.wakes
	k.call(opRelease, releaseInBody(fh))
	late()
	// Sync with the server: a notification would have been written by now.
	k.call(opFlush, make([]byte, 24))
	select {
	case msg := <-k.notifies:
		t.Errorf("notification after RELEASE: %v", msg)
	default:
	}
	select {
	case msg := <-k.notifies:
		t.Errorf("extra notification: %v", msg)
	default:
	}
}

func TestInterruptBlockedRead(t *testing.T) {
	tests := []struct {
		name string
		ret  syscall.Errno // what the device returns when its ctx ends
	}{
		{"device returns EINTR", syscall.EINTR},
		{"device returns nothing", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			started := make(chan struct{}, 1)
			dev := &testDevice{read: blockingRead(started, tc.ret)}
			k := startKernel(t, Config{}, dev)
			fh := k.open(0)
			u := k.send(opRead, readInBody(fh, 10, 0))
			<-started
			k.noReply(u)
			k.sendAs(u|1, opInterrupt, interruptInBody(u))
			if status, body := k.reply(u); status != -int32(syscall.EINTR) || len(body) != 0 {
				t.Errorf("interrupted READ reply %d %v, want -EINTR", status, body)
			}
			k.noReply(u | 1) // INTERRUPT itself gets no reply
		})
	}
}

func TestInterruptBeforeRequest(t *testing.T) {
	started := make(chan struct{}, 1)
	dev := &testDevice{read: blockingRead(started, syscall.EINTR)}
	k := startKernel(t, Config{}, dev)
	fh := k.open(0)
	u := k.nextUnique()
	k.sendAs(u|1, opInterrupt, interruptInBody(u))
	k.sendAs(u, opRead, readInBody(fh, 10, 0))
	if status, _ := k.reply(u); status != -int32(syscall.EINTR) {
		t.Errorf("READ interrupted in advance replied %d, want -EINTR", status)
	}
	// A stale interrupt for a finished request is harmless.
	k.sendAs(u|1, opInterrupt, interruptInBody(u))
	if status, _ := k.call(opRead, readInBody(fh, 10, syscall.O_NONBLOCK)); status != -int32(syscall.EAGAIN) {
		t.Errorf("later nonblocking read replied %d, want -EAGAIN", status)
	}
}

func TestRelease(t *testing.T) {
	dev := &testDevice{}
	k := startKernel(t, Config{}, dev)
	fh1, fh2 := k.open(0), k.open(0)
	if fh1 == fh2 {
		t.Fatalf("two opens got the same fh %d", fh1)
	}
	if status, body := k.call(opRelease, releaseInBody(fh1)); status != 0 || len(body) != 0 {
		t.Errorf("RELEASE reply %d %v, want bare success", status, body)
	}
	// A duplicate RELEASE and requests on the released fh never reach the file.
	if status, _ := k.call(opRelease, releaseInBody(fh1)); status != 0 {
		t.Errorf("duplicate RELEASE reply %d", status)
	}
	if status, _ := k.call(opRead, readInBody(fh1, 10, 0)); status != -int32(syscall.EBADF) {
		t.Errorf("READ after RELEASE = %d, want -EBADF", status)
	}
	f1, f2 := dev.file(0), dev.file(1)
	if n := f1.releases.Load(); n != 1 {
		t.Errorf("Release called %d times, want 1", n)
	}
	if n := f1.afterRel.Load(); n != 0 {
		t.Errorf("%d calls after Release", n)
	}
	if n := f2.releases.Load(); n != 0 {
		t.Errorf("other file released %d times", n)
	}
	// Shutdown releases the files the kernel never sent RELEASE for.
	k.cancel()
	if err := k.waitServe(); err != nil {
		t.Errorf("ServeFile after cancel = %v, want nil", err)
	}
	if n1, n2 := f1.releases.Load(), f2.releases.Load(); n1 != 1 || n2 != 1 {
		t.Errorf("after shutdown Release counts %d, %d; want 1, 1", n1, n2)
	}
}

// TestConcurrency: a read blocked on one file must not stop an ioctl on
// another.
func TestConcurrency(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			started := make(chan struct{}, 1)
			unblock := make(chan struct{})
			dev := &testDevice{
				ioctl: upperIoctl,
				read: func(ctx context.Context, _ *testFile, dst []byte, _ bool) (int, syscall.Errno) {
					started <- struct{}{}
					select {
					case <-unblock:
						return copy(dst, "late"), 0
					case <-ctx.Done():
						return 0, syscall.EINTR
					}
				},
			}
			k := startKernel(t, Config{InlineIoctl: inline}, dev)
			fhA, fhB := k.open(0), k.open(0)
			u := k.send(opRead, readInBody(fhA, 10, 0))
			<-started

			mem := &fakeMem{regions: map[uint64][]byte{0x1000: append(le64(0x2000), le64(3)...), 0x2000: []byte("abc")}}
			if res := k.ioctl(fhB, fuse.IOCTL_UNRESTRICTED, cmdUpper, 0x1000, mem); res.errno != 0 || res.result != 3 {
				t.Errorf("ioctl during blocked read = %+v", res)
			}
			k.noReply(u)
			close(unblock)
			if status, body := k.reply(u); status != 0 || string(body) != "late" {
				t.Errorf("blocked read reply %d %q", status, body)
			}
		})
	}
}

// TestInlineIoctlRunsOnReader checks what InlineIoctl promises and costs:
// the ioctl runs on the reader, so a request sent after it is not answered
// until it returns; without InlineIoctl the later request is answered at
// once. A blocked READ still never holds up an inline ioctl (TestConcurrency).
func TestInlineIoctlRunsOnReader(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			entered := make(chan struct{}, 1)
			release := make(chan struct{})
			dev := &testDevice{ioctl: func(_ context.Context, _ *testFile, in *IoctlIn) IoctlOut {
				entered <- struct{}{}
				<-release
				return IoctlOut{Result: 7}
			}}
			k := startKernel(t, Config{InlineIoctl: inline}, dev)
			fh := k.open(0)
			u := k.send(opIoctl, ioctlInBody(fh, fuse.IOCTL_UNRESTRICTED, 1, 0, nil, 0))
			<-entered
			p := k.send(opPoll, pollInBody(fh, 0, 0, 0))
			if inline {
				k.noReply(p)
			} else if status, _ := k.reply(p); status != 0 {
				t.Fatalf("poll during a blocked ioctl: status %d", status)
			}
			close(release)
			if status, _ := k.reply(u); status != 0 {
				t.Fatalf("ioctl status %d", status)
			}
			if inline {
				if status, _ := k.reply(p); status != 0 {
					t.Fatalf("poll after the ioctl: status %d", status)
				}
			}
		})
	}
}

func TestShutdownAnswersPending(t *testing.T) {
	started := make(chan struct{}, 1)
	dev := &testDevice{read: blockingRead(started, 0)}
	k := startKernel(t, Config{}, dev)
	fh := k.open(0)
	u := k.send(opRead, readInBody(fh, 10, 0))
	<-started
	k.cancel()
	if status, _ := k.reply(u); status != -int32(syscall.EINTR) {
		t.Errorf("pending READ at shutdown replied %d, want -EINTR", status)
	}
	if err := k.waitServe(); err != nil {
		t.Errorf("ServeFile = %v, want nil", err)
	}
	select {
	case <-k.closed:
	case <-time.After(waitLong):
		t.Error("channel not closed at shutdown")
	}
	if n := dev.file(0).releases.Load(); n != 1 {
		t.Errorf("Release count %d after shutdown, want 1", n)
	}
}

func TestKernelDisconnect(t *testing.T) {
	k := startKernel(t, Config{}, &testDevice{})
	k.open(0)
	k.f.Close()
	if err := k.waitServe(); !errors.Is(err, ErrDisconnected) {
		t.Errorf("ServeFile = %v, want ErrDisconnected", err)
	}
}

func TestNodePermissions(t *testing.T) {
	dir := t.TempDir()
	node := filepath.Join(dir, "mydev")
	if err := os.WriteFile(node, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	k := startKernel(t, Config{DevName: "mydev", DevDir: dir, Mode: 0o664, UID: -1, GID: -1}, &testDevice{})
	if got := k.srv.DevPath(); got != node {
		t.Errorf("DevPath = %q, want %q", got, node)
	}
	st, err := os.Stat(node)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o664 {
		t.Errorf("node mode %v after Ready, want 0664", st.Mode().Perm())
	}
}

func TestNodeNeverAppears(t *testing.T) {
	k := startKernel(t, Config{DevName: "absent", Mode: 0o660, NodeTimeout: 50 * time.Millisecond}, &testDevice{})
	// Ready was closed even though the node never appeared; serving goes on.
	fh := k.open(0)
	if status, body := k.call(opRead, readInBody(fh, 10, 0)); status != 0 || string(body) != "hello" {
		t.Errorf("read after node timeout: %d %q", status, body)
	}
}

// TestInitReplyUndeliverable: if the channel dies before the INIT reply is
// accepted, ServeFile reports ErrInitRejected.
func TestInitReplyUndeliverable(t *testing.T) {
	k := startKernelNoInit(t, Config{}, &testDevice{})
	// Stop accepting messages first, so the reply write fails (EPIPE).
	rc, err := k.f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { err = unix.Shutdown(int(fd), unix.SHUT_RD) }); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	in := cuseInitIn{Major: 7, Minor: 40, Flags: fuse.CUSE_UNRESTRICTED_IOCTL}
	k.send(opCuseInit, encode(nil, &in))
	if err := k.waitServe(); !errors.Is(err, ErrInitRejected) {
		t.Errorf("ServeFile = %v, want ErrInitRejected", err)
	}
}

// TestRequestUniqueZero: a request with unique 0 cannot be answered (the
// reply would be a notification), so it is dropped and serving goes on.
func TestRequestUniqueZero(t *testing.T) {
	k := startKernel(t, Config{}, &testDevice{})
	k.sendAs(0, 9999)
	fh := k.open(0)
	if status, _ := k.call(opRelease, releaseInBody(fh)); status != 0 {
		t.Errorf("RELEASE after a dropped request: %d", status)
	}
	select {
	case msg := <-k.notifies:
		t.Errorf("server answered unique 0: %v", msg)
	default:
	}
}

// TestPollWakeDuringPoll: a wake that happens while Poll runs, before the
// POLL reply, still reaches the kernel (no lost wake-up).
func TestPollWakeDuringPoll(t *testing.T) {
	dev := &testDevice{wakeNow: true}
	k := startKernel(t, Config{}, dev)
	fh := k.open(0)
	if status, _ := k.call(opPoll, pollInBody(fh, 9, fuse.FUSE_POLL_SCHEDULE_NOTIFY, 1)); status != 0 {
		t.Fatalf("POLL status %d", status)
	}
	select {
	case msg := <-k.notifies:
		if w, _ := decode[notifyPollWakeup](msg[outHeaderSize:]); w.Kh != 9 {
			t.Errorf("notification for kh %d, want 9", w.Kh)
		}
	case <-time.After(waitLong):
		t.Fatal("wake during Poll was lost")
	}
}

// TestShutdownStuckDevice: a device call that ignores cancellation delays
// shutdown only by ShutdownTimeout.
func TestShutdownStuckDevice(t *testing.T) {
	started := make(chan struct{}, 1)
	unblock := make(chan struct{})
	defer close(unblock)
	dev := &testDevice{read: func(context.Context, *testFile, []byte, bool) (int, syscall.Errno) {
		started <- struct{}{}
		<-unblock
		return 0, 0
	}}
	k := startKernel(t, Config{ShutdownTimeout: 20 * time.Millisecond}, dev)
	fh := k.open(0)
	k.send(opRead, readInBody(fh, 10, 0))
	<-started
	k.cancel()
	if err := k.waitServe(); err != nil {
		t.Errorf("ServeFile = %v, want nil", err)
	}
}

func (d *testDevice) openCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.files)
}
