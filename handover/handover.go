// Package handover freezes a running ipmi-cuse into a state (package
// state) plus the descriptors another process needs to serve the same
// devices, thaws it again if that process fails (a rollback), and restores
// the state in the new process. Package upgrade starts the new process;
// this package knows what to stop, in which order, and what to carry.
package handover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
	"github.com/ipmi-cuse/ipmi-cuse/state"
	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

// DefaultDrainTimeout bounds Freeze's wait for running requests and for
// the engine's queue.
const DefaultDrainTimeout = 10 * time.Second

// Hardware is one hardware descriptor the next process needs (the daemon's
// wiring decides which: /dev/port for KCS through /dev/port, i2c devices,
// ...), named so the next process finds it.
type Hardware struct {
	Name string
	File *os.File
}

// Device is one CUSE device of the daemon.
type Device struct {
	Server *cuse.Server
	// Name is the device name (DEVNAME).
	Name string
	// Kind is state.KindIPMI or state.KindWatchdog.
	Kind string
}

// Interface is a further interface of a daemon that serves several BMCs:
// its engine, its /dev/ipmiN device's state and its message handler
// (which may be nil). Its CUSE device is in Daemon.Devices, named Device.
type Interface struct {
	Device  string
	Engine  *sched.Engine
	IPMI    *ioctl.Device
	Handler *msghandler.Handler
}

// Daemon is what a hand-over stops, serialises and, on a rollback,
// restarts. Handler, Watchdog and Patter may be nil. Engine, IPMI and
// Handler are the first interface's; More are the others, whose devices
// are in Devices too.
type Daemon struct {
	Devices  []Device
	Engine   *sched.Engine
	IPMI     *ioctl.Device
	Handler  *msghandler.Handler
	More     []Interface
	Watchdog *watchdog.Watchdog
	Patter   *Patter
	Hardware []Hardware
	// DrainTimeout bounds the wait for running requests and the engine's
	// queue (0: DefaultDrainTimeout).
	DrainTimeout time.Duration
	Logger       *slog.Logger
}

// Frozen is a daemon that serves nothing until Thaw or Detach.
type Frozen struct {
	// State is the encoded state.
	State []byte
	// Files are the CUSE channels, in the order of the state's devices,
	// then the hardware descriptors, in the order of its Hardware names.
	Files []*os.File
	// Took is how long the freeze took.
	Took time.Duration
	d    *Daemon
}

// Freeze stops the daemon for a hand-over, in this order: the CUSE servers
// stop reading and answer what they read; the built-in patter stops
// without stopping the BMC timer; the message handler's tick holds; the
// engine serves what is queued (so every reply is in its file's queue) and
// parks. Then it serialises everything. If a step fails it restarts what
// it stopped and says why.
func (d *Daemon) Freeze(ctx context.Context) (*Frozen, error) {
	start := time.Now()
	timeout := d.DrainTimeout
	if timeout <= 0 {
		timeout = DefaultDrainTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	f := &Frozen{d: d}
	var paused []*cuse.Server
	undo := func() {
		for _, s := range paused {
			s.Continue()
		}
	}
	for _, dev := range d.Devices {
		if err := dev.Server.Pause(ctx); err != nil {
			undo()
			return nil, fmt.Errorf("handover: stopping %s: %w", dev.Name, err)
		}
		paused = append(paused, dev.Server)
	}
	if d.Patter != nil {
		d.Patter.Stop(watchdog.ErrHandover)
	}
	d.hold(true)
	thaw := func() {
		if d.Watchdog != nil {
			d.Watchdog.KeepState()
		}
		d.hold(false)
		if d.Patter != nil {
			d.Patter.Start()
		}
		undo()
	}
	// Every engine drains (each interface's transactions are bounded on
	// their own), then touches its BMC no more.
	engines := d.engines()
	for i, e := range engines {
		if err := e.Pause(ctx); err != nil {
			for _, p := range engines[:i] {
				p.Resume()
			}
			thaw()
			return nil, fmt.Errorf("handover: draining the engine of interface %d: %w", i, err)
		}
	}
	st, err := d.export()
	if err == nil {
		f.State, err = state.Encode(st)
	}
	if err != nil {
		for _, e := range engines {
			e.Resume()
		}
		thaw()
		return nil, fmt.Errorf("handover: serialising: %w", err)
	}
	for _, dev := range d.Devices {
		f.Files = append(f.Files, dev.Server.Channel())
	}
	for _, h := range d.Hardware {
		f.Files = append(f.Files, h.File)
	}
	f.Took = time.Since(start)
	return f, nil
}

// engines are every interface's engine, the first's first.
func (d *Daemon) engines() []*sched.Engine {
	e := []*sched.Engine{d.Engine}
	for _, m := range d.More {
		e = append(e, m.Engine)
	}
	return e
}

// hold holds (or releases) every message handler's tick.
func (d *Daemon) hold(on bool) {
	if d.Handler != nil {
		d.Handler.Hold(on)
	}
	for _, m := range d.More {
		if m.Handler != nil {
			m.Handler.Hold(on)
		}
	}
}

// export builds the state of a frozen daemon.
func (d *Daemon) export() (*state.State, error) {
	st := &state.State{}
	if d.IPMI != nil {
		s := d.IPMI.ExportState()
		st.IPMI = &s
	}
	if d.Handler != nil {
		s := d.Handler.ExportState()
		st.Handler = &s
	}
	if d.Watchdog != nil {
		s := d.Watchdog.ExportState()
		st.Watchdog = &s
	}
	for _, m := range d.More {
		mi := state.Interface{Device: m.Device, IPMI: m.IPMI.ExportState()}
		if m.Handler != nil {
			s := m.Handler.ExportState()
			mi.Handler = &s
		}
		st.More = append(st.More, mi)
	}
	for _, h := range d.Hardware {
		st.Hardware = append(st.Hardware, h.Name)
	}
	for _, dev := range d.Devices {
		sd := state.Device{Name: dev.Name, Kind: dev.Kind, LastFh: dev.Server.LastFh(), Requests: dev.Server.Carried()}
		for _, rec := range dev.Server.Files() {
			sf := state.File{Fh: rec.Fh, Flags: rec.Flags, Kh: rec.Kh}
			if dev.Kind == state.KindIPMI {
				f, ok := rec.File.(*ioctl.File)
				if !ok {
					return nil, fmt.Errorf("handover: %s: file %d is a %T, not an IPMI file", dev.Name, rec.Fh, rec.File)
				}
				s := f.ExportState()
				sf.IPMI = &s
			}
			sd.Files = append(sd.Files, sf)
		}
		st.Devices = append(st.Devices, sd)
	}
	return st, nil
}

// Thaw is the rollback: everything Freeze stopped serves again.
func (f *Frozen) Thaw() {
	d := f.d
	for _, e := range d.engines() {
		e.Resume()
	}
	if d.Watchdog != nil {
		d.Watchdog.KeepState()
	}
	d.hold(false)
	if d.Patter != nil {
		d.Patter.Start()
	}
	for _, dev := range d.Devices {
		dev.Server.Continue()
	}
}

// Detach ends the hand-over: the new process serves, so the servers stop
// without releasing any file (their Serve returns nil).
func (f *Frozen) Detach() {
	for _, dev := range f.d.Devices {
		dev.Server.Detach()
	}
}

// Parts are the new process's freshly made parts a state is restored into,
// before they serve. Handler and Watchdog may be nil.
type Parts struct {
	IPMI     *ioctl.Device
	Handler  *msghandler.Handler
	Submit   func(*sched.Request) error
	Watchdog *watchdog.Watchdog
}

// ErrMismatch means the state does not fit this process's configuration
// (a device it does not serve, a watchdog it does not drive).
var ErrMismatch = errors.New("handover: state does not match this configuration")

// Restore imports st into p: the first interface's state and every open
// file of its devices (its /dev/ipmiN and the watchdog device), the message
// handler (started from the state instead of its start-up sequence), and
// the watchdog. It returns, per device name, what its CUSE server resumes
// with. When st has no handler state, the caller starts the handler as
// usual. Further interfaces' devices (st.More) are left to
// RestoreInterface.
func Restore(st *state.State, p Parts) (map[string]cuse.Resume, error) {
	if st.IPMI != nil && p.IPMI != nil {
		if err := p.IPMI.ImportState(*st.IPMI); err != nil {
			return nil, fmt.Errorf("handover: %w", err)
		}
	}
	var wdFile cuse.File
	if st.Watchdog != nil && p.Watchdog != nil {
		f, err := p.Watchdog.ImportState(*st.Watchdog)
		if err != nil {
			return nil, fmt.Errorf("handover: %w", err)
		}
		wdFile = f
	}
	out := make(map[string]cuse.Resume, len(st.Devices))
	for _, d := range st.Devices {
		if st.Interface(d.Name) != nil {
			continue
		}
		r, err := restoreFiles(d, p.IPMI, wdFile)
		if err != nil {
			return nil, err
		}
		out[d.Name] = r
	}
	if st.Handler != nil && p.Handler != nil && p.IPMI != nil {
		if err := p.Handler.Resume(p.Submit, p.IPMI, *st.Handler); err != nil {
			return nil, fmt.Errorf("handover: %w", err)
		}
	}
	return out, nil
}

// RestoreInterface imports the state of the further interface whose
// device is named device (an entry of st.More) into p (its IPMI device,
// message handler and engine's Submit; p.Watchdog is not used) and returns
// what the device's CUSE server resumes with. ok is false when st has no
// such interface; then the caller starts p's handler as usual and serves
// the device anew. With no handler state in the entry, the caller starts
// the handler too (handlerResumed is false).
func RestoreInterface(st *state.State, device string, p Parts) (r cuse.Resume, ok, handlerResumed bool, err error) {
	mi := st.Interface(device)
	if mi == nil {
		return cuse.Resume{}, false, false, nil
	}
	if p.IPMI == nil {
		return cuse.Resume{}, false, false, fmt.Errorf("%w: device %s without an IPMI device", ErrMismatch, device)
	}
	if err := p.IPMI.ImportState(mi.IPMI); err != nil {
		return cuse.Resume{}, false, false, fmt.Errorf("handover: %s: %w", device, err)
	}
	for _, d := range st.Devices {
		if d.Name == device {
			if r, err = restoreFiles(d, p.IPMI, nil); err != nil {
				return cuse.Resume{}, false, false, err
			}
		}
	}
	if mi.Handler != nil && p.Handler != nil {
		if err := p.Handler.Resume(p.Submit, p.IPMI, *mi.Handler); err != nil {
			return cuse.Resume{}, false, false, fmt.Errorf("handover: %s: %w", device, err)
		}
		handlerResumed = true
	}
	return r, true, handlerResumed, nil
}

// restoreFiles rebuilds device d's open files: on an IPMI device from ipmi,
// on the watchdog device wdFile.
func restoreFiles(d state.Device, ipmi *ioctl.Device, wdFile cuse.File) (cuse.Resume, error) {
	r := cuse.Resume{NextFh: d.LastFh, Requests: d.Requests}
	for _, sf := range d.Files {
		rec := cuse.FileRecord{Fh: sf.Fh, Flags: sf.Flags, Kh: sf.Kh}
		switch d.Kind {
		case state.KindIPMI:
			if ipmi == nil {
				return cuse.Resume{}, fmt.Errorf("%w: device %s", ErrMismatch, d.Name)
			}
			f, err := ipmi.RestoreFile(*sf.IPMI)
			if err != nil {
				return cuse.Resume{}, fmt.Errorf("handover: %s file %d: %w", d.Name, sf.Fh, err)
			}
			rec.File = f
		case state.KindWatchdog:
			if wdFile == nil {
				return cuse.Resume{}, fmt.Errorf("%w: watchdog device %s has an open file and this process has no watchdog", ErrMismatch, d.Name)
			}
			rec.File = wdFile
		}
		r.Files = append(r.Files, rec)
	}
	return r, nil
}

// Patter runs a Watchdog's built-in patter (Run) so that a hand-over can
// stop it without stopping the BMC timer, and a rollback start it again.
type Patter struct {
	w    *watchdog.Watchdog
	log  *slog.Logger
	mu   sync.Mutex
	stop context.CancelCauseFunc
	done chan error
}

// NewPatter returns a stopped Patter for w.
func NewPatter(w *watchdog.Watchdog, log *slog.Logger) *Patter {
	if log == nil {
		log = slog.Default()
	}
	return &Patter{w: w, log: log}
}

// Start runs the patter (again) if it is not running.
func (p *Patter) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop != nil {
		return
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	p.stop, p.done = cancel, done
	go func() { done <- p.w.Run(ctx) }()
}

// Stop stops the patter with cause (watchdog.ErrHandover leaves the BMC
// timer running; anything else stops it unless nowayout) and returns Run's
// error.
func (p *Patter) Stop(cause error) error {
	p.mu.Lock()
	stop, done := p.stop, p.done
	p.stop, p.done = nil, nil
	p.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop(cause)
	err := <-done
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
