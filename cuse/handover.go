package cuse

// Hand-over and resume: a CUSE connection lives as long as one descriptor of
// its /dev/cuse file is open, in any process. So a server can stop reading
// (Pause) while another process takes the same descriptor and goes on
// serving the same device (ServeResumed), or resume reading itself
// (Continue) if the other one fails; and a server started on a descriptor
// kept by a supervisor (systemd's file descriptor store) after a crash
// serves the files the dead process had opened by adopting them.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// notifyResend is FUSE_NOTIFY_RESEND (protocol 7.40, Linux 6.9): the kernel
// queues again every request that was read from the connection and not
// answered yet, with FUSE_UNIQUE_RESEND set in its unique.
const notifyResend = 7

// ErrPaused is returned (wrapped) by Pause when the server is already
// paused or not serving.
var ErrPaused = errors.New("cuse: server not in a state to pause")

// errHandedOver ends the serve loop after Detach.
var errHandedOver = errors.New("cuse: channel handed over")

// errCarry is the cause with which Pause cancels blocked READs: their
// handler leaves them unanswered for the next server (Carried).
var errCarry = errors.New("cuse: blocked read carried over to the next server")

// FileRecord is one open file of a Server, for a hand-over to another
// process: the kernel's file handle, the open(2) flags, the kernel's poll
// handle of the file (0 if it never polled) and the device's File.
type FileRecord struct {
	Fh    uint64
	Flags uint32
	Kh    uint64
	File  File
}

// Resume is what a Server needs to serve a channel another process
// initialised (see ServeResumed).
type Resume struct {
	// Files are the files the previous server had open, with the File
	// this process made for each (from the hand-over state).
	Files []FileRecord
	// NextFh is the previous server's last file handle; new handles are
	// above it and above every file in Files.
	NextFh uint64
	// Resend asks the kernel to send again the requests the previous
	// server read and never answered (it crashed). Kernels before 6.9
	// cannot; their callers wait until interrupted (see the README).
	Resend bool
	// Requests are the blocked READs the previous server took back
	// unanswered (its Carried), run again here before anything is read:
	// the kernel waits for their answers from this channel, and sends
	// their INTERRUPTs here.
	Requests [][]byte
}

// pauseState is one hand-over in progress.
type pauseState struct {
	stopped chan struct{} // closed when the reader has stopped
	resume  chan bool     // true: read again (Continue); false: Detach
}

// ServeResumed serves the device on f, a CUSE channel whose CUSE_INIT
// another process answered (inherited at an upgrade, or from a
// supervisor's descriptor store after a crash), without initialising it
// again: the node and its device number stay. r gives the files the
// previous server had open; a request for any other unknown file handle
// is for a file opened before the restart, which is adopted as a new
// open of the device (Device.Open with O_RDWR) and logged once. Each
// file's poll handle is woken, so a process waiting in poll(2) asks again.
// Otherwise it behaves as ServeFile.
func (s *Server) ServeResumed(ctx context.Context, f *os.File, r Resume) error {
	return s.serve(ctx, f, &r)
}

// restore fills the file table from r and wakes the pollers.
func (s *Server) restore(r *Resume) {
	s.mu.Lock()
	s.resumed = true
	s.nextFh = max(s.nextFh, r.NextFh)
	var khs []uint64
	for _, rec := range r.Files {
		if rec.File == nil || rec.Fh == 0 {
			continue
		}
		s.files[rec.Fh] = &openFile{fh: rec.Fh, file: rec.File, flags: rec.Flags, kh: rec.Kh}
		s.nextFh = max(s.nextFh, rec.Fh)
		if rec.Kh != 0 {
			khs = append(khs, rec.Kh)
		}
	}
	s.mu.Unlock()
	s.log.Info("cuse: serving a channel initialised by an earlier process", "files", len(r.Files), "resend", r.Resend)
	// After a crash (Resend), answer what the dead process left in the
	// kernel's processing list once the first new request shows where the
	// kernel's request ids stand (sweepOrphans). After a resend that list
	// is empty, so this costs failed writes and nothing else.
	s.sweep = r.Resend
	if r.Resend {
		h := fuse.OutHeader{Length: outHeaderSize, Status: notifyResend}
		// Written directly: an older kernel refuses the unknown
		// notification with EINVAL, which is expected, not a protocol
		// error worth write's complaint.
		if _, err := s.ch.Write(encode(nil, &h)); err != nil {
			s.log.Warn("cuse: the kernel cannot send again the requests the previous process left unanswered (FUSE_NOTIFY_RESEND needs Linux 6.9); a caller still waiting for one gets EINTR when it is interrupted",
				"err", err)
		} else {
			s.log.Info("cuse: asked the kernel to send again the requests the previous process left unanswered")
		}
	}
	// A poller may have been told to wait for a notification that only
	// the previous process could send: wake it so it polls again here.
	for _, kh := range khs {
		s.notifyPoll(kh)
	}
}

// allocFhLocked returns a new file handle; s.mu held. Handles come from
// CLOCK_BOOTTIME in nanoseconds, kept strictly increasing: an earlier
// process on the same channel (one that crashed and left no state) issued
// only handles below its own clock, so a new handle never collides with a
// file it opened. Opens take microseconds, so the handles never run ahead
// of the clock by more than a few nanoseconds.
func (s *Server) allocFhLocked() uint64 {
	var ts unix.Timespec
	now := uint64(0)
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err == nil {
		now = uint64(ts.Nano())
	}
	s.nextFh = max(s.nextFh+1, now)
	return s.nextFh
}

// lookupOrAdopt returns the open file for fh. On a resumed server, an
// unknown fh is a file opened before this process took over: it is
// adopted with the device's defaults. It returns nil if fh is unknown and
// cannot be adopted.
func (s *Server) lookupOrAdopt(fh uint64) *openFile {
	s.mu.Lock() // once: this runs for every request
	of, resumed := s.files[fh], s.resumed
	s.mu.Unlock()
	if of != nil || !resumed || fh == 0 {
		return of
	}
	file, errno := s.dev.Open(s.baseCtx, uint32(os.O_RDWR))
	if errno != 0 || file == nil {
		s.log.Warn("cuse: cannot adopt a file opened before the restart", "fh", fh, "errno", errno)
		return nil
	}
	s.mu.Lock()
	if of := s.files[fh]; of != nil {
		// Adopted concurrently by another request on the same file.
		s.mu.Unlock()
		file.Release()
		return of
	}
	of = &openFile{fh: fh, file: file, flags: uint32(os.O_RDWR)}
	s.files[fh] = of
	s.nextFh = max(s.nextFh, fh)
	s.mu.Unlock()
	// Once per file: later requests find it in the table.
	s.log.Info("cuse: adopted a file opened before the restart, with the device's defaults", "fh", fh)
	return of
}

// Pause stops reading requests (the kernel queues them meanwhile) and waits
// until every request already read has been answered, except a READ that
// blocks: Pause cancels those, and one that then ends with EINTR (nothing
// read, as File.Read's contract for a cancelled read) is not answered but
// kept, for the next server (Carried, Resume.Requests) or, after Continue,
// this one; a READ that returns data instead is answered as usual. The
// channel stays open. Afterwards either Continue (serve again) or Detach
// (another process serves the channel now) must be called. If ctx ends
// first, Pause continues serving and returns an error saying how many
// requests were still running.
func (s *Server) Pause(ctx context.Context) error {
	s.pmu.Lock()
	if s.pause != nil || s.ch == nil {
		s.pmu.Unlock()
		return fmt.Errorf("%w: already paused or not started", ErrPaused)
	}
	st := &pauseState{stopped: make(chan struct{}), resume: make(chan bool, 1)}
	s.pause = st
	s.pmu.Unlock()
	if err := s.ch.SetReadDeadline(time.Now()); err != nil {
		s.Continue()
		return fmt.Errorf("cuse: stop reading: %w", err)
	}
	select {
	case <-st.stopped:
	case <-ctx.Done():
		s.Continue()
		return fmt.Errorf("cuse: waiting for the reader to stop: %w", ctx.Err())
	}
	// Nothing more is read, so no INTERRUPT can reach a read from here
	// on: one taken back is interrupted, if at all, where it runs next.
	s.mu.Lock()
	for _, r := range s.reqs {
		if r.op == opRead {
			r.cancel(errCarry)
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.handlers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		n := len(s.reqs)
		s.mu.Unlock()
		s.Continue()
		return fmt.Errorf("cuse: %d requests still running (a blocking read?): %w", n, ctx.Err())
	}
}

// Continue ends a Pause: the server reads requests again, after running
// again the READs the Pause took back.
func (s *Server) Continue() { s.endPause(true) }

// Carried returns the blocked READs the Pause took back unanswered, as the
// kernel sent them (call it while paused), for the next server's
// Resume.Requests.
func (s *Server) Carried() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.carried...)
}

// runCarried runs again the requests in rs (taken back by a Pause, here
// or in the previous server), on the reader goroutine before it reads.
// Only READs are run: nothing else is ever taken back.
func (s *Server) runCarried(rs [][]byte) {
	for _, msg := range rs {
		if len(msg) < inHeaderSize {
			s.log.Warn("cuse: dropping a carried request shorter than fuse_in_header", "len", len(msg))
			continue
		}
		hdr, _ := decode[fuse.InHeader](msg)
		if hdr.Opcode != opRead {
			s.log.Warn("cuse: a carried request is not a READ; answering EIO", "op", opName(hdr.Opcode), "unique", hdr.Unique)
			s.sendErr(hdr.Unique, syscall.EIO)
			continue
		}
		s.log.Info("cuse: serving a blocked read carried over from the hand-over", "unique", hdr.Unique)
		s.dispatch(msg)
	}
}

// Detach ends a Pause for good: the server stops without releasing any
// file or answering anything more, and ServeFile (or ServeResumed) returns
// nil after closing this process's descriptor of the channel, which
// leaves the connection to the process that holds another one.
func (s *Server) Detach() { s.endPause(false) }

func (s *Server) endPause(keep bool) {
	s.pmu.Lock()
	st := s.pause
	s.pmu.Unlock()
	if st == nil {
		return
	}
	select {
	case st.resume <- keep:
	default:
	}
}

// Files returns the open files, for a hand-over (call it while paused, so
// the table does not change).
func (s *Server) Files() []FileRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FileRecord, 0, len(s.files))
	for _, of := range s.files {
		out = append(out, FileRecord{Fh: of.fh, Flags: of.flags, Kh: of.kh, File: of.file})
	}
	return out
}

// LastFh returns the highest file handle issued or adopted so far.
func (s *Server) LastFh() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextFh
}

// serveLoop runs readLoop, and holds it while paused.
func (s *Server) serveLoop(ctx context.Context, buf []byte) error {
	for {
		err := s.readLoop(buf)
		s.pmu.Lock()
		st := s.pause
		s.pmu.Unlock()
		if st == nil || ctx.Err() != nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		close(st.stopped)
		select {
		case keep := <-st.resume:
			if !keep {
				return errHandedOver
			}
		case <-ctx.Done():
			return err
		}
		s.pmu.Lock()
		s.pause = nil
		s.pmu.Unlock()
		// Rolled back: the reads taken back are this server's again.
		s.mu.Lock()
		carried := s.carried
		s.carried = nil
		s.mu.Unlock()
		s.runCarried(carried)
		if err := s.ch.SetReadDeadline(time.Time{}); err != nil {
			return fmt.Errorf("cuse: read again after a pause: %w", err)
		}
		if ctx.Err() != nil {
			// Cancelled while paused: its deadline was just cleared.
			return nil
		}
	}
}

// Channel returns the CUSE channel the server reads (nil before Serve), to
// hand it to another process with Files. Do not read or close it.
func (s *Server) Channel() *os.File {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	return s.ch
}

// Request ids (fuse_in_header.unique) as Linux allocates them for
// ordinary requests: one counter per connection, stepped by two (bit 0
// marks an INTERRUPT's id), and bit 63 marks a request sent again after
// FUSE_NOTIFY_RESEND.
const (
	uniqueStep      = 2
	uniqueInterrupt = 1
	uniqueResend    = 1 << 63
)

// orphanSweep is how many request ids below the first new request
// sweepOrphans answers: more than the previous process can have had read
// and unanswered at once, except blocking reads older than that (those
// still get out through answerOrphan when interrupted).
const orphanSweep = 1024

// sweepOrphans runs on a server resumed after a crash, on the first
// ordinary request it reads, whose id is first. The kernel queues requests
// in id order and the reader takes them in that order, so every request
// the dead process read and never answered has a lower id, and every
// request with a lower id is either answered already or one of those.
// Kernels without FUSE_NOTIFY_RESEND (before 6.9) keep waiting for them,
// and their callers stay blocked until a signal; this answers each one
// EINTR, as an interrupted call ends, so no caller stays blocked on a
// process that is gone. The kernel refuses a reply to an id it is not
// waiting for (ENOENT), so the sweep answers nothing else. The answer is
// blind to what the request was: an ioctl or read returns EINTR, a poll
// reports POLLERR.
func (s *Server) sweepOrphans(first uint64) {
	n := 0
	for i := uint64(1); i <= orphanSweep && first > i*uniqueStep; i++ {
		if s.sendErr(first-i*uniqueStep, syscall.EINTR) == nil {
			n++
		}
	}
	if n > 0 {
		s.log.Warn("cuse: answered EINTR to requests the previous process left unanswered when it died (this kernel cannot send them again)",
			"requests", n, "first_new", first)
	}
}

// orphanGrace is how long a resumed server waits for the request an
// INTERRUPT names before taking it for one the previous process read and
// never answered.
const orphanGrace = time.Second

// answerOrphan runs orphanGrace after an INTERRUPT for an unknown request
// on a resumed server. If the request has still not arrived, it may be one
// the previous process read and died with: the kernel then still waits for
// its answer, and the caller, interrupted, expects EINTR. The answer is
// harmless otherwise: the kernel refuses a reply to a request it is not
// waiting for (ENOENT). This is how a caller blocked on such a request gets
// out on kernels without FUSE_NOTIFY_RESEND, with any signal instead of
// only SIGKILL.
func (s *Server) answerOrphan(unique uint64) {
	time.AfterFunc(orphanGrace, func() {
		s.mu.Lock()
		_, waiting := s.early[unique]
		if waiting {
			delete(s.early, unique)
		}
		s.mu.Unlock()
		if !waiting {
			return
		}
		if err := s.sendErr(unique, syscall.EINTR); err == nil {
			s.log.Info("cuse: answered EINTR to an interrupted request the previous process left unanswered", "unique", unique)
		}
	})
}
