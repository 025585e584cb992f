package cuse

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// This file is the test double for the kernel: it plays /dev/cuse over a
// message-preserving SOCK_SEQPACKET socket pair (one message per read and
// write, like the real channel), including the unrestricted ioctl retry loop
// over a fake user address space.

// waitLong bounds every wait in these tests; it only fires on a real hang.
const waitLong = 10 * time.Second

// socketPair returns the two ends of a SOCK_SEQPACKET pair as pollable files.
func socketPair(t testing.TB) (server, kernel *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), "cuse-server"), os.NewFile(uintptr(fds[1]), "cuse-kernel")
}

// fakeKernel drives a Server from the kernel's side of the channel.
type fakeKernel struct {
	t        testing.TB
	f        *os.File
	srv      *Server
	cancel   context.CancelFunc
	serveErr chan error
	initOut  []byte // the CUSE_INIT reply

	mu       sync.Mutex
	unique   uint64
	waiters  map[uint64]chan []byte
	notifies chan []byte
	closed   chan struct{} // closed when the server side hung up
}

// kernelOpts tunes startKernel.
type kernelOpts struct {
	major, minor uint32 // CUSE_INIT version offered (default 7.40)
	flags        uint32 // CUSE_INIT flags offered (default UNRESTRICTED)
	noFlags      bool   // offer flags = 0
}

// startKernel starts srv on a socket pair and completes CUSE_INIT.
func startKernel(t testing.TB, cfg Config, dev Device) *fakeKernel {
	t.Helper()
	k := startKernelNoInit(t, cfg, dev)
	out := k.initHandshake(kernelOpts{})
	if h, _ := decode[fuse.OutHeader](out); h.Status != 0 {
		t.Fatalf("CUSE_INIT reply error %d", h.Status)
	}
	select {
	case <-k.srv.Ready():
	case <-time.After(waitLong):
		t.Fatal("server never became ready")
	}
	return k
}

// startKernelNoInit starts srv on a socket pair without sending anything.
func startKernelNoInit(t testing.TB, cfg Config, dev Device) *fakeKernel {
	t.Helper()
	return startKernelServe(t, cfg, dev, nil)
}

// startKernelServe starts srv on a socket pair: with ServeFile if r is nil,
// else with ServeResumed(r).
func startKernelServe(t testing.TB, cfg Config, dev Device, r *Resume) *fakeKernel {
	t.Helper()
	if cfg.DevName == "" {
		cfg.DevName = "testdev"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.DevDir == "" {
		cfg.DevDir = t.TempDir()
	}
	srvEnd, kEnd := socketPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	k := &fakeKernel{
		t:        t,
		f:        kEnd,
		srv:      New(cfg, dev),
		cancel:   cancel,
		serveErr: make(chan error, 1),
		unique:   0,
		waiters:  make(map[uint64]chan []byte),
		notifies: make(chan []byte, 16),
		closed:   make(chan struct{}),
	}
	go func() {
		if r != nil {
			k.serveErr <- k.srv.ServeResumed(ctx, srvEnd, *r)
			return
		}
		k.serveErr <- k.srv.ServeFile(ctx, srvEnd)
	}()
	go k.readReplies()
	t.Cleanup(func() {
		cancel()
		select {
		case <-k.serveErr:
		case <-time.After(waitLong):
			t.Error("ServeFile did not return after cancel")
		}
		kEnd.Close()
	})
	return k
}

// testWriter sends log lines to t.Log, so they show only for failures.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// readReplies routes every message from the server by unique; unique 0
// (notifications) goes to k.notifies.
func (k *fakeKernel) readReplies() {
	defer close(k.closed)
	buf := make([]byte, 1<<18)
	for {
		n, err := k.f.Read(buf)
		if err != nil {
			return
		}
		msg := bytes.Clone(buf[:n])
		h, ok := decode[fuse.OutHeader](msg)
		if !ok || int(h.Length) != n {
			k.t.Errorf("malformed message from server: %d bytes, header %+v", n, h)
			continue
		}
		if h.Status < 0 && n != outHeaderSize {
			k.t.Errorf("error reply %d carries %d payload bytes", h.Status, n-outHeaderSize)
		}
		if h.Status < -maxErrno || (h.Unique != 0 && h.Status > 0) {
			k.t.Errorf("reply status %d out of range", h.Status)
		}
		if h.Unique == 0 {
			k.notifies <- msg
			continue
		}
		k.waiter(h.Unique) <- msg
	}
}

func (k *fakeKernel) waiter(unique uint64) chan []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	ch, ok := k.waiters[unique]
	if !ok {
		ch = make(chan []byte, 2)
		k.waiters[unique] = ch
	}
	return ch
}

// nextUnique returns a fresh even unique, as current kernels allocate.
func (k *fakeKernel) nextUnique() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.unique += 2
	return k.unique
}

// sendAs writes one request with the given unique.
func (k *fakeKernel) sendAs(unique uint64, op uint32, body ...[]byte) {
	k.t.Helper()
	total := inHeaderSize
	for _, b := range body {
		total += len(b)
	}
	h := fuse.InHeader{Length: uint32(total), Opcode: op, Unique: unique}
	h.Pid = 4242
	msg := encode(nil, &h)
	for _, b := range body {
		msg = append(msg, b...)
	}
	if _, err := k.f.Write(msg); err != nil {
		k.t.Fatalf("kernel write: %v", err)
	}
}

// send writes one request with a fresh unique and returns the unique.
func (k *fakeKernel) send(op uint32, body ...[]byte) uint64 {
	k.t.Helper()
	u := k.nextUnique()
	k.sendAs(u, op, body...)
	return u
}

// reply waits for the reply to unique and returns its status and payload.
func (k *fakeKernel) reply(unique uint64) (status int32, payload []byte) {
	k.t.Helper()
	select {
	case msg := <-k.waiter(unique):
		h, _ := decode[fuse.OutHeader](msg)
		return h.Status, msg[outHeaderSize:]
	case <-time.After(waitLong):
		k.t.Fatalf("no reply for unique %d", unique)
	}
	return 0, nil
}

// noReply asserts that unique has not been answered yet.
func (k *fakeKernel) noReply(unique uint64) {
	k.t.Helper()
	select {
	case msg := <-k.waiter(unique):
		k.t.Fatalf("unexpected reply for unique %d: %v", unique, msg)
	default:
	}
}

// call sends a request and waits for its reply.
func (k *fakeKernel) call(op uint32, body ...[]byte) (int32, []byte) {
	k.t.Helper()
	return k.reply(k.send(op, body...))
}

// initHandshake sends CUSE_INIT and returns the whole reply message.
func (k *fakeKernel) initHandshake(o kernelOpts) []byte {
	k.t.Helper()
	in := cuseInitIn{Major: 7, Minor: 40, Flags: fuse.CUSE_UNRESTRICTED_IOCTL}
	if o.major != 0 {
		in.Major = o.major
	}
	if o.minor != 0 {
		in.Minor = o.minor
	}
	if o.flags != 0 {
		in.Flags = o.flags
	}
	if o.noFlags {
		in.Flags = 0
	}
	u := k.send(opCuseInit, encode(nil, &in))
	select {
	case msg := <-k.waiter(u):
		k.initOut = msg
		return msg
	case <-time.After(waitLong):
		k.t.Fatal("no CUSE_INIT reply")
	}
	return nil
}

// open opens a file and returns its fh.
func (k *fakeKernel) open(flags uint32) uint64 {
	k.t.Helper()
	status, p := k.call(opOpen, openInBody(flags))
	if status != 0 {
		k.t.Fatalf("OPEN failed: %d", status)
	}
	out, ok := decode[fuse.OpenOut](p)
	if !ok || len(p) != openOutSize {
		k.t.Fatalf("OPEN reply payload %d bytes", len(p))
	}
	return out.Fh
}

func openInBody(flags uint32) []byte {
	in := fuse.OpenIn{Flags: flags}
	return encode(nil, &in)[inHeaderSize:]
}

func readInBody(fh uint64, size, flags uint32) []byte {
	in := fuse.ReadIn{Fh: fh, Size: size, Flags: flags}
	return encode(nil, &in)[inHeaderSize:]
}

func writeInBody(fh uint64, data []byte) []byte {
	in := fuse.WriteIn{Fh: fh, Size: uint32(len(data))}
	return append(encode(nil, &in)[inHeaderSize:], data...)
}

func releaseInBody(fh uint64) []byte {
	in := fuse.ReleaseIn{Fh: fh}
	return encode(nil, &in)[inHeaderSize:]
}

func pollInBody(fh, kh uint64, flags, events uint32) []byte {
	in := pollIn{Fh: fh, Kh: kh, Flags: flags, Events: events}
	return encode(nil, &in)[inHeaderSize:]
}

func interruptInBody(unique uint64) []byte {
	in := fuse.InterruptIn{Unique: unique}
	return encode(nil, &in)[inHeaderSize:]
}

func ioctlInBody(fh uint64, flags, cmd uint32, arg uint64, in []byte, outSize uint32) []byte {
	s := fuse.IoctlIn{Fh: fh, Flags: flags, Cmd: cmd, Arg: arg, InSize: uint32(len(in)), OutSize: outSize}
	return append(encode(nil, &s)[inHeaderSize:], in...)
}

// fakeMem is a caller's address space: disjoint regions at fixed bases.
type fakeMem struct {
	regions map[uint64][]byte
}

var errFault = errors.New("fault")

// region returns the slice backing [base, base+n), or errFault.
func (m *fakeMem) region(base, n uint64) ([]byte, error) {
	for b, r := range m.regions {
		if base >= b && base-b <= uint64(len(r)) && n <= uint64(len(r))-(base-b) {
			return r[base-b : base-b+n], nil
		}
	}
	return nil, errFault
}

// ioctlResult is what the fake kernel's ioctl loop observed.
type ioctlResult struct {
	result int32         // return value of ioctl(2) when errno is 0 or result < 0
	errno  syscall.Errno // header error, or the kernel's own error
	rounds int
}

// ioctl runs one unrestricted ioctl the way fuse_do_ioctl does: first round
// without data, then one round per RETRY reply with the requested memory
// copied in, then the output scattered over the last out iovecs.
func (k *fakeKernel) ioctl(fh uint64, flags, cmd uint32, arg uint64, mem *fakeMem) ioctlResult {
	k.t.Helper()
	var inIovs, outIovs []ioctlIovec
	var res ioctlResult
	for {
		res.rounds++
		if res.rounds > 16 {
			k.t.Fatal("ioctl did not converge in 16 rounds")
		}
		var in []byte
		var outSize uint64
		for _, v := range inIovs {
			r, err := mem.region(v.Base, v.Len)
			if err != nil {
				res.errno = syscall.EFAULT // the server never sees this round
				return res
			}
			in = append(in, r...)
		}
		for _, v := range outIovs {
			outSize += v.Len
		}
		status, p := k.call(opIoctl, ioctlInBody(fh, flags, cmd, arg, in, uint32(outSize)))
		if status != 0 {
			res.errno = syscall.Errno(-status)
			return res
		}
		out, ok := decode[fuse.IoctlOut](p)
		if !ok {
			k.t.Fatalf("IOCTL reply payload %d bytes", len(p))
		}
		p = p[ioctlOutSize:]
		if out.Flags&fuse.IOCTL_RETRY != 0 {
			n, m := int(out.InIovs), int(out.OutIovs)
			if n+m > fuse.FUSE_IOCTL_MAX_IOV {
				k.t.Fatalf("server sent %d iovecs, kernel would fail with ENOMEM", n+m)
			}
			if len(p) != ioctlIovecSize*(n+m) {
				k.t.Fatalf("retry payload %d bytes for %d iovecs (kernel: EIO)", len(p), n+m)
			}
			inIovs, outIovs = nil, nil
			for i := 0; i < n+m; i++ {
				v, _ := decode[ioctlIovec](p[i*ioctlIovecSize:])
				if i < n {
					inIovs = append(inIovs, v)
				} else {
					outIovs = append(outIovs, v)
				}
			}
			continue
		}
		if uint64(len(p)) > outSize {
			k.t.Fatalf("final reply carries %d bytes for out_size %d (kernel: EIO)", len(p), outSize)
		}
		for _, v := range outIovs {
			if len(p) == 0 {
				break
			}
			c := min(uint64(len(p)), v.Len)
			r, err := mem.region(v.Base, c)
			if err != nil {
				res.errno = syscall.EFAULT
				return res
			}
			copy(r, p[:c])
			p = p[c:]
		}
		res.result = out.Result
		return res
	}
}

// waitServe cancels the server and returns what ServeFile returned.
func (k *fakeKernel) waitServe() error {
	k.t.Helper()
	select {
	case err := <-k.serveErr:
		k.serveErr <- err // for Cleanup
		return err
	case <-time.After(waitLong):
		k.t.Fatal("ServeFile did not return")
	}
	return nil
}

// le64 is a helper to build little-endian structs in fake memory.
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
