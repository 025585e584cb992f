package cuse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Sentinel errors returned (wrapped) by Serve and ServeFile, for callers that
// branch on the kind of failure.
var (
	// ErrNoCuse means /dev/cuse could not be opened because the CUSE driver
	// is not available (module not loaded, node missing).
	ErrNoCuse = errors.New("CUSE driver not available")
	// ErrPermission means /dev/cuse exists but may not be opened (not root).
	ErrPermission = errors.New("no permission to open the CUSE channel")
	// ErrInitRejected means the kernel refused the CUSE_INIT reply, most
	// often because another CUSE device already has the same name or the
	// requested device number is in use.
	ErrInitRejected = errors.New("kernel rejected CUSE_INIT")
	// ErrProtocol means the peer on the channel broke the CUSE protocol
	// during initialisation (wrong first message, unsupported version).
	ErrProtocol = errors.New("CUSE protocol error")
	// ErrDisconnected means the kernel ended the connection while serving
	// (sysfs abort, channel released) without the server being asked to
	// stop.
	ErrDisconnected = errors.New("CUSE connection ended by the kernel")
	// ErrConfig means the Config is unusable.
	ErrConfig = errors.New("invalid cuse config")
)

// Defaults for zero Config fields.
const (
	// DefaultMaxIO is the default (and largest useful) MaxRead/MaxWrite: the
	// kernel splits reads and writes at 32 pages anyway.
	DefaultMaxIO = 128 << 10
	// DefaultNodeTimeout bounds the wait for /dev/DevName after init.
	DefaultNodeTimeout = 5 * time.Second
	// DefaultShutdownTimeout bounds the wait for running requests at
	// shutdown before the channel is closed under them.
	DefaultShutdownTimeout = 5 * time.Second
)

// Config describes the device a Server creates and how it behaves.
type Config struct {
	// DevName is the device name: the node appears as /dev/DevName and
	// /sys/class/cuse/DevName. Required; no '/', whitespace or NUL.
	DevName string
	// DevMajor and DevMinor request a fixed device number; DevMajor 0 asks
	// the kernel for a dynamic major (base minor DevMinor).
	DevMajor, DevMinor uint32
	// MaxRead and MaxWrite are the largest READ/WRITE chunk the kernel sends
	// (0 = DefaultMaxIO; clamped to [4096, DefaultMaxIO]).
	MaxRead, MaxWrite uint32
	// Mode, if non-zero, is applied to the node with chmod after init
	// (devtmpfs creates it 0600).
	Mode os.FileMode
	// UID and GID, if positive, are applied to the node with chown after
	// init. −1 (or 0, which is devtmpfs's default owner root) leaves them.
	UID, GID int
	// DevDir is where the node appears ("" = "/dev").
	DevDir string
	// CusePath is the CUSE channel Serve opens ("" = "/dev/cuse").
	CusePath string
	// NodeTimeout bounds the wait for the node before chmod/chown
	// (0 = DefaultNodeTimeout).
	NodeTimeout time.Duration
	// ShutdownTimeout bounds how long shutdown waits for running device
	// calls (0 = DefaultShutdownTimeout).
	ShutdownTimeout time.Duration
	// InlineIoctl promises that the device's File.Ioctl never blocks, so
	// the server calls it on its reader goroutine instead of starting a
	// goroutine per request. That saves a goroutine hand-off, which costs
	// hundreds of microseconds when the reader thread sits in read(2) on a
	// single busy or virtualised CPU, on every step of every ioctl. POLL
	// is always answered inline (File.Poll must not block).
	InlineIoctl bool
	// Logger receives protocol warnings and per-request debug lines
	// (nil = slog.Default()).
	Logger *slog.Logger
}

// Server serves one CUSE device: it answers the kernel's requests on the
// CUSE channel by calling a Device and its Files. Create it with New, run it
// with Serve or ServeFile (once).
type Server struct {
	cfg      Config
	dev      Device
	log      *slog.Logger
	ready    chan struct{}
	bufSize  int
	maxRead  uint32
	maxWrite uint32

	ch    *os.File
	rconn atomic.Pointer[chanConn] // ch's RawConn (rawio.go)
	c     counters

	mu       sync.Mutex
	files    map[uint64]*openFile // fh → open file
	nextFh   uint64
	reqs     map[uint64]*request  // unique → outstanding request
	early    map[uint64]time.Time // interrupts whose request is not known yet
	handlers sync.WaitGroup       // Add only from the reader goroutine
	baseCtx  context.Context

	// resumed is set when serving a channel another process initialised
	// (ServeResumed): unknown file handles are then adopted.
	resumed bool // guarded by mu
	// sweep is set on a server resumed after a crash until the first
	// ordinary request arrives, which triggers sweepOrphans. Only the
	// reader goroutine uses it.
	sweep bool
	// pause is the hand-over in progress (Pause), nil while serving.
	pmu   sync.Mutex
	pause *pauseState
	// carried are the blocked READs a Pause took back unanswered, as the
	// kernel sent them, for the next server (Carried) or, after Continue,
	// this one; guarded by mu.
	carried [][]byte

	// ops counts requests by opcode (stats.go).
	ops opCounters

	// wslot and mslot cache one channel writer and one reply buffer, taken
	// by whoever writes a reply (the reader, nearly always) before the
	// pools: a reply then touches no pool.
	wslot atomic.Pointer[chanWriter]
	mslot atomic.Pointer[[]byte]

	// inlineIn is the IoctlIn of the ioctls answered on the reader
	// (Config.InlineIoctl), reused with its reply storage; reader only.
	inlineIn IoctlIn
}

// openFile is one entry of the file-handle table.
type openFile struct {
	fh       uint64
	file     File
	flags    uint32 // open(2) flags from OPEN
	kh       uint64 // the kernel's poll handle from the last POLL (0: none seen); guarded by Server.mu
	released bool   // guarded by Server.mu; set when removed from the table
	armed    bool   // a POLL asked for a notification not sent yet; guarded by Server.mu
	wake     func() // calls fireWake for this file; made by the first POLL that asks, guarded by Server.mu
}

// request is one outstanding kernel request, kept so INTERRUPT can cancel it.
type request struct {
	unique uint64
	op     uint32
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// New returns a Server for dev configured by cfg. It does not touch the
// system; Serve or ServeFile starts it.
func New(cfg Config, dev Device) *Server {
	s := &Server{
		cfg:   cfg,
		dev:   dev,
		log:   cfg.Logger,
		ready: make(chan struct{}),
		files: make(map[uint64]*openFile),
		reqs:  make(map[uint64]*request),
		early: make(map[uint64]time.Time),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("dev", cfg.DevName)
	if s.cfg.DevDir == "" {
		s.cfg.DevDir = "/dev"
	}
	if s.cfg.CusePath == "" {
		s.cfg.CusePath = "/dev/cuse"
	}
	if s.cfg.NodeTimeout <= 0 {
		s.cfg.NodeTimeout = DefaultNodeTimeout
	}
	if s.cfg.ShutdownTimeout <= 0 {
		s.cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	s.maxRead = clampIO(cfg.MaxRead)
	s.maxWrite = clampIO(cfg.MaxWrite)
	// The read buffer must hold the largest request: a WRITE of maxWrite or
	// an IOCTL round of 128 KiB, and never less than FUSE_MIN_READ_BUFFER.
	// A smaller buffer makes the kernel fail big requests with EIO silently.
	s.bufSize = max(minReadBuffer,
		inHeaderSize+writeInSize+int(s.maxWrite),
		inHeaderSize+ioctlInSize+ioctlMaxData) + 4096
	return s
}

func clampIO(v uint32) uint32 {
	if v == 0 {
		return DefaultMaxIO
	}
	return min(max(v, 4096), DefaultMaxIO)
}

// Ready is closed once the kernel has accepted CUSE_INIT and the node's mode
// and owner have been applied (or the bounded wait for the node gave up), so
// the device is usable. It is never closed if Serve fails before that.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// DevPath is the path of the device node the server creates.
func (s *Server) DevPath() string { return filepath.Join(s.cfg.DevDir, s.cfg.DevName) }

func (s *Server) validate() error {
	name := s.cfg.DevName
	if name == "" {
		return fmt.Errorf("%w: DevName is empty", ErrConfig)
	}
	if strings.ContainsAny(name, "/\x00= \t\n\r\v\f") {
		return fmt.Errorf("%w: DevName %q contains '/', '=', NUL or whitespace", ErrConfig, name)
	}
	if len("DEVNAME=")+len(name)+1 > fuse.CUSE_INIT_INFO_MAX {
		return fmt.Errorf("%w: DevName is %d bytes, too long for the CUSE info block", ErrConfig, len(name))
	}
	if s.dev == nil {
		return fmt.Errorf("%w: nil Device", ErrConfig)
	}
	return nil
}

// Serve opens the CUSE channel (Config.CusePath, /dev/cuse by default) and
// serves the device until ctx is cancelled (then it returns nil after
// answering or cancelling pending requests, releasing every open file and
// closing the channel, which removes the node) or the connection fails.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.validate(); err != nil {
		return err
	}
	f, err := os.OpenFile(s.cfg.CusePath, os.O_RDWR, 0)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.ENODEV):
			return fmt.Errorf("cuse: %w: %w (load the cuse module (modprobe cuse))", ErrNoCuse, err)
		case errors.Is(err, fs.ErrPermission):
			return fmt.Errorf("cuse: %w: %w (run as root)", ErrPermission, err)
		}
		return fmt.Errorf("cuse: open channel: %w", err)
	}
	return s.ServeFile(ctx, f)
}

// ServeFile serves the device on an already-open CUSE channel f (one message
// per read and per write, as /dev/cuse or a SOCK_SEQPACKET socket); f should
// be pollable (os.OpenFile of a char device, or a non-blocking descriptor
// given to os.NewFile) so cancellation can wake the reader. It takes
// ownership of f and closes it. Call Serve or ServeFile once per Server. It returns nil when ctx is cancelled, and an
// error wrapping ErrProtocol, ErrInitRejected or ErrDisconnected otherwise.
func (s *Server) ServeFile(ctx context.Context, f *os.File) error {
	return s.serve(ctx, f, nil)
}

// serve runs the server on f: after CUSE_INIT when r is nil, else on a
// channel another process initialised, with r's files.
func (s *Server) serve(ctx context.Context, f *os.File, r *Resume) error {
	if err := s.validate(); err != nil {
		f.Close()
		return err
	}
	s.pmu.Lock()
	s.ch = f
	s.pmu.Unlock()
	baseCtx, cancelAll := context.WithCancel(ctx)
	defer cancelAll()
	s.baseCtx = baseCtx

	// Cancelling ctx stops the reader: a read deadline wakes a reader parked
	// in the netpoller; for a descriptor outside the netpoller, closing it is
	// the only way (pending requests then get ECONNABORTED from the kernel).
	stopReader := context.AfterFunc(ctx, func() {
		if err := f.SetReadDeadline(time.Now()); err != nil {
			f.Close()
		}
	})
	defer stopReader()

	buf := make([]byte, s.bufSize)
	var err error
	if r == nil {
		err = s.init(buf)
	} else {
		s.restore(r)
		s.runCarried(r.Requests)
	}
	if err == nil {
		go s.prepareNode(baseCtx)
		err = s.serveLoop(ctx, buf)
	}
	if errors.Is(err, errHandedOver) {
		// Another process serves the channel now: the files are its, so
		// nothing is released, and closing our descriptor leaves the
		// connection (and the device) to the other one.
		f.Close()
		return nil
	}

	// Shutdown: cancel every running request, give the device a bounded
	// time to return so each gets its reply, then close the channel (which
	// aborts anything left) and release the files the kernel will now never
	// send RELEASE for.
	cancelAll()
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.Warn("cuse: device calls still running at shutdown; closing the channel under them",
			"timeout", s.cfg.ShutdownTimeout)
	}
	f.Close()
	s.releaseAll()
	if ctx.Err() != nil && (err == nil || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, os.ErrClosed)) {
		return nil
	}
	return err
}

// init reads and answers CUSE_INIT, which the kernel queues first.
func (s *Server) init(buf []byte) error {
	var msg []byte
	for {
		n, err := s.ch.Read(buf)
		s.c.reads.Add(1)
		if err != nil {
			if retryableRead(err) {
				continue
			}
			if errors.Is(err, syscall.ENODEV) || errors.Is(err, io.EOF) {
				return fmt.Errorf("cuse: waiting for CUSE_INIT: %w: %w", ErrDisconnected, err)
			}
			return fmt.Errorf("cuse: waiting for CUSE_INIT: %w", err)
		}
		msg = buf[:n]
		break
	}
	hdr, ok := decode[fuse.InHeader](msg)
	if !ok || hdr.Opcode != opCuseInit || int(hdr.Length) != len(msg) {
		return fmt.Errorf("cuse: %w: first message is not CUSE_INIT (%d bytes, opcode %d)", ErrProtocol, len(msg), hdr.Opcode)
	}
	in, ok := decode[cuseInitIn](msg[inHeaderSize:])
	if !ok {
		s.sendErr(hdr.Unique, syscall.EPROTO)
		return fmt.Errorf("cuse: %w: CUSE_INIT is %d bytes", ErrProtocol, len(msg))
	}
	if in.Major != fuseKernelVersion {
		s.sendErr(hdr.Unique, syscall.EPROTO)
		return fmt.Errorf("cuse: %w: kernel speaks FUSE %d.%d, need major %d", ErrProtocol, in.Major, in.Minor, fuseKernelVersion)
	}
	if in.Flags&fuse.CUSE_UNRESTRICTED_IOCTL == 0 {
		s.sendErr(hdr.Unique, syscall.EPROTO)
		return fmt.Errorf("cuse: %w: kernel does not offer CUSE_UNRESTRICTED_IOCTL (flags %#x)", ErrProtocol, in.Flags)
	}
	out := cuseInitOut{
		Major:    fuseKernelVersion,
		Minor:    min(in.Minor, ourMinorVersion),
		Flags:    fuse.CUSE_UNRESTRICTED_IOCTL,
		MaxRead:  s.maxRead,
		MaxWrite: s.maxWrite,
		DevMajor: s.cfg.DevMajor,
		DevMinor: s.cfg.DevMinor,
	}
	info := []byte("DEVNAME=" + s.cfg.DevName + "\x00")
	if err := s.send(hdr.Unique, encode(nil, &out), info); err != nil {
		return fmt.Errorf("cuse: %w: writing CUSE_INIT reply: %w", ErrInitRejected, err)
	}
	// The kernel validates the reply and registers the device inside our
	// write; when it refuses (name taken, device number busy) it aborts the
	// connection but the write still succeeds. An aborted channel polls as
	// POLLERR.
	if pollErr(s.ch) {
		return fmt.Errorf("cuse: %w: DEVNAME=%s (another CUSE device may have that name, or device %d:%d is in use; see dmesg)",
			ErrInitRejected, s.cfg.DevName, s.cfg.DevMajor, s.cfg.DevMinor)
	}
	s.log.Debug("cuse: CUSE_INIT accepted", "kernel_minor", in.Minor, "minor", out.Minor)
	return nil
}

// pollErr reports whether the channel polls as errored or hung up, without
// blocking.
func pollErr(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	bad := false
	_ = rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, 0); err == nil && n > 0 {
			bad = pfd[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0
		}
	})
	return bad
}

// prepareNode waits (bounded) for the device node and applies Mode, UID and
// GID, then closes Ready.
func (s *Server) prepareNode(ctx context.Context) {
	defer close(s.ready)
	if s.cfg.Mode == 0 && s.cfg.UID <= 0 && s.cfg.GID <= 0 {
		return
	}
	path := s.DevPath()
	deadline := time.Now().Add(s.cfg.NodeTimeout)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			s.log.Warn("cuse: device node did not appear; not applying mode/owner",
				"path", path, "timeout", s.cfg.NodeTimeout)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	if s.cfg.Mode != 0 {
		if err := os.Chmod(path, s.cfg.Mode.Perm()); err != nil {
			s.log.Warn("cuse: chmod device node", "path", path, "mode", s.cfg.Mode, "err", err)
		}
	}
	if s.cfg.UID > 0 || s.cfg.GID > 0 {
		uid, gid := -1, -1
		if s.cfg.UID > 0 {
			uid = s.cfg.UID
		}
		if s.cfg.GID > 0 {
			gid = s.cfg.GID
		}
		if err := os.Chown(path, uid, gid); err != nil {
			s.log.Warn("cuse: chown device node", "path", path, "uid", uid, "gid", gid, "err", err)
		}
	}
}

// retryableRead reports whether a read error means "read again": EINTR
// (signals, Go's preemption), EAGAIN, and the historic ENOENT after an
// interrupted request.
func retryableRead(err error) bool {
	return errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOENT)
}

// readLoop reads one request per read() and dispatches it, until the reader
// is stopped (deadline or close: returns that error) or the kernel ends the
// connection (ErrDisconnected).
func (s *Server) readLoop(buf []byte) error {
	rd, err := newChanReader(s.ch, buf)
	if err != nil {
		return fmt.Errorf("cuse: reading the channel: %w", err)
	}
	failures, served := 0, 0
	for {
		n, err := rd.next()
		s.c.reads.Add(1)
		if err != nil {
			switch {
			case retryableRead(err):
				continue
			case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, os.ErrClosed):
				return err
			case errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ECONNABORTED), errors.Is(err, io.EOF):
				s.log.Info("cuse: connection ended by the kernel", "err", err)
				return fmt.Errorf("cuse: %w: %w", ErrDisconnected, err)
			case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.EPERM):
				// Buffer too small or fd not attached: retrying cannot help.
				return fmt.Errorf("cuse: reading the channel (buffer %d bytes): %w", len(buf), err)
			}
			failures++
			s.log.Error("cuse: reading the channel", "err", err, "consecutive", failures)
			if failures >= 10 {
				return fmt.Errorf("cuse: reading the channel: %w", err)
			}
			continue
		}
		failures = 0
		s.dispatch(buf[:n])
		// Under a steady stream of requests the reader never parks (each
		// read finds the next request), so the runtime's sysmon would
		// preempt it with a signal every 10 ms; a yield at this safe point
		// every few requests costs less than the signal and its handler.
		if served++; served%yieldEvery == 0 {
			runtime.Gosched()
		}
	}
}

// yieldEvery is how many requests the reader dispatches between two
// runtime.Gosched calls: a few microseconds of work on real hardware, a
// few milliseconds under CPU emulation, well within sysmon's 10 ms.
const yieldEvery = 16

// releaseAll releases every file still open: at shutdown the kernel sends no
// RELEASE for them.
func (s *Server) releaseAll() {
	s.mu.Lock()
	files := make([]*openFile, 0, len(s.files))
	for fh, of := range s.files {
		of.released = true
		files = append(files, of)
		delete(s.files, fh)
	}
	s.mu.Unlock()
	for _, of := range files {
		of.file.Release()
	}
}
