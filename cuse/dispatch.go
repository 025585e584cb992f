package cuse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// minInSize returns the size of a handled opcode's fixed request struct
// after the header (requests shorter than that are malformed), and false
// for other opcodes. A switch, not a map: it runs for every request.
func minInSize(op uint32) (int, bool) {
	switch op {
	case opOpen:
		return openInSize, true
	case opRead:
		return readInSize, true
	case opWrite:
		return writeInSize, true
	case opRelease:
		return releaseInSize, true
	case opFlush:
		return 24, true // struct fuse_flush_in
	case opInterrupt:
		return interruptInSize, true
	case opIoctl:
		return ioctlInSize, true
	case opPoll:
		return pollInSize, true
	}
	return 0, false
}

// opName names opcodes in logs.
func opName(op uint32) string {
	switch op {
	case opOpen:
		return "OPEN"
	case opRead:
		return "READ"
	case opWrite:
		return "WRITE"
	case opRelease:
		return "RELEASE"
	case opFsync:
		return "FSYNC"
	case opFlush:
		return "FLUSH"
	case opInterrupt:
		return "INTERRUPT"
	case opIoctl:
		return "IOCTL"
	case opPoll:
		return "POLL"
	case opCuseInit:
		return "CUSE_INIT"
	}
	return fmt.Sprintf("op%d", op)
}

// earlyInterruptMax bounds the table of interrupts that arrived before their
// request; earlyInterruptAge is how long such an entry is kept.
const (
	earlyInterruptMax = 256
	earlyInterruptAge = 10 * time.Second
)

// dispatch handles one request message, valid only during the call (it is
// the reader's buffer). INTERRUPT, trivial replies, POLL and (with
// Config.InlineIoctl) IOCTL are answered inline, since they never block,
// and keep nothing of msg; everything else that calls the device runs in
// its own goroutine, on a copy, so a blocked call never holds up other
// requests.
func (s *Server) dispatch(msg []byte) {
	if len(msg) < inHeaderSize {
		s.log.Warn("cuse: dropping request shorter than fuse_in_header", "len", len(msg))
		return
	}
	hdr, _ := decode[fuse.InHeader](msg)
	s.ops.count(hdr.Opcode)
	if hdr.Unique == 0 {
		// A reply with unique 0 would be read as a notification.
		s.log.Warn("cuse: dropping request with unique 0", "op", opName(hdr.Opcode), "len", len(msg))
		return
	}
	if s.sweep && hdr.Unique&(uniqueInterrupt|uniqueResend) == 0 {
		s.sweep = false
		s.sweepOrphans(hdr.Unique)
	}
	if int(hdr.Length) != len(msg) {
		s.log.Warn("cuse: request length does not match header", "op", opName(hdr.Opcode),
			"unique", hdr.Unique, "header_len", hdr.Length, "read", len(msg))
		s.sendErr(hdr.Unique, syscall.EIO)
		return
	}
	if want, ok := minInSize(hdr.Opcode); ok && len(msg) < inHeaderSize+want {
		s.log.Warn("cuse: request too short for its opcode", "op", opName(hdr.Opcode),
			"unique", hdr.Unique, "len", len(msg), "want", inHeaderSize+want)
		if hdr.Opcode != opInterrupt {
			s.sendErr(hdr.Unique, syscall.EINVAL)
		}
		return
	}
	if s.log.Enabled(s.baseCtx, slog.LevelDebug) { // the arguments would allocate at any level
		s.log.Debug("cuse: request", "op", opName(hdr.Opcode), "unique", hdr.Unique, "pid", hdr.Pid, "len", len(msg))
	}

	var handle func(ctx context.Context, hdr *fuse.InHeader, msg []byte)
	switch hdr.Opcode {
	case opInterrupt:
		in, _ := decode[fuse.InterruptIn](msg)
		s.interrupt(in.Unique)
		return
	case opFlush:
		s.sendErr(hdr.Unique, 0)
		return
	case opCuseInit:
		s.log.Warn("cuse: second CUSE_INIT", "unique", hdr.Unique)
		s.sendErr(hdr.Unique, syscall.EINVAL)
		return
	case opOpen:
		handle = s.doOpen
	case opRead:
		handle = s.doRead
	case opWrite:
		handle = s.doWrite
	case opRelease:
		handle = s.doRelease
	case opIoctl:
		if s.cfg.InlineIoctl {
			s.ioctl(s.baseCtx, &hdr, msg, &s.inlineIn)
			return
		}
		handle = s.doIoctl
	case opPoll:
		s.doPoll(s.baseCtx, &hdr, msg)
		return
	default:
		s.log.Warn("cuse: unsupported opcode", "op", opName(hdr.Opcode), "unique", hdr.Unique)
		s.sendErr(hdr.Unique, syscall.ENOSYS)
		return
	}
	r := s.register(hdr.Unique, hdr.Opcode)
	s.handlers.Add(1)
	msg = bytes.Clone(msg)
	go func(hdr fuse.InHeader) { // a copy: the inline paths' header stays on the stack
		defer s.handlers.Done()
		defer s.unregister(r)
		handle(r.ctx, &hdr, msg)
	}(hdr)
}

// register records an outstanding request so INTERRUPT can find it; an
// interrupt that arrived before it cancels it at once.
func (s *Server) register(unique uint64, op uint32) *request {
	ctx, cancel := context.WithCancelCause(s.baseCtx)
	r := &request{unique: unique, op: op, ctx: ctx, cancel: cancel}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.early[unique]; ok {
		delete(s.early, unique)
		cancel(nil)
	}
	s.reqs[unique] = r
	return r
}

func (s *Server) unregister(r *request) {
	r.cancel(nil)
	s.mu.Lock()
	if s.reqs[r.unique] == r {
		delete(s.reqs, r.unique)
	}
	s.mu.Unlock()
}

// interrupt cancels the ctx of the request with the given unique. If the
// request is not known yet it is remembered for a while; if it has already
// finished the entry just ages out. No reply is sent: the interrupted request
// itself gets one (typically EINTR).
func (s *Server) interrupt(unique uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.reqs[unique]; ok {
		r.cancel(nil)
		return
	}
	now := time.Now()
	if len(s.early) >= earlyInterruptMax {
		for u, t := range s.early {
			if now.Sub(t) > earlyInterruptAge {
				delete(s.early, u)
			}
		}
		if len(s.early) >= earlyInterruptMax {
			clear(s.early)
		}
	}
	s.early[unique] = now
	if s.resumed {
		s.answerOrphan(unique)
	}
}

func (s *Server) doOpen(ctx context.Context, hdr *fuse.InHeader, msg []byte) {
	in, _ := decode[fuse.OpenIn](msg)
	file, errno := s.dev.Open(ctx, in.Flags)
	if errno == 0 && file == nil {
		s.log.Error("cuse: Device.Open returned no file and no error", "unique", hdr.Unique)
		errno = syscall.EIO
	}
	if errno != 0 {
		if errno == syscall.ENOSYS {
			// ENOSYS would make the kernel stop sending OPEN and RELEASE
			// for the rest of the connection.
			errno = syscall.ENXIO
		}
		s.sendErr(hdr.Unique, errno)
		return
	}
	s.mu.Lock()
	of := &openFile{fh: s.allocFhLocked(), file: file, flags: in.Flags}
	s.files[of.fh] = of
	s.mu.Unlock()
	out := fuse.OpenOut{Fh: of.fh}
	if err := s.send(hdr.Unique, encode(nil, &out)); err != nil {
		// The kernel no longer waits for this open (connection gone), so
		// it will never send RELEASE for it.
		s.log.Debug("cuse: OPEN reply not delivered; releasing the file", "fh", of.fh, "err", err)
		if s.remove(of.fh) != nil {
			file.Release()
		}
	}
}

// remove takes fh out of the table (marking it released) and returns its
// entry, or nil if it was not there.
func (s *Server) remove(fh uint64) *openFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	of := s.files[fh]
	if of != nil {
		of.released = true
		delete(s.files, fh)
	}
	return of
}

func (s *Server) doRelease(_ context.Context, hdr *fuse.InHeader, msg []byte) {
	in, _ := decode[fuse.ReleaseIn](msg)
	if of := s.remove(in.Fh); of != nil {
		of.file.Release()
	} else if s.resumed {
		// A file opened before this process took over the channel and
		// not used since: nothing of it lives here.
		s.log.Info("cuse: file opened before the restart closed", "fh", in.Fh)
	} else {
		s.log.Warn("cuse: RELEASE of unknown file handle", "fh", in.Fh, "unique", hdr.Unique)
	}
	s.sendErr(hdr.Unique, 0)
}

func (s *Server) doRead(ctx context.Context, hdr *fuse.InHeader, msg []byte) {
	in, _ := decode[fuse.ReadIn](msg)
	of := s.lookupOrAdopt(in.Fh)
	if of == nil {
		s.sendErr(hdr.Unique, syscall.EBADF)
		return
	}
	size := min(in.Size, max(s.maxRead, ioctlMaxData))
	dst := make([]byte, size)
	n, errno := of.file.Read(ctx, dst, in.Flags&syscall.O_NONBLOCK != 0)
	if errno == 0 && n <= 0 && ctx.Err() != nil {
		// Interrupted or shutting down with nothing read: not EOF.
		errno = syscall.EINTR
	}
	if errno == syscall.EINTR && errors.Is(context.Cause(ctx), errCarry) {
		// Taken back by Pause with nothing read (EINTR: no effect):
		// whoever serves next runs it again, and answers it.
		s.mu.Lock()
		s.carried = append(s.carried, msg)
		s.mu.Unlock()
		return
	}
	if errno != 0 {
		s.sendErr(hdr.Unique, errno)
		return
	}
	if n < 0 || n > len(dst) {
		s.log.Warn("cuse: File.Read returned a count outside the buffer", "n", n, "size", len(dst))
		s.sendErr(hdr.Unique, syscall.EIO)
		return
	}
	s.send(hdr.Unique, dst[:n])
}

func (s *Server) doWrite(ctx context.Context, hdr *fuse.InHeader, msg []byte) {
	in, _ := decode[fuse.WriteIn](msg)
	data := msg[inHeaderSize+writeInSize:]
	if uint64(len(data)) < uint64(in.Size) {
		s.log.Warn("cuse: WRITE shorter than its size", "size", in.Size, "data", len(data), "unique", hdr.Unique)
		s.sendErr(hdr.Unique, syscall.EINVAL)
		return
	}
	data = data[:in.Size]
	of := s.lookupOrAdopt(in.Fh)
	if of == nil {
		s.sendErr(hdr.Unique, syscall.EBADF)
		return
	}
	n, errno := of.file.Write(ctx, data)
	if errno != 0 {
		s.sendErr(hdr.Unique, errno)
		return
	}
	if n < 0 || n > len(data) {
		s.log.Warn("cuse: File.Write returned a count outside the data", "n", n, "size", len(data))
		s.sendErr(hdr.Unique, syscall.EIO)
		return
	}
	out := fuse.WriteOut{Size: uint32(n)}
	s.send(hdr.Unique, encode(nil, &out))
}

func (s *Server) doIoctl(ctx context.Context, hdr *fuse.InHeader, msg []byte) {
	s.ioctl(ctx, hdr, msg, new(IoctlIn))
}

// ioctl answers one IOCTL request, passing the device din: the reader's own
// (Config.InlineIoctl), reused for every request it answers, or a new one.
func (s *Server) ioctl(ctx context.Context, hdr *fuse.InHeader, msg []byte, din *IoctlIn) {
	in, _ := decode[fuse.IoctlIn](msg)
	data := msg[inHeaderSize+ioctlInSize:]
	if uint64(len(data)) != uint64(in.InSize) {
		s.log.Warn("cuse: IOCTL payload does not match in_size", "in_size", in.InSize, "data", len(data), "unique", hdr.Unique)
		s.sendErr(hdr.Unique, syscall.EINVAL)
		return
	}
	of := s.lookupOrAdopt(in.Fh)
	if of == nil {
		s.sendErr(hdr.Unique, syscall.EBADF)
		return
	}
	din.reset(in.Cmd, in.Arg, in.Flags, data, in.OutSize)
	out := of.file.Ioctl(ctx, din)
	din.In = nil // the reader's buffer: keep no reference to it
	bp := s.getMsg()
	reply, errno, problem := ioctlReply((*bp)[:outHeaderSize], &in, &out)
	if problem != "" {
		s.log.Warn("cuse: device ioctl reply rejected: "+problem, "cmd", fmt.Sprintf("%#x", in.Cmd),
			"errno", errno, "unique", hdr.Unique)
	}
	if errno != 0 {
		s.putMsg(bp, reply)
		s.sendErr(hdr.Unique, errno)
		return
	}
	h := fuse.OutHeader{Length: uint32(len(reply)), Unique: hdr.Unique}
	encode(reply[:0], &h)
	s.write(reply)
	s.putMsg(bp, reply)
}

// ioctlReply appends the payload of a FUSE_IOCTL reply for a device's
// IoctlOut to dst (which holds room for the out header), enforcing the
// limits the kernel would otherwise answer with an error of its own: it
// returns the errno the caller should get instead, and a description when
// the device asked for something the kernel refuses.
func ioctlReply(dst []byte, in *fuse.IoctlIn, out *IoctlOut) (reply []byte, errno syscall.Errno, problem string) {
	if out.Errno != 0 {
		return dst, out.Errno, ""
	}
	if !out.Retry {
		if uint64(len(out.Out)) > uint64(in.OutSize) {
			return dst, syscall.EIO, fmt.Sprintf("%d output bytes for out_size %d", len(out.Out), in.OutSize)
		}
		o := fuse.IoctlOut{Result: out.Result}
		return append(encode(dst, &o), out.Out...), 0, ""
	}
	if in.Flags&fuse.IOCTL_UNRESTRICTED == 0 {
		return dst, syscall.EIO, "retry on a restricted ioctl"
	}
	limit := uint64(math.MaxUint64)
	if in.Flags&fuse.IOCTL_COMPAT != 0 {
		limit = math.MaxUint32
	}
	// The struct goes first, its counts known once the iovecs are.
	at := len(dst)
	reply = encode(dst, &fuse.IoctlOut{})
	// Zero-length iovecs change neither the data copied in nor where output
	// lands, so drop them; the kernel limits then apply to what remains.
	count := func(vs []Iovec) (int, syscall.Errno, string) {
		n := 0
		var total uint64
		for _, v := range vs {
			if v.Len == 0 {
				continue
			}
			if v.Base > limit || v.Len > limit {
				return 0, syscall.EIO, fmt.Sprintf("iovec {%#x, %d} does not fit the caller's address size", v.Base, v.Len)
			}
			if v.Len > ioctlMaxData-total {
				return 0, syscall.ENOMEM, fmt.Sprintf("iovecs total more than %d bytes", ioctlMaxData)
			}
			if (len(reply)-at-ioctlOutSize)/ioctlIovecSize >= fuse.FUSE_IOCTL_MAX_IOV {
				return 0, syscall.ENOMEM, fmt.Sprintf("more than %d iovecs", fuse.FUSE_IOCTL_MAX_IOV)
			}
			total += v.Len
			n++
			iov := ioctlIovec(v)
			reply = encode(reply, &iov)
		}
		return n, 0, ""
	}
	nIn, errno, p := count(out.InIovs)
	if errno != 0 {
		return reply[:at], errno, p
	}
	nOut, errno, p := count(out.OutIovs)
	if errno != 0 {
		return reply[:at], errno, p
	}
	if nIn+nOut == 0 {
		return reply[:at], syscall.EIO, "retry asks for no memory (the kernel would retry forever)"
	}
	if len(out.Out) > 0 {
		problem = "output data on a retry reply is ignored"
	}
	o := fuse.IoctlOut{Flags: fuse.IOCTL_RETRY, InIovs: uint32(nIn), OutIovs: uint32(nOut)}
	encode(reply[at:at], &o)
	return reply, 0, problem
}

func (s *Server) doPoll(_ context.Context, hdr *fuse.InHeader, msg []byte) {
	in, _ := decode[pollIn](msg)
	of := s.lookupOrAdopt(in.Fh)
	if of == nil {
		s.sendErr(hdr.Unique, syscall.EBADF)
		return
	}
	var wake func()
	s.mu.Lock()
	of.kh = in.Kh
	if in.Flags&fuse.FUSE_POLL_SCHEDULE_NOTIFY != 0 {
		// The kernel queued its waiter before sending this POLL, so a
		// notification written any time after now reaches it: a wake
		// during Poll itself is not lost.
		of.armed = true
		if of.wake == nil {
			of.wake = func() { s.fireWake(of) } // made once per file
		}
		wake = of.wake
	}
	s.mu.Unlock()
	out := pollOut{Revents: of.file.Poll(wake)}
	var b [pollOutSize]byte // the reply is copied out: no allocation
	s.send(hdr.Unique, encode(b[:0], &out))
}

// fireWake is what a File calls when its readiness may have changed: it
// sends FUSE_NOTIFY_POLL for the file's poll handle if a POLL asked for a
// notification since the last one was sent, unless the file has been
// released since (the kernel ignores those anyway). One wake function per
// file, armed by each POLL that asks, so a POLL allocates nothing; a File
// calling it again, or calling one it was given for an earlier POLL,
// sends nothing more until a POLL asks again.
func (s *Server) fireWake(of *openFile) {
	s.mu.Lock()
	fire := of.armed && !of.released
	of.armed = false
	kh := of.kh
	s.mu.Unlock()
	if fire {
		s.notifyPoll(kh)
	}
}

// notifyPoll sends FUSE_NOTIFY_POLL for kh.
func (s *Server) notifyPoll(kh uint64) {
	w := notifyPollWakeup{Kh: kh}
	bp := s.getMsg()
	h := fuse.OutHeader{Length: outHeaderSize + notifyPollWakeupOut, Status: notifyPoll, Unique: 0}
	msg := encode((*bp)[:0], &h)
	msg = encode(msg, &w)
	s.c.notifications.Add(1)
	if err := s.write(msg); err != nil {
		s.log.Debug("cuse: poll notification not delivered", "kh", kh, "err", err)
	}
	s.putMsg(bp, msg)
}

// sendErr writes a header-only reply with errno (0 = success, no payload).
// Errnos the kernel would reject (outside 1..511) become ERANGE, as libfuse
// does.
func (s *Server) sendErr(unique uint64, errno syscall.Errno) error {
	if errno > maxErrno {
		s.log.Warn("cuse: errno out of range for a reply; sending ERANGE", "errno", uint64(errno), "unique", unique)
		errno = syscall.ERANGE
	}
	h := fuse.OutHeader{Length: outHeaderSize, Status: -int32(errno), Unique: unique}
	bp := s.getMsg()
	msg := encode((*bp)[:0], &h)
	err := s.write(msg)
	s.putMsg(bp, msg)
	return err
}

// send writes a successful reply: header plus the concatenated parts, in a
// single write as the kernel requires.
func (s *Server) send(unique uint64, parts ...[]byte) error {
	total := outHeaderSize
	for _, p := range parts {
		total += len(p)
	}
	h := fuse.OutHeader{Length: uint32(total), Unique: unique}
	bp := s.getMsg()
	msg := encode((*bp)[:0], &h)
	for _, p := range parts {
		msg = append(msg, p...)
	}
	err := s.write(msg)
	s.putMsg(bp, msg)
	return err
}

// errReplyUnknown means the kernel no longer waits for the request a reply
// answers (already aborted or interrupted away): harmless.
var errReplyUnknown = errors.New("kernel has no such request")

// write sends one message in one write(2).
func (s *Server) write(msg []byte) error {
	for {
		s.c.writes.Add(1) // before the write: whoever sees the reply sees it counted
		n, err := s.rawWrite(msg)
		switch {
		case err == nil && n == len(msg):
			return nil
		case err == nil:
			s.log.Error("cuse: short write on the channel", "n", n, "len", len(msg))
			return fmt.Errorf("cuse: short write %d of %d bytes", n, len(msg))
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.ENOENT):
			return errReplyUnknown
		case errors.Is(err, syscall.EINVAL):
			s.log.Error("cuse: kernel rejected a reply as malformed", "len", len(msg), "err", err)
		}
		return fmt.Errorf("cuse: write reply: %w", err)
	}
}
