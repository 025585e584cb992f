package cuse

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// startResumed starts a server with ServeResumed on the fake kernel and
// waits until it is ready.
func startResumed(t *testing.T, dev Device, r Resume) *fakeKernel {
	t.Helper()
	k := startKernelServe(t, Config{}, dev, &r)
	select {
	case <-k.srv.Ready():
	case <-time.After(waitLong):
		t.Fatal("resumed server never became ready")
	}
	return k
}

// nextNotify returns the next notification the server wrote.
func (k *fakeKernel) nextNotify() (fuse.OutHeader, []byte) {
	k.t.Helper()
	select {
	case msg := <-k.notifies:
		h, _ := decode[fuse.OutHeader](msg)
		return h, msg[outHeaderSize:]
	case <-time.After(waitLong):
		k.t.Fatal("no notification")
	}
	return fuse.OutHeader{}, nil
}

func TestResumeServesHandedOverFiles(t *testing.T) {
	dev := &testDevice{}
	old := &testFile{dev: dev, wakes: make(chan func(), 4)}
	k := startResumed(t, dev, Resume{Files: []FileRecord{{Fh: 100, Flags: 2, Kh: 9, File: old}}, NextFh: 100})

	// The restored file's poller is woken, so it polls the new process.
	h, p := k.nextNotify()
	if w, _ := decode[notifyPollWakeup](p); h.Status != notifyPoll || w.Kh != 9 {
		t.Errorf("first notification %+v kh %d, want NOTIFY_POLL kh 9", h, w.Kh)
	}
	if status, body := k.call(opRead, readInBody(100, 10, 0)); status != 0 || string(body) != "hello" {
		t.Errorf("READ on the handed-over file: %d %q", status, body)
	}
	if dev.openCount() != 0 {
		t.Errorf("device opened %d files for a handed-over one, want 0", dev.openCount())
	}
	// New handles never collide with the old process's.
	if fh := k.open(0); fh <= 100 {
		t.Errorf("new fh %d not above the handed-over 100", fh)
	}
}

func TestResumeAdoptsUnknownFiles(t *testing.T) {
	dev := &testDevice{ioctl: upperIoctl}
	// A handle far in the future of the clock: a new one must still be above it.
	const crashed = uint64(1) << 62
	k := startResumed(t, dev, Resume{})

	tests := []struct {
		name string
		op   uint32
		body []byte
	}{
		{"read", opRead, readInBody(crashed, 10, 0)},
		{"write", opWrite, writeInBody(crashed, []byte("x"))},
		{"poll", opPoll, pollInBody(crashed, 3, 0, 1)},
		{"ioctl", opIoctl, ioctlInBody(crashed, fuse.IOCTL_UNRESTRICTED, 0x1, 0, nil, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, _ := k.call(tc.op, tc.body)
			if tc.op == opIoctl {
				if status != -int32(syscall.ENOTTY) {
					t.Errorf("status %d, want the device's ENOTTY", status)
				}
				return
			}
			if status != 0 {
				t.Errorf("status %d on an adopted file, want 0", status)
			}
		})
	}
	if n := dev.openCount(); n != 1 {
		t.Fatalf("device opened %d files for one adopted handle, want 1", n)
	}
	if dev.flags[0] != uint32(syscall.O_RDWR) {
		t.Errorf("adopted with flags %#x, want O_RDWR", dev.flags[0])
	}
	if fh := k.open(0); fh <= crashed {
		t.Errorf("new fh %d collides with or is below the adopted %d", fh, crashed)
	}
	// RELEASE of the adopted file releases it once.
	if status, _ := k.call(opRelease, releaseInBody(crashed)); status != 0 {
		t.Errorf("RELEASE status %d", status)
	}
	if r := dev.file(0).releases.Load(); r != 1 {
		t.Errorf("adopted file released %d times, want 1", r)
	}
	// RELEASE of a file opened before the restart and never used since:
	// answered, nothing opened.
	if status, _ := k.call(opRelease, releaseInBody(crashed+7)); status != 0 {
		t.Errorf("RELEASE of an unused old file: status %d", status)
	}
	if n := dev.openCount(); n != 2 { // the adopted one and k.open's
		t.Errorf("device opened %d files, want 2", n)
	}
}

func TestFreshServerDoesNotAdopt(t *testing.T) {
	dev := &testDevice{}
	k := startKernel(t, Config{}, dev)
	if status, _ := k.call(opRead, readInBody(12345, 10, 0)); status != -int32(syscall.EBADF) {
		t.Errorf("READ of an unknown fh on a fresh server: %d, want EBADF", status)
	}
	if dev.openCount() != 0 {
		t.Error("fresh server adopted an unknown fh")
	}
}

func TestAdoptOpenFails(t *testing.T) {
	dev := &testDevice{openErr: syscall.EBUSY}
	k := startResumed(t, dev, Resume{})
	if status, _ := k.call(opRead, readInBody(55, 10, 0)); status != -int32(syscall.EBADF) {
		t.Errorf("READ status %d, want EBADF when the device cannot adopt", status)
	}
}

func TestResumeResend(t *testing.T) {
	k := startResumed(t, &testDevice{}, Resume{Resend: true})
	h, p := k.nextNotify()
	if h.Status != notifyResend || h.Length != outHeaderSize || len(p) != 0 {
		t.Errorf("notification %+v (%d payload bytes), want FUSE_NOTIFY_RESEND header only", h, len(p))
	}
	// A resent request carries FUSE_UNIQUE_RESEND; its reply uses that unique.
	u := uint64(1)<<63 | 40
	k.sendAs(u, opRead, readInBody(8, 10, 0))
	if status, _ := k.reply(u); status != 0 {
		t.Errorf("resent READ status %d", status)
	}
}

func TestPauseContinue(t *testing.T) {
	dev := &testDevice{}
	k := startKernel(t, Config{}, dev)
	fh := k.open(0)
	if err := k.srv.Pause(context.Background()); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := k.srv.Pause(context.Background()); !errors.Is(err, ErrPaused) {
		t.Errorf("second Pause = %v, want ErrPaused", err)
	}
	files := k.srv.Files()
	if len(files) != 1 || files[0].Fh != fh || files[0].File != dev.file(0) {
		t.Fatalf("Files() = %+v, want the one open file %d", files, fh)
	}
	u := k.send(opRead, readInBody(fh, 10, 0))
	time.Sleep(50 * time.Millisecond)
	k.noReply(u) // queued, not read, while paused
	k.srv.Continue()
	if status, body := k.reply(u); status != 0 || string(body) != "hello" {
		t.Errorf("READ after Continue: %d %q", status, body)
	}
	// And it can pause again.
	if err := k.srv.Pause(context.Background()); err != nil {
		t.Fatalf("Pause after Continue: %v", err)
	}
	k.srv.Continue()
	k.call(opFlush, make([]byte, 24))
}

func TestPauseDetach(t *testing.T) {
	dev := &testDevice{}
	k := startKernel(t, Config{}, dev)
	k.open(0)
	if err := k.srv.Pause(context.Background()); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	u := k.send(opRead, readInBody(1, 10, 0))
	k.srv.Detach()
	if err := k.waitServe(); err != nil {
		t.Errorf("ServeFile after Detach = %v, want nil", err)
	}
	if r := dev.file(0).releases.Load(); r != 0 {
		t.Errorf("file released %d times at a hand-over, want 0 (the next process owns it)", r)
	}
	k.noReply(u) // left for the next process
}

func TestPauseWaitsForRunningRequests(t *testing.T) {
	// A blocked IOCTL (not a READ) is not taken back: Pause waits for it.
	started := make(chan struct{}, 1)
	dev := &testDevice{ioctl: func(ctx context.Context, _ *testFile, _ *IoctlIn) IoctlOut {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return IoctlOut{Errno: syscall.EINTR}
	}}
	k := startKernel(t, Config{}, dev)
	fh := k.open(0)
	u := k.send(opIoctl, ioctlInBody(fh, 0, 0x1234, 0, nil, 0))
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := k.srv.Pause(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 requests still running") {
		t.Fatalf("Pause with a blocked ioctl = %v, want an error naming 1 running request", err)
	}
	// Still serving after the failed pause.
	if status, _ := k.call(opWrite, writeInBody(fh, []byte("a"))); status != 0 {
		t.Errorf("WRITE after a failed Pause: %d", status)
	}
	k.send(opInterrupt, interruptInBody(u))
	if status, _ := k.reply(u); status != -int32(syscall.EINTR) {
		t.Errorf("interrupted IOCTL: %d, want EINTR", status)
	}
}

// TestPauseCarriesBlockedRead: a READ that blocks does not hold up a
// hand-over: Pause takes it back unanswered, and the next server runs it
// and answers it (here: its INTERRUPT, sent to the next server, ends it
// with EINTR), exactly once.
func TestPauseCarriesBlockedRead(t *testing.T) {
	started := make(chan struct{}, 1)
	dev := &testDevice{read: blockingRead(started, syscall.EINTR)}
	k := startKernel(t, Config{}, dev)
	fh := k.open(0)
	u := k.send(opRead, readInBody(fh, 10, 0))
	<-started
	if err := k.srv.Pause(context.Background()); err != nil {
		t.Fatalf("Pause with a blocked read: %v", err)
	}
	carried := k.srv.Carried()
	if len(carried) != 1 {
		t.Fatalf("Carried() = %d requests, want the blocked READ", len(carried))
	}
	if h, _ := decode[fuse.InHeader](carried[0]); h.Unique != u || h.Opcode != opRead {
		t.Fatalf("carried %+v, want READ %d", h, u)
	}
	k.srv.Detach()
	if err := k.waitServe(); err != nil {
		t.Fatalf("ServeFile after Detach = %v", err)
	}
	k.noReply(u)

	dev2 := &testDevice{read: blockingRead(started, syscall.EINTR)}
	f2 := &testFile{dev: dev2, wakes: make(chan func(), 4)}
	k2 := startResumed(t, dev2, Resume{Files: []FileRecord{{Fh: fh, Flags: 2, File: f2}}, NextFh: fh, Requests: carried})
	select {
	case <-started:
	case <-time.After(waitLong):
		t.Fatal("the carried READ does not run in the next server")
	}
	k2.sendAs(u+1001, opInterrupt, interruptInBody(u))
	if status, _ := k2.reply(u); status != -int32(syscall.EINTR) {
		t.Errorf("carried READ interrupted: %d, want EINTR", status)
	}
	time.Sleep(50 * time.Millisecond)
	k2.noReply(u)
}

// TestPauseContinueRunsCarriedRead: after a rollback the server runs the
// READ it took back, which then completes as usual, once.
func TestPauseContinueRunsCarriedRead(t *testing.T) {
	release := make(chan struct{})
	reads := make(chan struct{}, 4)
	dev := &testDevice{read: func(ctx context.Context, _ *testFile, dst []byte, _ bool) (int, syscall.Errno) {
		reads <- struct{}{}
		select {
		case <-ctx.Done():
			return 0, syscall.EINTR
		case <-release:
			return copy(dst, "data"), 0
		}
	}}
	k := startKernel(t, Config{}, dev)
	fh := k.open(0)
	u := k.send(opRead, readInBody(fh, 10, 0))
	<-reads
	if err := k.srv.Pause(context.Background()); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	k.noReply(u)
	k.srv.Continue()
	select {
	case <-reads:
	case <-time.After(waitLong):
		t.Fatal("the READ taken back does not run again after Continue")
	}
	close(release)
	if status, body := k.reply(u); status != 0 || string(body) != "data" {
		t.Errorf("READ after the rollback: %d %q", status, body)
	}
	if c := k.srv.Carried(); len(c) != 0 {
		t.Errorf("still %d carried after Continue", len(c))
	}
	time.Sleep(50 * time.Millisecond)
	k.noReply(u)
}

// TestCarriedNotRead: only READs are run from Resume.Requests.
func TestCarriedNotRead(t *testing.T) {
	dev := &testDevice{}
	msg := encode(nil, &fuse.InHeader{Length: inHeaderSize + openInSize, Opcode: opOpen, Unique: 77})
	msg = append(msg, make([]byte, openInSize)...)
	k := startResumed(t, dev, Resume{Requests: [][]byte{msg, {1, 2}}})
	if status, _ := k.reply(77); status != -int32(syscall.EIO) {
		t.Errorf("carried OPEN: %d, want EIO", status)
	}
	if dev.openCount() != 0 {
		t.Error("a carried OPEN opened a file")
	}
}

func TestPollHandleRecorded(t *testing.T) {
	dev := &testDevice{}
	k := startKernel(t, Config{}, dev)
	fh := k.open(0)
	k.call(opPoll, pollInBody(fh, 77, 0, 1))
	<-dev.file(0).wakes
	files := k.srv.Files()
	if len(files) != 1 || files[0].Kh != 77 {
		t.Errorf("Files() = %+v, want kh 77 recorded", files)
	}
}

// TestResumedAnswersOrphanedInterrupt: on a resumed server, an INTERRUPT
// for a request that never arrives (one the dead process read) is
// answered EINTR after orphanGrace, so its caller gets out; a request that
// does arrive is served normally; a fresh server answers nothing.
func TestResumedAnswersOrphanedInterrupt(t *testing.T) {
	k := startResumed(t, &testDevice{}, Resume{})
	const orphan = 500
	k.send(opInterrupt, interruptInBody(orphan))
	if status, _ := k.reply(orphan); status != -int32(syscall.EINTR) {
		t.Errorf("orphaned request answered %d, want -EINTR", status)
	}
	// An interrupt that arrives before its request: the request is served.
	u := k.nextUnique() + 100
	k.send(opInterrupt, interruptInBody(u))
	k.sendAs(u, opWrite, writeInBody(3, []byte("ab")))
	if status, _ := k.reply(u); status != 0 {
		t.Errorf("request after its interrupt: %d, want served", status)
	}
	time.Sleep(orphanGrace + 200*time.Millisecond)
	k.noReply(u) // no second answer

	fresh := startKernel(t, Config{}, &testDevice{})
	fresh.send(opInterrupt, interruptInBody(orphan))
	time.Sleep(orphanGrace + 200*time.Millisecond)
	fresh.noReply(orphan)
}

// TestResumedSweepsOrphans: a server resumed after a crash (Resend)
// answers EINTR, on the first ordinary request it reads, to every id below
// it within orphanSweep (the kernel refuses those it does not wait for),
// and to nothing else; interrupts and resent requests do not start the
// sweep; an upgrade's resumed server (no Resend) sweeps nothing.
func TestResumedSweepsOrphans(t *testing.T) {
	for _, tc := range []struct {
		name  string
		r     Resume
		sweep bool
	}{
		{"crash", Resume{Resend: true}, true},
		{"upgrade", Resume{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := startResumed(t, &testDevice{}, tc.r)
			if tc.r.Resend {
				k.nextNotify()
			}
			const first = 10000
			// Neither an interrupt nor a resent request starts the sweep.
			k.sendAs(first+1, opInterrupt, interruptInBody(first-2))
			resent := uint64(1)<<63 | (first - 4)
			k.sendAs(resent, opFlush, make([]byte, 24))
			if status, _ := k.reply(resent); status != 0 {
				t.Errorf("resent FLUSH: %d", status)
			}
			k.sendAs(first, opFlush, make([]byte, 24))
			if status, _ := k.reply(first); status != 0 {
				t.Errorf("first new request: %d, want served", status)
			}
			if !tc.sweep {
				k.noReply(first - 6)
				return
			}
			for _, u := range []uint64{first - 2, first - 6, first - 2*orphanSweep} {
				if status, _ := k.reply(u); status != -int32(syscall.EINTR) {
					t.Errorf("id %d below the first new request: %d, want -EINTR", u, status)
				}
			}
			k.noReply(first - 2*orphanSweep - 2)
			// Only once: a later request sweeps nothing.
			k.sendAs(first+20, opFlush, make([]byte, 24))
			k.reply(first + 20)
			k.noReply(first + 18)
		})
	}
}
