package sysif

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bt"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
	"github.com/ipmi-cuse/ipmi-cuse/ssif"
)

// Options say how to open interfaces.
type Options struct {
	// PortIO is how KCS and BT registers are reached: "ioport" (in/out
	// instructions after iopl) or "devport" (/dev/port).
	PortIO string
	// DevPort, with PortIO "devport", is an open /dev/port to use instead
	// of opening it (a process that took over from another inherits it,
	// and may lack the capability to open it).
	DevPort *os.File
	// I2C, for an SSIF interface, is an open /dev/i2c-N to use instead of
	// opening one (inherited by a process that took over from another,
	// which may lack the privilege to open it); its bus is the interface's.
	I2C *os.File
	// KCS and BT configure the host state machines.
	KCS  kcs.Config
	BT   bt.Config
	SSIF ssif.Config
	// Logger receives the transports' debug lines.
	Logger *slog.Logger
}

// Opened is an interface ready for an engine.
type Opened struct {
	Interface Interface
	// Transport is what the engine drives.
	Transport sched.Transport
	// Attention is a cheap check of the BMC's attention flag (SMS_ATN) for
	// sched.Config.Attention, or nil when the interface has none.
	Attention func() (bool, error)
	// KCS, BT or SSIF is the host behind Transport (the others are nil),
	// for their counters.
	KCS  *kcs.Host
	BT   *bt.Host
	SSIF *ssif.Host
	// Files are the open descriptors behind the interface (/dev/port,
	// /dev/i2c-N), for a hand-over to a successor process; empty with in/out
	// instructions.
	Files []*os.File
	// What describes the interface for the start-up log line.
	What string

	close func() error
}

// Close releases the interface's descriptors.
func (o *Opened) Close() error {
	if o.close == nil {
		return nil
	}
	return o.close()
}

// Open opens the interface: its registers or bus (checking that something
// answers), and for BT and SSIF the BMC's capabilities. For an SSIF BMC on
// an unknown bus it tries every I2C adapter with Get Device ID, as
// ipmi_ssif does.
func Open(i Interface, o Options) (*Opened, error) {
	switch i.Kind {
	case KCS:
		return openKCS(i, o)
	case BT:
		return openBT(i, o)
	case SSIF:
		return openSSIF(i, o)
	}
	return nil, fmt.Errorf("%s: not supported", i)
}

func portIOHint(err error) error {
	if errors.Is(err, syscall.EPERM) {
		return fmt.Errorf("%w (iopl needs root or CAP_SYS_RAWIO; --port-io devport uses /dev/port instead)", err)
	}
	return err
}

func openKCS(i Interface, o Options) (*Opened, error) {
	cfg := kcs.IOConfig{Base: i.Base, Spacing: i.Spacing}
	var p *kcs.IOPort
	var err error
	switch {
	case o.PortIO == "devport" && o.DevPort != nil:
		p, err = kcs.DevPortFromFile(o.DevPort, cfg)
	case o.PortIO == "devport":
		p, err = kcs.OpenDevPort(cfg)
	default:
		p, err = kcs.OpenArchPort(cfg)
		err = portIOHint(err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening KCS ports at %#x: %w", i.Base, err)
	}
	// The access right to I/O ports belongs to one OS thread (iopl): check
	// the interface from a locked thread bound to the ports. The engine's
	// goroutine binds its own thread later.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := p.BindThread(); err != nil {
		p.Close()
		return nil, err
	}
	status, err := p.ReadStatus()
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("reading KCS status at %#x: %w", i.Base+i.Spacing, err)
	}
	if kcs.Status(status) == kcs.NoInterface {
		p.Close()
		return nil, fmt.Errorf("no KCS interface answers at %#x (status reads 0xff; from %s)", i.Base, i.Source)
	}
	kc := o.KCS
	kc.Logger = o.Logger
	host := kcs.New(p, kc)
	op := &Opened{Interface: i, Transport: host, Attention: host.Attention, KCS: host,
		What: fmt.Sprintf("%s (%s, %s)", i, i.Source, o.PortIO), close: p.Close}
	if f := p.File(); f != nil {
		op.Files = []*os.File{f}
	}
	return op, nil
}

func openBT(i Interface, o Options) (*Opened, error) {
	cfg := bt.IOConfig{Base: i.Base, Spacing: i.Spacing}
	var p *bt.IOPort
	if o.PortIO == "devport" {
		rw, err := kcs.OpenDevPortAccess()
		if o.DevPort != nil {
			rw, err = kcs.DevPortAccessFromFile(o.DevPort), nil
		}
		if err != nil {
			return nil, fmt.Errorf("opening BT ports at %#x: %w", i.Base, err)
		}
		if p, err = bt.NewIOPort(rw, cfg, nil); err != nil {
			rw.Close()
			return nil, err
		}
	} else {
		rw, bind, err := kcs.OpenArchAccess()
		if err != nil {
			return nil, fmt.Errorf("opening BT ports at %#x: %w", i.Base, portIOHint(err))
		}
		if p, err = bt.NewIOPort(rw, cfg, bind); err != nil {
			return nil, err
		}
	}
	bc := o.BT
	bc.Logger = o.Logger
	host := bt.New(p, bc)
	caps, err := host.Init(time.Now().Add(host.Config().TransactionTimeout))
	if errors.Is(err, bt.ErrNoInterface) {
		p.Close()
		return nil, fmt.Errorf("no BT interface answers at %#x (registers read 0xff; from %s)", i.Base, i.Source)
	}
	if err != nil {
		var op *bt.OpError
		if !errors.As(err, &op) || op.Phase == bt.PhaseStart && !op.Timeout() {
			p.Close()
			return nil, fmt.Errorf("BT interface at %#x: %w", i.Base, err)
		}
		if o.Logger != nil {
			o.Logger.Warn("BT: Get BT Interface Capabilities failed; using the default limits", "err", err)
		}
	}
	op := &Opened{Interface: i, Transport: host, Attention: host.Attention, BT: host,
		What: fmt.Sprintf("%s (%s, %s; buffers %d/%d bytes, response time %v, %d retries)",
			i, i.Source, o.PortIO, caps.InputSize, caps.OutputSize, caps.ResponseTime, caps.Retries),
		close: p.Close}
	if f := p.File(); f != nil {
		op.Files = []*os.File{f}
	}
	return op, nil
}
