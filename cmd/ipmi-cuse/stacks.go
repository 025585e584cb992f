package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/handover"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
	"github.com/ipmi-cuse/ipmi-cuse/sysif"
)

// bmcStack serves one more BMC interface beside the first: its own
// engine (queues, priority lane, health), message handler and /dev/ipmiN.
// The first interface is served by run itself, with the watchdog and the
// metrics; an upgrade and systemd's store carry every interface.
type bmcStack struct {
	bmc  *sysif.Opened
	name string // device name, ipmiN
	// devPort is the /dev/port it was given (upgrade or store), or nil.
	devPort *os.File
	// resume is how its device resumes after an upgrade (taken is true).
	resume cuse.Resume
	taken  bool
	// unkeep closes what keepDevPort opened.
	unkeep  func()
	engine  *sched.Engine
	handler *msghandler.Handler
	dev     *ioctl.Device
	srv     *cuse.Server
	id      deviceID
	// devA is dev for the engine goroutine (flagsWanted), set once built.
	devA atomic.Pointer[ioctl.Device]
}

// startMoreStacks opens the further interfaces discovery found and starts
// a stack for each that answers Get Device ID, named ipmi1, ipmi2... in
// the kernel's order over those that answer. One that fails is left out
// with an error in the log, as the kernel registers only the interfaces
// that answer. After an upgrade (tk) each stack takes over its device's
// state and hardware; after a crash (sd) its hardware and channel come
// from systemd's store. The error is a state that cannot be restored.
func startMoreStacks(ctx context.Context, o options, log *slog.Logger, rest []sysif.Interface, gid int,
	tk *takeover, sd *stored) ([]*bmcStack, error) {
	var stacks []*bmcStack
	for _, i := range rest {
		// The name it gets if it answers.
		name := "ipmi" + strconv.Itoa(len(stacks)+1)
		devPort := tk.hardware(stackHardware(name, hwDevPort))
		if devPort == nil {
			devPort = sd.hardware(stackHardware(name, hwDevPort))
		}
		so := o
		if devPort != nil {
			// As for the first interface: a successor without
			// capabilities reaches the ports through this /dev/port.
			so.portIO = "devport"
		}
		sop := sysifOptions(so, log, devPort)
		if i.Kind == sysif.SSIF {
			sop.I2C = inheritedI2C(tk, sd, stackHardware(name, ""), i.Addr)
		}
		b, err := sysif.Open(i, sop)
		if err != nil {
			log.Error("not serving an interface", "interface", i.String(), "err", err)
			continue
		}
		s, err := startStack(ctx, o, log, b, !tk.hasInterface(name))
		if err != nil {
			b.Close()
			log.Error("not serving an interface", "interface", i.String(), "err", err)
			continue
		}
		s.devPort = devPort
		s.unkeep = keepDevPort(b, so.portIO, log)
		if _, _, held := tk.channel(name, nil); !held && sd.channel(name) == nil {
			if err := checkNoKernelDriver(name); err != nil {
				s.stop(o, log)
				log.Error("not serving an interface", "interface", i.String(), "err", err)
				continue
			}
		}
		s.serve(o, log, name, gid)
		stacks = append(stacks, s)
		if err := tk.restoreStack(s); err != nil {
			return stacks, err
		}
	}
	return stacks, nil
}

// stackHardware names a further interface's hardware descriptor in a
// hand-over and in systemd's store ("ipmi1.devport"; no ':', which FDNAME=
// does not allow).
func stackHardware(device, name string) string { return device + "." + name }

// hardware is the stack's hardware descriptors for a hand-over, named
// after its device. keepDevPort must have run (with --port-io ioport it
// adds the /dev/port a successor without capabilities needs).
func (s *bmcStack) hardware() []handover.Hardware {
	hw := hardwareOf(s.bmc, s.devPort)
	for i := range hw {
		hw[i].Name = stackHardware(s.name, hw[i].Name)
	}
	return hw
}

// handover is the stack as an upgrade carries it.
func (s *bmcStack) handover() handover.Interface {
	return handover.Interface{Device: s.name, Engine: s.engine, IPMI: s.dev, Handler: s.handler}
}

// startStack builds the engine and the message handler of one opened
// interface and asks the BMC for its device ID, as ipmi_si does before it
// registers an interface. It starts the handler unless startHandler is
// false (an upgrade resumes it from the state). On error it releases what
// it built but the interface.
func startStack(ctx context.Context, o options, log *slog.Logger, bmc *sysif.Opened, startHandler bool) (*bmcStack, error) {
	s := &bmcStack{bmc: bmc}
	log = log.With("bmc", bmc.Interface.String())
	s.handler = msghandler.New(msghandler.Config{
		Logger: log,
		OnPretimeout: func() {
			log.Error("BMC watchdog pretimeout on a BMC the watchdog does not drive: someone else armed its watchdog and nobody patted it in time")
		},
	})
	ecfg := sched.Config{
		ProbeInterval: o.probeInterval,
		Logger:        log,
		OnAttention:   s.handler.HandleAttention,
	}
	if bmc.Attention != nil {
		ecfg.Attention = msghandler.AttentionCheck(attentionFunc(bmc.Attention))
	}
	if bmc.SSIF != nil {
		due := ecfg.Attention
		ecfg.Attention = func() bool { return due() && flagsWanted(false, s.handler, s.devA.Load()) }
	}
	s.engine = sched.New(bmc.Transport, ecfg)
	var err error
	s.id, err = getDeviceID(ctx, s.engine, o.kcsTxTimeout+time.Second)
	if err != nil {
		s.engine.Close()
		return nil, fmt.Errorf("the BMC (%s) does not answer Get Device ID: %w", bmc.What, err)
	}
	s.dev = ioctl.NewDevice(ioctl.Config{
		Submit:                   s.engine.Submit,
		Logger:                   log,
		PriorityWatchdogCommands: o.priorityWatchdog,
		RequestTimeout:           o.requestTimeout,
		Bridge:                   s.handler,
	})
	s.devA.Store(s.dev)
	if !startHandler {
		return s, nil
	}
	if err := s.handler.Start(ctx, s.engine.Submit, s.dev); err != nil {
		log.Warn("message handler start-up incomplete: IPMB/LAN bridging or events may be unavailable", "err", err)
	}
	return s, nil
}

// serve gives the stack its device node, /dev/name.
func (s *bmcStack) serve(o options, log *slog.Logger, name string, gid int) {
	s.name = name
	s.srv = cuse.New(cuse.Config{
		DevName: name,
		Mode:    os.FileMode(o.deviceMode),
		UID:     -1,
		GID:     gid,
		Logger:  log.With("device", name),
		// /dev/ipmiN's ioctls only queue requests and dequeue replies.
		InlineIoctl: true,
	}, s.dev)
}

// stop closes the message handler, lets the engine complete what is left
// and releases the interface.
func (s *bmcStack) stop(o options, log *slog.Logger) {
	s.handler.Close()
	sctx, cancel := context.WithTimeout(context.Background(), o.kcsTxTimeout+time.Second)
	defer cancel()
	if err := s.engine.Shutdown(sctx); err != nil {
		log.Warn("engine shutdown", "device", s.name, "err", err)
	}
	if err := s.bmc.Close(); err != nil {
		log.Warn("closing the interface", "device", s.name, "err", err)
	}
	if s.unkeep != nil {
		s.unkeep()
	}
}

// counters are the stack's engine and transport counters for the last
// log line.
func (s *bmcStack) counters() []any {
	es := s.engine.Stats()
	args := []any{"device", s.name, "completed_normal", es.CompletedNormal, "completed_priority", es.CompletedPriority,
		"expired_in_queue", es.Expired, "failed_fast", es.FailedFast, "probes", es.Probes}
	if h := s.bmc.KCS; h != nil {
		ks := h.Stats()
		args = append(args, "kcs_transactions", ks.Transactions, "kcs_failures", ks.Failures)
	}
	if h := s.bmc.BT; h != nil {
		bs := h.Stats()
		args = append(args, "bt_transactions", bs.Transactions, "bt_failures", bs.Failures)
	}
	if h := s.bmc.SSIF; h != nil {
		ss := h.Stats()
		args = append(args, "ssif_transactions", ss.Transactions, "ssif_failures", ss.Failures)
	}
	return args
}

// firstAnswering opens cands in order and starts an engine (newEngine) on
// each until one's BMC answers Get Device ID; it returns that interface,
// its engine and device ID, and the candidates after it. One that cannot
// be opened or does not answer is closed and left out with an error in the
// log, and the next takes its number: the kernel registers an interface
// only once its BMC answers (ipmi_si's try_smi_init: "Interface detection
// failed" or "There appears to be no BMC at this location"; ipmi_ssif's
// probe likewise), and ipmi_msghandler numbers /dev/ipmiN over the
// interfaces registered. When none answers, the error names each.
func firstAnswering(ctx context.Context, log *slog.Logger, cands []sysif.Interface, open func(sysif.Interface) (*sysif.Opened, error),
	newEngine func(*sysif.Opened) *sched.Engine, timeout time.Duration) (*sysif.Opened, *sched.Engine, deviceID, []sysif.Interface, error) {
	var errs []error
	for n, i := range cands {
		bmc, err := open(i)
		if err == nil {
			engine := newEngine(bmc)
			var id deviceID
			if id, err = getDeviceID(ctx, engine, timeout); err == nil {
				return bmc, engine, id, cands[n+1:], nil
			}
			err = fmt.Errorf("the BMC (%s) does not answer Get Device ID: %w", bmc.What, err)
			engine.Close()
			bmc.Close()
		}
		if ctx.Err() != nil {
			return nil, nil, deviceID{}, nil, err
		}
		errs = append(errs, err)
		if n+1 < len(cands) {
			log.Error("not serving an interface whose BMC does not answer; the next one takes its number, as with the kernel's ipmi_si and ipmi_ssif",
				"interface", i.String(), "err", err)
		}
	}
	if len(errs) == 1 {
		return nil, nil, deviceID{}, nil, errs[0]
	}
	return nil, nil, deviceID{}, nil, fmt.Errorf("no BMC answers on any of the %d interfaces found: %w", len(cands), errors.Join(errs...))
}
