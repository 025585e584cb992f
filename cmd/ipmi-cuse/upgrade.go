package main

// The daemon's side of an upgrade (SIGHUP) and of being the upgraded
// process. The work is in packages handover (what to stop, carry and
// restore), upgrade (the new process and its answer) and state (the
// encoding); this file wires them to the flags, signals and sd_notify.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/handover"
	"github.com/ipmi-cuse/ipmi-cuse/internal/buildinfo"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/state"
	"github.com/ipmi-cuse/ipmi-cuse/sysif"
	"github.com/ipmi-cuse/ipmi-cuse/upgrade"
	"golang.org/x/sys/unix"
)

// Names of descriptors in a hand-over besides the CUSE channels: /dev/port,
// and the metrics listener (not hardware, but a socket the next process
// cannot bind while this one holds it).
const (
	hwDevPort = "devport"
	hwMetrics = "metrics"
	// hwI2C starts the name of an SSIF interface's /dev/i2c-N.
	hwI2C = "i2c-"
)

// hardwareOf lists the interface's descriptors the next process needs,
// named so it finds them: what the interface says it holds (/dev/port for
// KCS or BT through /dev/port, /dev/i2c-N for SSIF as "i2c-N"; with in/out
// instructions, the /dev/port
// keepDevPort opened before the privilege drop, which the next process
// uses instead of iopl).
// inherited is the /dev/port this process was given (its name is not the
// path), or nil.
func hardwareOf(bmc *sysif.Opened, inherited *os.File) []handover.Hardware {
	var hw []handover.Hardware
	for _, f := range bmc.Files {
		name := filepath.Base(f.Name())
		switch {
		case f.Name() == kcs.DevPortPath || f == inherited:
			name = hwDevPort
		case bmc.SSIF != nil:
			// Named by its bus, not its path: an inherited descriptor's
			// name is not the path.
			name = i2cName(bmc.Interface.Bus, bmc.Interface.Addr)
		}
		hw = append(hw, handover.Hardware{Name: name, File: f})
	}
	return hw
}

// takeover is what this process received from the one it replaces; nil
// when it was started normally. Its methods work on nil.
type takeover struct {
	in  *upgrade.Inherited
	st  *state.State
	log *slog.Logger
}

// takeOver reads the hand-over if an upgrade started this process.
func takeOver(log *slog.Logger) (*takeover, error) {
	in, err := upgrade.Inherit()
	if err != nil {
		return nil, err
	}
	if in == nil {
		return nil, nil
	}
	t := &takeover{in: in, log: log}
	st, err := state.Decode(in.State)
	if err != nil {
		t.refuse(err)
		return nil, fmt.Errorf("taking over from the previous process: %w", err)
	}
	if len(in.Files) != len(st.Devices)+len(st.Hardware) {
		err := fmt.Errorf("taking over: %d descriptors for %d devices and %d hardware", len(in.Files), len(st.Devices), len(st.Hardware))
		t.refuse(err)
		return nil, err
	}
	t.st = st
	log.Info("taking over from the previous process", "devices", len(st.Devices), "hardware", st.Hardware)
	return t, nil
}

// refuse tells the previous process why this one will not serve.
func (t *takeover) refuse(err error) {
	if t != nil {
		t.in.Refuse(err)
	}
}

// hardware returns the handed-over descriptor with that name, or nil.
func (t *takeover) hardware(name string) *os.File {
	if t == nil {
		return nil
	}
	for i, n := range t.st.Hardware {
		if n == name {
			return t.in.Files[len(t.st.Devices)+i]
		}
	}
	return nil
}

// hardwareNamed returns the first handed-over descriptor whose name starts
// with prefix and ends with suffix, or nil.
func (t *takeover) hardwareNamed(prefix, suffix string) *os.File {
	if t == nil {
		return nil
	}
	for _, n := range t.st.Hardware {
		if strings.HasPrefix(n, prefix) && strings.HasSuffix(n, suffix) {
			return t.hardware(n)
		}
	}
	return nil
}

// i2cName names an SSIF interface's /dev/i2c-N in a hand-over and in the
// store: by bus and the BMC's address ("i2c-0@0x10"), so it goes only to
// the interface that used it (setting another address on it would move
// the first interface's BMC).
func i2cName(bus int, addr uint8) string {
	return hwI2C + strconv.Itoa(bus) + "@" + fmt.Sprintf("%#02x", addr)
}

// inheritedI2C is the /dev/i2c-N of the SSIF interface at addr whose
// hardware names start with prefix ("" for the first interface, "ipmiN."
// for another) that the previous process handed over or systemd's store
// kept, or nil. The interface uses it instead of opening the bus: the
// process may hold no privilege.
func inheritedI2C(tk *takeover, sd *stored, prefix string, addr uint8) *os.File {
	suffix := "@" + fmt.Sprintf("%#02x", addr)
	if f := tk.hardwareNamed(prefix+hwI2C, suffix); f != nil {
		return f
	}
	return sd.hardwareNamed(prefix+hwI2C, suffix)
}

// restore imports the state into the new parts.
func (t *takeover) restore(p handover.Parts) (map[string]cuse.Resume, error) {
	if t == nil {
		return nil, nil
	}
	r, err := handover.Restore(t.st, p)
	if err != nil {
		return nil, fmt.Errorf("taking over from the previous process: %w", err)
	}
	return r, nil
}

// hasInterface reports whether the state carries the further interface of
// device name (its message handler is resumed, not started).
func (t *takeover) hasInterface(name string) bool {
	return t != nil && t.st.Interface(name) != nil && t.st.Interface(name).Handler != nil
}

// restoreStack imports a further interface's state into its stack, which
// then resumes its device; a stack the state does not carry serves anew.
func (t *takeover) restoreStack(s *bmcStack) error {
	if t == nil {
		return nil
	}
	r, ok, _, err := handover.RestoreInterface(t.st, s.name, handover.Parts{IPMI: s.dev, Handler: s.handler, Submit: s.engine.Submit})
	if err != nil {
		return fmt.Errorf("taking over from the previous process: %w", err)
	}
	s.resume, s.taken = r, ok
	return nil
}

// handlerResumed reports whether restore started the message handler.
func (t *takeover) handlerResumed() bool { return t != nil && t.st.Handler != nil }

// check refuses a state with a device this configuration does not serve:
// its clients would lose it when the previous process exits.
func (t *takeover) check(devices []handover.Device) error {
	if t == nil {
		return nil
	}
	for _, sd := range t.st.Devices {
		found := false
		for _, d := range devices {
			found = found || (d.Name == sd.Name && d.Kind == sd.Kind)
		}
		if !found {
			return fmt.Errorf("taking over: the previous process serves /dev/%s (%s), which these flags do not: %w",
				sd.Name, sd.Kind, handover.ErrMismatch)
		}
	}
	return nil
}

// channel returns the handed-over channel of device name and how to resume
// it; ok is false for a device to create anew.
func (t *takeover) channel(name string, resumes map[string]cuse.Resume) (*os.File, cuse.Resume, bool) {
	if t == nil {
		return nil, cuse.Resume{}, false
	}
	for i, d := range t.st.Devices {
		if d.Name == name {
			return t.in.Files[i], resumes[name], true
		}
	}
	return nil, cuse.Resume{}, false
}

// ready tells the previous process that this one serves.
func (t *takeover) ready() error {
	if t == nil {
		return nil
	}
	t.log.Info("serving the devices taken over; the previous process exits", "version", buildinfo.Read().Version)
	return t.in.Ready()
}

// upgrader runs an upgrade on SIGHUP.
type upgrader struct {
	o    options
	log  *slog.Logger
	d    *handover.Daemon
	mu   sync.Mutex // one upgrade at a time
	done atomic.Bool
}

// listen upgrades on each SIGHUP until ctx ends or an upgrade succeeds;
// the returned func stops listening.
func (u *upgrader) listen(ctx context.Context) func() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if u.upgrade(ctx) == nil {
					return
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
	}
}

// handedOver reports whether an upgrade succeeded.
func (u *upgrader) handedOver() bool { return u.done.Load() }

// upgrade hands the daemon over to a new process of the binary on disk, or
// rolls back and serves on.
func (u *upgrader) upgrade(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	start := time.Now()
	notify(u.log, "RELOADING=1", fmt.Sprintf("MONOTONIC_USEC=%d", monotonicUsec()), "STATUS=upgrading")
	u.log.Info("upgrade: handing the devices over to a new process")
	fr, err := u.d.Freeze(ctx)
	if err != nil {
		u.log.Error("upgrade refused: could not stop for the hand-over; serving on", "err", err)
		notify(u.log, "READY=1", "STATUS=serving (upgrade failed: "+err.Error()+")")
		return err
	}
	p, err := upgrade.Start(ctx, upgrade.Config{Args: os.Args[1:], Timeout: u.o.upgradeTimeout}, fr.State, fr.Files)
	if err != nil {
		fr.Thaw()
		u.log.Error("upgrade failed; serving on", "err", err, "paused", time.Since(start))
		notify(u.log, "READY=1", "STATUS=serving (upgrade failed: "+err.Error()+")")
		return err
	}
	// Tell the supervisor before exiting, while this is still its main
	// process (NotifyAccess=main suffices).
	// WATCHDOG=1 too: the new process feeds systemd's watchdog only a
	// third of WatchdogSec= after it starts, and upgrades in quick
	// succession must not let the timer run out meanwhile.
	notify(u.log, fmt.Sprintf("MAINPID=%d", p.Pid), "READY=1", "WATCHDOG=1")
	u.log.Info("upgrade: the new process serves", "pid", p.Pid, "freeze", fr.Took, "paused", time.Since(start),
		"state_bytes", len(fr.State))
	u.done.Store(true)
	fr.Detach()
	return nil
}

// notify sends sd_notify(3) lines to the supervisor, if there is one.
func notify(log *slog.Logger, lines ...string) {
	msg := ""
	for _, l := range lines {
		msg += l + "\n"
	}
	if _, err := daemon.SdNotify(false, msg); err != nil {
		log.Warn("sd_notify failed", "err", err)
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, for RELOADING=1.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}
