package ioctl

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// Defaults for Config fields left zero. They mirror the kernel's module
// parameters where the kernel has one.
const (
	// DefaultRequestTimeout is the deadline given to the engine for a
	// system-interface request. The kernel's message handler sets no timer
	// on system-interface messages; its KCS driver gives up only after 10
	// error recoveries with 5 s IBF/OBF waits, so a dead BMC answers (with
	// 0xFF) after about a minute and a request queued behind others is
	// never dropped. One minute keeps that observable behaviour (nothing a
	// client waits for with ipmitool's 15 s or freeipmi's 60 s timeout is
	// failed early) while still bounding every wait.
	DefaultRequestTimeout = 60 * time.Second
	// DefaultMaxUsers is the kernel's max_users: opens beyond it get EBUSY.
	DefaultMaxUsers = 30
	// DefaultMaxMsgsPerUser is the kernel's max_msgs_per_user: a SEND
	// beyond it gets EBUSY.
	DefaultMaxMsgsPerUser = 100
	// MaintenanceTimeout is how long a firmware or reset command keeps
	// auto maintenance mode in effect (maintenance_mode_timeout_ms).
	MaintenanceTimeout = 30 * time.Second
)

// OwnerBase is added to a per-device counter to form each open file's
// sched.Owner, so in-process owners (the built-in watchdog, ...) can use
// values below it without colliding with files.
const OwnerBase sched.Owner = 1 << 32

// fuseIoctlCompat is FUSE_IOCTL_COMPAT: the ioctl came from a 32-bit caller.
const fuseIoctlCompat = 0x1

// Config configures a Device.
type Config struct {
	// Submit queues one request on the engine (sched). It must not block
	// for long; the engine calls Request.Done exactly once later, possibly
	// before Submit returns. An error means the request was not queued and
	// Done will not be called; the SEND ioctl then fails with EBUSY if the
	// error is sched.ErrQueueFull (like the kernel's per-user message
	// limit), else with ENODEV, the kernel's answer when the interface is
	// going away. Required.
	Submit func(*sched.Request) error
	// Inline, if set, is tried before Submit for a system-interface
	// request (sched.Engine.ServeInline): it serves the request on the
	// calling goroutine, the CUSE reader's with cuse.Config.InlineIoctl,
	// when the engine is idle, and returns true with Done already called;
	// the reply is then queued before the SEND ioctl is answered, so the
	// client's first poll finds it. False means Submit as usual.
	Inline func(*sched.Request) bool
	// Logger receives warnings (a BMC reply that does not match its
	// request, a refused submit). Nil discards them.
	Logger *slog.Logger
	// PriorityWatchdogCommands puts Reset/Set/Get Watchdog Timer (netfn
	// 0x06, cmd 0x22/0x24/0x25) sent to the system interface on
	// sched.LanePriority, so a userspace watchdog daemon's pat is never
	// stuck behind application traffic. The kernel gives /dev/ipmiN no
	// priority at all; the daemon turns this on.
	PriorityWatchdogCommands bool
	// RequestTimeout is the deadline given to the engine for each
	// system-interface request, measured from the SEND ioctl. Zero means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxUsers is the most files open at once (EBUSY beyond). Zero means
	// DefaultMaxUsers; negative means no limit.
	MaxUsers int
	// MaxMsgsPerUser is the most messages one file may have in flight or
	// waiting unreceived in its queue (EBUSY on SEND beyond). Zero means
	// DefaultMaxMsgsPerUser; negative means no limit (the receive queue is
	// then unbounded).
	MaxMsgsPerUser int
	// CompletionCode maps an engine error (Request.Err) to the completion
	// code the client sees in the synthesized reply. Nil means
	// DefaultCompletionCode.
	CompletionCode func(error) uint8
	// Now returns the current time; nil means time.Now. For tests.
	Now func() time.Time
	// Bridge handles IPMB, broadcast and LAN addresses and is told about
	// gets_events and closes (see Bridge). Nil: those addresses get
	// EINVAL, as for a channel whose medium is neither IPMB nor LAN.
	Bridge Bridge
}

// DefaultCompletionCode maps an engine error to a completion code: a
// deadline or timeout (errors.Is context.DeadlineExceeded or
// os.ErrDeadlineExceeded, or any error with a Timeout() bool method that
// returns true) gives 0xC3 "timeout", what the kernel itself reports for a
// request nobody answered in time (IPMB bridging) and what QEMU's external
// BMC reports; anything else (BMC unresponsive, transport failure, engine
// closed) gives 0xFF, what the kernel's KCS driver reports when it gives up
// on a hosed interface. An error that carries its own completion code (a
// CompletionCode() uint8 method, such as the BT transport's "node busy")
// gives that code first, as the kernel's interface drivers answer with it.
func DefaultCompletionCode(err error) uint8 {
	var c interface{ CompletionCode() uint8 }
	if errors.As(err, &c) {
		return c.CompletionCode()
	}
	var t interface{ Timeout() bool }
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &t) && t.Timeout()) {
		return CCTimeout
	}
	return CCUnspecified
}

// Device is the /dev/ipmi0 device: it implements cuse.Device, and holds the
// state the kernel keeps per interface (my address and LUN per channel,
// maintenance mode, command registrations, the user count).
type Device struct {
	cfg     Config
	log     *slog.Logger
	timeout time.Duration
	maxMsgs int
	ccOf    func(error) uint8
	now     func() time.Time

	nextOwner atomic.Uint64

	mu         sync.Mutex
	users      int
	myAddr     [MaxChannels]uint8
	myLUN      [MaxChannels]uint8
	maintMode  int32
	maintUntil time.Time
	rcvrs      []cmdRcvr
	files      map[sched.Owner]*File
}

// cmdRcvr is one command registration: netfn/cmd on a channel mask, owned
// by one file.
type cmdRcvr struct {
	netfn, cmd uint8
	chans      uint32
	file       *File
}

var _ cuse.Device = (*Device)(nil)

// NewDevice returns a Device serving requests through cfg.Submit. It panics
// if cfg.Submit is nil, a wiring bug.
func NewDevice(cfg Config) *Device {
	if cfg.Submit == nil {
		panic("ioctl.NewDevice: Config.Submit is nil")
	}
	d := &Device{cfg: cfg, log: cfg.Logger, timeout: cfg.RequestTimeout, maxMsgs: cfg.MaxMsgsPerUser,
		ccOf: cfg.CompletionCode, now: cfg.Now, files: make(map[sched.Owner]*File)}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.timeout <= 0 {
		d.timeout = DefaultRequestTimeout
	}
	if d.maxMsgs == 0 {
		d.maxMsgs = DefaultMaxMsgsPerUser
	}
	if d.cfg.MaxUsers == 0 {
		d.cfg.MaxUsers = DefaultMaxUsers
	}
	if d.ccOf == nil {
		d.ccOf = DefaultCompletionCode
	}
	if d.now == nil {
		d.now = time.Now
	}
	for i := range d.myAddr {
		d.myAddr[i] = BMCSlaveAddr
		d.myLUN[i] = DefaultLUN
	}
	return d
}

// Open creates one "user" per open file, like ipmi_open: EBUSY once
// MaxUsers files are open. The open flags are not checked (O_RDONLY works
// for every ioctl, as with the kernel).
func (d *Device) Open(_ context.Context, _ uint32) (cuse.File, syscall.Errno) {
	f, errno := d.open()
	if errno != 0 {
		return nil, errno
	}
	return f, 0
}

func (d *Device) open() (*File, syscall.Errno) {
	d.mu.Lock()
	if d.cfg.MaxUsers > 0 && d.users >= d.cfg.MaxUsers {
		d.mu.Unlock()
		return nil, syscall.EBUSY
	}
	d.users++
	f := &File{
		dev:     d,
		owner:   OwnerBase + sched.Owner(d.nextOwner.Add(1)),
		retries: -1,
	}
	d.files[f.owner] = f
	d.mu.Unlock()
	return f, 0
}

// Users returns how many files are open.
func (d *Device) Users() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.users
}

// MaintenanceActive reports whether maintenance mode is in effect: forced
// on, or in auto mode within MaintenanceTimeout of a user's Cold Reset,
// Warm Reset or firmware (netfn 0x08) command, as the kernel computes it.
// The engine may use it to be patient with a BMC that is being flashed.
func (d *Device) MaintenanceActive() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch d.maintMode {
	case MaintenanceModeOn:
		return true
	case MaintenanceModeOff:
		return false
	}
	return d.now().Before(d.maintUntil)
}

// noteMaintenanceCmd re-arms auto maintenance for a user command that
// the kernel treats as a maintenance command (is_maintenance_mode_cmd).
func (d *Device) noteMaintenanceCmd(netfn, cmd uint8) {
	if !(netfn == NetFnApp && (cmd == CmdColdReset || cmd == CmdWarmReset)) && netfn != NetFnFirmware {
		return
	}
	d.mu.Lock()
	d.maintUntil = d.now().Add(MaintenanceTimeout)
	d.mu.Unlock()
}

// setMaintenanceMode is ipmi_set_maintenance_mode.
func (d *Device) setMaintenanceMode(mode int32) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	if mode == d.maintMode {
		return 0
	}
	if mode < MaintenanceModeAuto || mode > MaintenanceModeOn {
		return syscall.EINVAL
	}
	d.maintMode = mode
	return 0
}

func (d *Device) maintenanceMode() int32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.maintMode
}

// setChannelValue sets my address (lun=false) or my LUN (lun=true) of a
// channel, like ipmi_set_my_address / ipmi_set_my_LUN.
func (d *Device) setChannelValue(channel uint32, v uint8, lun bool) syscall.Errno {
	if channel >= MaxChannels {
		return syscall.EINVAL
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if lun {
		d.myLUN[channel] = v & 3
	} else {
		d.myAddr[channel] = v
	}
	return 0
}

// channelValue is ipmi_get_my_address / ipmi_get_my_LUN.
func (d *Device) channelValue(channel uint32, lun bool) (uint8, syscall.Errno) {
	if channel >= MaxChannels {
		return 0, syscall.EINVAL
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if lun {
		return d.myLUN[channel], 0
	}
	return d.myAddr[channel], 0
}

// registerForCmd is ipmi_register_for_cmd: EBUSY if any registration (of
// any file, this one included) for netfn/cmd overlaps chans.
func (d *Device) registerForCmd(f *File, netfn, cmd uint8, chans uint32) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.rcvrs {
		if r.netfn == netfn && r.cmd == cmd && r.chans&chans != 0 {
			return syscall.EBUSY
		}
	}
	d.rcvrs = append(d.rcvrs, cmdRcvr{netfn: netfn, cmd: cmd, chans: chans, file: f})
	return 0
}

// unregisterForCmd is ipmi_unregister_for_cmd: for each channel 0..15 in
// chans, the registration covering it, if it is f's, loses all of chans
// (and is removed once empty). ENOENT if none of f's matched.
func (d *Device) unregisterForCmd(f *File, netfn, cmd uint8, chans uint32) syscall.Errno {
	d.mu.Lock()
	defer d.mu.Unlock()
	errno := syscall.ENOENT
	for i := range MaxChannels {
		if chans&(1<<i) == 0 {
			continue
		}
		for j := range d.rcvrs {
			r := &d.rcvrs[j]
			if r.netfn != netfn || r.cmd != cmd || r.chans&(1<<i) == 0 {
				continue
			}
			if r.file == f {
				errno = 0
				r.chans &^= chans
			}
			break
		}
	}
	d.dropRcvrs(func(r cmdRcvr) bool { return r.chans == 0 })
	return errno
}

// dropRcvrs removes the registrations for which drop returns true; d.mu held.
func (d *Device) dropRcvrs(drop func(cmdRcvr) bool) {
	kept := d.rcvrs[:0]
	for _, r := range d.rcvrs {
		if !drop(r) {
			kept = append(kept, r)
		}
	}
	clear(d.rcvrs[len(kept):])
	d.rcvrs = kept
}

// release forgets a closed file: its registrations, its user slot, and
// (through the Bridge) its outstanding bridged requests.
func (d *Device) release(f *File) {
	d.mu.Lock()
	d.users--
	delete(d.files, f.owner)
	d.dropRcvrs(func(r cmdRcvr) bool { return r.file == f })
	d.mu.Unlock()
	if d.cfg.Bridge != nil {
		d.cfg.Bridge.Release(f.owner)
	}
}

// Registration is one command registration, as reported by Registrations.
type Registration struct {
	NetFn, Cmd uint8
	Chans      uint32
	Owner      sched.Owner
}

// Registrations returns the current command registrations (for tests and
// diagnostics; the Bridge looks receivers up with CmdReceiver).
func (d *Device) Registrations() []Registration {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Registration, 0, len(d.rcvrs))
	for _, r := range d.rcvrs {
		out = append(out, Registration{NetFn: r.netfn, Cmd: r.cmd, Chans: r.chans, Owner: r.file.owner})
	}
	return out
}
