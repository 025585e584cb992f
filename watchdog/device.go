package watchdog

import (
	"bytes"
	"context"
	"log/slog"
	"syscall"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
)

// Identity and firmware version reported by WDIOC_GETSUPPORT, as the
// kernel's ipmi_watchdog.
const (
	identity        = "IPMI"
	firmwareVersion = 1
	// kernelOptions is what ipmi_watchdog advertises: nothing.
	kernelOptions = 0
	// genericOptions is what the generic watchdog API promises a timer
	// with settable timeout, keepalive ping, magic close and pretimeout
	// (Config.GenericAPI).
	genericOptions = OptSetTimeout | OptKeepalivePing | OptMagicClose | OptPretimeout
)

var _ cuse.Device = (*Watchdog)(nil)

// releaseGrace is how long an open that finds /dev/watchdog open waits
// for that file's RELEASE to start. A close(2) of a CUSE file returns
// before the daemon sees its RELEASE (FUSE sends it asynchronously), and
// the daemon runs OPEN and RELEASE concurrently, so a watchdog daemon that
// closes and reopens at once (a restart) would otherwise get EBUSY where
// the kernel's synchronous release lets it in.
const releaseGrace = 250 * time.Millisecond

// Open opens /dev/watchdog (Watchdog is a cuse.Device). Only one opener
// at a time: a second one, or any while Run drives the timer, gets EBUSY.
// An open that finds the file open waits for a release in progress (or
// starting within releaseGrace) to finish. Open does not start the timer;
// the first heartbeat (write, KEEPALIVE) or WDIOS_ENABLECARD does, as in
// ipmi_watchdog. A pretimeout that happened before the open is forgotten.
func (w *Watchdog) Open(ctx context.Context, _ uint32) (cuse.File, syscall.Errno) {
	w.mu.Lock()
	defer w.mu.Unlock()
	deadline := time.Now().Add(releaseGrace)
	for w.user == userFile {
		var timeout <-chan time.Time
		if !w.releasing {
			d := time.Until(deadline)
			if d <= 0 {
				return nil, syscall.EBUSY
			}
			t := time.NewTimer(d)
			timeout = t.C
			defer t.Stop()
		}
		ch := w.userCh
		w.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
		case <-ctx.Done():
			w.mu.Lock()
			return nil, syscall.EINTR
		}
		w.mu.Lock()
	}
	if w.user != userNone {
		return nil, syscall.EBUSY
	}
	w.user = userFile
	w.startOnHB = true
	w.expectClose = false
	w.pinged = false
	w.dataToRead = false
	w.pollWake = nil
	return &file{w: w}, 0
}

// file is the one open /dev/watchdog. Its state lives in the Watchdog,
// since there is only one.
type file struct {
	w *Watchdog
}

// Read blocks until a pretimeout, then returns one byte, 0, as the kernel
// (which clears its flag before copying it out). One read per pretimeout;
// nonblock gives EAGAIN, an interrupt EINTR. Only PreOpGiveData (or the
// generic API) makes a pretimeout readable; otherwise, as in the kernel,
// a read blocks until interrupted.
func (f *file) Read(ctx context.Context, dst []byte, nonblock bool) (int, syscall.Errno) {
	if len(dst) == 0 {
		return 0, 0
	}
	w := f.w
	for {
		w.mu.Lock()
		if w.dataToRead {
			w.dataToRead = false
			w.mu.Unlock()
			dst[0] = 0
			return 1, 0
		}
		ch := w.readCh
		w.mu.Unlock()
		if nonblock {
			return 0, syscall.EAGAIN
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, syscall.EINTR
		}
	}
}

// Write is a heartbeat. Unless NoWayOut, a 'V' anywhere in the data arms
// the magic close, and data without one disarms it. Write of nothing does
// nothing.
func (f *file) Write(ctx context.Context, src []byte) (int, syscall.Errno) {
	if len(src) == 0 {
		return 0, 0
	}
	w := f.w
	w.opMu.Lock()
	defer w.opMu.Unlock()
	if !w.cfg.NoWayOut {
		w.mu.Lock()
		w.expectClose = bytes.IndexByte(src, 'V') >= 0
		w.mu.Unlock()
	}
	if err := w.heartbeatLocked(ctx); err != nil {
		return 0, errnoOf(err)
	}
	return len(src), 0
}

// Poll reports POLLIN|POLLRDNORM while a pretimeout is unread, and
// remembers wake for the next pretimeout.
func (f *file) Poll(wake func()) uint32 {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if wake != nil {
		w.pollWake = wake
	}
	if w.dataToRead {
		return pollIn | pollRdNorm
	}
	return 0
}

// Release is close(2): with the magic 'V' the timer is stopped; otherwise
// it keeps running, the close is logged and one heartbeat is sent (which,
// as in the kernel, starts a timer the opener never started). The timer
// is free for another user afterwards.
func (f *file) Release() {
	w := f.w
	w.mu.Lock()
	w.releasing = true
	w.notifyUserLocked()
	w.mu.Unlock()
	w.opMu.Lock()
	w.mu.Lock()
	expect := w.expectClose
	w.expectClose = false
	w.pollWake = nil
	w.mu.Unlock()
	ctx := context.Background()
	if expect {
		if err := w.stopLocked(ctx); err != nil {
			w.log.Error("watchdog: magic close: stopping the BMC watchdog failed", slog.Any("err", err))
		} else {
			w.log.Info("watchdog: magic close: BMC watchdog stopped")
		}
	} else {
		w.log.Warn("watchdog: unexpected close, not stopping the BMC watchdog", slog.Bool("nowayout", w.cfg.NoWayOut))
		if err := w.heartbeatLocked(ctx); err != nil {
			w.log.Error("watchdog: heartbeat at close failed", slog.Any("err", err))
		}
	}
	w.mu.Lock()
	w.startOnHB = false
	w.user = userNone
	w.releasing = false
	w.notifyUserLocked()
	w.mu.Unlock()
	w.opMu.Unlock()
}

// notifyUserLocked wakes opens waiting for the file's release. Called
// with mu held.
func (w *Watchdog) notifyUserLocked() {
	close(w.userCh)
	w.userCh = make(chan struct{})
}

// Ioctl runs one round of a WDIOC ioctl, asking the kernel for the int or
// struct at Arg through retries. Every command that talks to the BMC is
// serialised with the others, as under the kernel's watchdog mutex.
func (f *file) Ioctl(ctx context.Context, in *cuse.IoctlIn) cuse.IoctlOut {
	w := f.w
	switch in.Cmd {
	case IoctlGetSupport:
		if out := needOut(in, SizeofInfo); out != nil {
			return *out
		}
		info := Info{Options: kernelOptions, FirmwareVersion: firmwareVersion}
		if w.cfg.GenericAPI {
			info.Options = genericOptions
		}
		copy(info.Identity[:], identity)
		return cuse.IoctlOut{Out: info.Encode()}

	case IoctlGetStatus:
		if out := needOut(in, SizeofInt); out != nil {
			return *out
		}
		w.mu.Lock()
		var st int32
		if !w.cfg.GenericAPI {
			// ipmi_watchdog always answers 0.
			w.mu.Unlock()
			return cuse.IoctlOut{Out: EncodeInt(0)}
		}
		if w.expectClose {
			st |= OptMagicClose
		}
		if w.pinged {
			st |= OptKeepalivePing
			w.pinged = false
		}
		w.mu.Unlock()
		return cuse.IoctlOut{Out: EncodeInt(st)}

	case IoctlGetBootStatus:
		if !w.cfg.GenericAPI {
			break // ipmi_watchdog: ENOTTY
		}
		if out := needOut(in, SizeofInt); out != nil {
			return *out
		}
		st, err := w.bootStatus(ctx)
		if err != nil {
			return cuse.IoctlOut{Errno: errnoOf(err)}
		}
		return cuse.IoctlOut{Out: EncodeInt(st)}

	case IoctlSetOptions:
		b, out := needIn(in, SizeofInt)
		if out != nil {
			return *out
		}
		v, _ := DecodeInt(b)
		return cuse.IoctlOut{Errno: f.setOptions(ctx, v)}

	case IoctlKeepalive:
		// The argument is unused: no user memory needed.
		w.opMu.Lock()
		err := w.heartbeatLocked(ctx)
		w.opMu.Unlock()
		return cuse.IoctlOut{Errno: errnoOf(err)}

	case IoctlSetTimeout:
		b, out := needInOut(in, SizeofInt)
		if out != nil {
			return *out
		}
		v, _ := DecodeInt(b)
		if v < 1 || time.Duration(v)*time.Second > MaxTimeout {
			return cuse.IoctlOut{Errno: syscall.EINVAL}
		}
		w.opMu.Lock()
		w.mu.Lock()
		timeout, pre := time.Duration(v)*time.Second, w.st.pretimeout
		w.mu.Unlock()
		if pre >= timeout {
			pre = 0 // the generic API drops a pretimeout the new timeout cannot hold
		}
		err := w.setTimesLocked(ctx, timeout, pre)
		w.opMu.Unlock()
		if errno := errnoOf(err); errno != 0 {
			return cuse.IoctlOut{Errno: errno}
		}
		return cuse.IoctlOut{Out: EncodeInt(v)}

	case IoctlGetTimeout, IoctlGetPretimeout:
		if out := needOut(in, SizeofInt); out != nil {
			return *out
		}
		w.mu.Lock()
		d := w.st.timeout
		if in.Cmd == IoctlGetPretimeout {
			d = w.st.pretimeout
		}
		w.mu.Unlock()
		return cuse.IoctlOut{Out: EncodeInt(int32((d + time.Second - 1) / time.Second))}

	case IoctlSetPretimeout:
		b, out := needIn(in, SizeofInt)
		if out != nil {
			return *out
		}
		v, _ := DecodeInt(b)
		if v < 0 || time.Duration(v)*time.Second > MaxPretimeout {
			return cuse.IoctlOut{Errno: syscall.EINVAL}
		}
		w.opMu.Lock()
		w.mu.Lock()
		timeout := w.st.timeout
		w.mu.Unlock()
		err := w.setTimesLocked(ctx, timeout, time.Duration(v)*time.Second)
		w.opMu.Unlock()
		return cuse.IoctlOut{Errno: errnoOf(err)}

	case IoctlGetTimeLeft:
		if !w.cfg.GenericAPI {
			break // ipmi_watchdog: ENOTTY
		}
		if out := needOut(in, SizeofInt); out != nil {
			return *out
		}
		w.opMu.Lock()
		ts, err := w.getLocked(ctx)
		w.opMu.Unlock()
		if err != nil {
			return cuse.IoctlOut{Errno: errnoOf(err)}
		}
		return cuse.IoctlOut{Out: EncodeInt(int32(ts.Present / time.Second))}
	}
	// WDIOC_GETTEMP and anything else: the kernel's -ENOIOCTLCMD.
	return cuse.IoctlOut{Errno: syscall.ENOTTY}
}

// setOptions is WDIOC_SETOPTIONS: DISABLECARD stops the timer, then
// ENABLECARD starts it. As ipmi_watchdog, DISABLECARD stops it even under
// NoWayOut, errors are not returned, and ENABLECARD leaves a pending
// "start on the first heartbeat" in place (so the first write re-sends
// Set and Reset). With GenericAPI, DISABLECARD fails with EBUSY under
// NoWayOut and errors are returned.
func (f *file) setOptions(ctx context.Context, v int32) syscall.Errno {
	w := f.w
	w.opMu.Lock()
	defer w.opMu.Unlock()
	if !w.cfg.GenericAPI {
		if v&SetOptDisableCard != 0 {
			if err := w.stopLocked(ctx); err != nil {
				w.log.Warn("watchdog: WDIOS_DISABLECARD: stopping the BMC watchdog failed", slog.Any("err", err))
			}
		}
		if v&SetOptEnableCard != 0 {
			w.mu.Lock()
			pending := w.startOnHB
			w.mu.Unlock()
			if err := w.startLocked(ctx); err != nil {
				w.log.Warn("watchdog: WDIOS_ENABLECARD: starting the BMC watchdog failed", slog.Any("err", err))
			}
			w.mu.Lock()
			w.startOnHB = pending
			w.mu.Unlock()
		}
		return 0
	}
	if v&SetOptDisableCard != 0 {
		if w.cfg.NoWayOut {
			w.log.Info("watchdog: nowayout prevents stopping the BMC watchdog")
			return syscall.EBUSY
		}
		if err := w.stopLocked(ctx); err != nil {
			return errnoOf(err)
		}
	}
	if v&SetOptEnableCard != 0 {
		if err := w.startLocked(ctx); err != nil {
			return errnoOf(err)
		}
	}
	return 0
}

// bootStatus is WDIOC_GETBOOTSTATUS: WDIOF_CARDRESET if the BMC's SMS/OS
// timer-use expiration flag is set (the last reset may have been this
// watchdog's). Asked once with Get Watchdog Timer and then cached.
func (w *Watchdog) bootStatus(ctx context.Context) (int32, error) {
	w.opMu.Lock()
	defer w.opMu.Unlock()
	w.mu.Lock()
	if w.bootKnown {
		defer w.mu.Unlock()
		return w.bootStat, nil
	}
	w.mu.Unlock()
	ts, err := w.getLocked(ctx)
	if err != nil {
		return 0, err
	}
	var st int32
	if ts.ExpirationFlags&expiredSMSOS != 0 {
		st = OptCardReset
	}
	w.mu.Lock()
	w.bootStat, w.bootKnown = st, true
	w.mu.Unlock()
	return st, nil
}

// retry asks the kernel for the given user ranges.
func retry(inIovs, outIovs []cuse.Iovec) *cuse.IoctlOut {
	return &cuse.IoctlOut{Retry: true, InIovs: inIovs, OutIovs: outIovs}
}

// needIn returns the size bytes at Arg, or the retry reply asking for them.
func needIn(in *cuse.IoctlIn, size int) ([]byte, *cuse.IoctlOut) {
	if len(in.In) != size {
		return nil, retry([]cuse.Iovec{{Base: in.Arg, Len: uint64(size)}}, nil)
	}
	return in.In, nil
}

// needOut returns nil when the kernel accepts size bytes of output at Arg,
// else the retry reply that sets that up.
func needOut(in *cuse.IoctlIn, size int) *cuse.IoctlOut {
	if in.OutSize != uint32(size) {
		return retry(nil, []cuse.Iovec{{Base: in.Arg, Len: uint64(size)}})
	}
	return nil
}

// needInOut is needIn and needOut in one round, for commands that read the
// int and write it back.
func needInOut(in *cuse.IoctlIn, size int) ([]byte, *cuse.IoctlOut) {
	if len(in.In) != size || in.OutSize != uint32(size) {
		iov := []cuse.Iovec{{Base: in.Arg, Len: uint64(size)}}
		return nil, retry(iov, iov)
	}
	return in.In, nil
}
