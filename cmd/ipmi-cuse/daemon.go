package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/fdstore"
	"github.com/ipmi-cuse/ipmi-cuse/handover"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/metrics"
	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
	"github.com/ipmi-cuse/ipmi-cuse/state"
	"github.com/ipmi-cuse/ipmi-cuse/sysif"
	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

// startupOwner is the engine owner of the daemon's own start-up requests;
// it is below ioctl.OwnerBase and distinct from watchdog.DefaultOwner.
const startupOwner sched.Owner = 1

// run serves the devices until ctx is cancelled, then shuts down in order:
// the devices stop taking requests, the built-in watchdog stops the BMC
// timer (unless --watchdog-nowayout), and the engine completes what is left.
func run(ctx context.Context, o options, log *slog.Logger) (err error) {
	// Started by an upgrade: the previous process waits for our answer
	// and serves on if we fail; tell it why.
	tk, err := takeOver(log)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tk.refuse(err)
		}
	}()
	gid, err := lookupGroup(o.deviceGroup)
	if err != nil {
		return err
	}
	// Restarted by systemd after a crash: the devices still exist, held
	// by the descriptors it kept for us.
	var sd *stored
	if tk == nil {
		sd = fromStore(log)
	}
	if tk == nil && sd.channel(o.device) == nil {
		if err := checkNoKernelDriver(o.device); err != nil {
			return err
		}
	}
	devPort := tk.hardware(hwDevPort)
	if devPort == nil {
		devPort = sd.hardware(hwDevPort)
	}
	if devPort != nil && o.portIO == "ioport" {
		// The previous process dropped its capabilities, and so do we:
		// iopl would be refused. Its /dev/port serves instead (see the
		// package doc, Least privilege).
		o.portIO = "devport"
	}
	cands, serveAll, err := bmcCandidates(o)
	if err != nil {
		return err
	}
	// The watchdog is created once the engine runs, but a pretimeout can
	// be seen by the attention handler (on the engine goroutine) at any
	// time: hand it over through an atomic pointer.
	var wdPtr atomic.Pointer[watchdog.Watchdog]
	handler := msghandler.New(msghandler.Config{
		Logger: log,
		OnPretimeout: func() {
			if wd := wdPtr.Load(); wd != nil {
				wd.Pretimeout()
				return
			}
			log.Error("BMC watchdog pretimeout: the BMC watchdog is armed by someone else and nobody patted it in time")
		},
	})
	// devPtr is the device for the engine goroutine, once built.
	var devPtr atomic.Pointer[ioctl.Device]
	newEngine := func(bmc *sysif.Opened) *sched.Engine {
		ecfg := sched.Config{
			ProbeInterval: o.probeInterval,
			InlineMax:     o.inlineMax,
			Logger:        log,
			OnAttention:   handler.HandleAttention,
		}
		if bmc.Attention != nil {
			ecfg.Attention = msghandler.AttentionCheck(attentionFunc(bmc.Attention))
		}
		if bmc.SSIF != nil {
			// SSIF has no attention bit: its check is a timer. Like
			// ipmi_ssif, read the flags only while something waits for
			// what they announce, as each read costs a slow bus
			// transaction.
			due := ecfg.Attention
			ecfg.Attention = func() bool {
				return due() && flagsWanted(wdPtr.Load() != nil, handler, devPtr.Load())
			}
		}
		return sched.New(bmc.Transport, ecfg)
	}
	open := func(i sysif.Interface) (*sysif.Opened, error) {
		if o.bmc == "sim" {
			return openSim(o, log), nil
		}
		so := sysifOptions(o, log, devPort)
		if i.Kind == sysif.SSIF {
			so.I2C = inheritedI2C(tk, sd, "", i.Addr)
		}
		return sysif.Open(i, so)
	}
	// The first interface whose BMC answers is /dev/ipmi0 (or --device);
	// with several, the ones after it are served too (startMoreStacks).
	bmc, engine, id, rest, err := firstAnswering(ctx, log, cands, open, newEngine, o.kcsTxTimeout+time.Second)
	if err != nil {
		return err
	}
	if !serveAll {
		rest = nil
	}
	defer bmc.Close()
	defer keepDevPort(bmc, o.portIO, log)()
	what := bmc.What
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), o.kcsTxTimeout+time.Second)
		defer cancel()
		if err := engine.Shutdown(sctx); err != nil {
			log.Warn("engine shutdown", "err", err)
		}
	}()

	// The CUSE reader answers ioctls inline (InlineIoctl below); when the
	// ports can be reached from any thread (KCS; see kcs.Host.AnyThread),
	// it also runs a request's transaction itself while the engine is idle
	// (sched.ServeInline).
	anyThread := bmc.KCS != nil && bmc.KCS.AnyThread()
	var inline func(*sched.Request) bool
	if anyThread {
		inline = engine.ServeInline
	}
	dev := ioctl.NewDevice(ioctl.Config{
		Submit:                   engine.Submit,
		Inline:                   inline,
		Logger:                   log,
		PriorityWatchdogCommands: o.priorityWatchdog,
		RequestTimeout:           o.requestTimeout,
		Bridge:                   handler,
	})
	devPtr.Store(dev)
	var up *upgrader // set once serving; SIGHUP upgrades through it
	var wd *watchdog.Watchdog
	if o.watchdog || o.watchdogDevice != "" {
		crash, closeSysrq, sysrqErr := openSysrqPanic(o.watchdogParams.preOp, log)
		if sysrqErr != nil {
			return sysrqErr
		}
		defer closeSysrq()
		wd, err = watchdog.New(watchdog.Config{
			Submit:         engine.Submit,
			Timeout:        o.watchdogTimeout,
			Pretimeout:     o.watchdogPretimeout,
			Action:         o.watchdogAction,
			PreAction:      o.watchdogPreAction,
			NoWayOut:       o.watchdogNoWayOut,
			IPMI10:         id.ipmiVersion < 0x15,
			Healthy:        func() bool { return engine.Stats().Healthy },
			PretimeoutExec: o.watchdogExec,
			Logger:         log,
			StartNow:       o.watchdogParams.startNow,
			PreOp:          o.watchdogParams.preOp,
			Panic:          crash,
			PanicTimeout:   o.watchdogParams.panicTimeout,
			GenericAPI:     o.watchdogParams.genericAPI,
		})
		if err != nil {
			return fmt.Errorf("watchdog: %w", err)
		}
		defer wd.Close()
		wdPtr.Store(wd)
		// As ipmi_watchdog's registration: stop the timer the firmware may
		// have left armed, or start it (start_now), before the device
		// exists. Its answer is logged, not fatal, as in the kernel. Not
		// when taking over from another process (an upgrade, or a restart
		// with the devices kept in systemd's store): the timer is the one
		// it armed, and a restart never disarms it.
		if tk == nil && sd.channel(o.device) == nil {
			if err := wd.Register(ctx); err != nil {
				log.Warn("watchdog: start-up Set Watchdog Timer failed", "err", err)
			}
		}
		defer func() {
			if up != nil && up.handedOver() {
				return // the new process drives the timer now
			}
			lctx, cancel := context.WithTimeout(context.Background(), o.kcsTxTimeout+time.Second)
			defer cancel()
			if err := wd.Leave(lctx); err != nil {
				log.Warn("watchdog: re-arming with the panic timeout failed", "err", err)
			}
		}()
	}
	resumes, err := tk.restore(handover.Parts{IPMI: dev, Handler: handler, Submit: engine.Submit, Watchdog: wd})
	if err != nil {
		return err
	}
	if !tk.handlerResumed() {
		// As ipmi_si and ipmi_msghandler do at registration: enable the
		// event message buffer, clear a stale pretimeout flag, scan the
		// channels. A failed step leaves that feature off (logged), not
		// the device.
		if err := handler.Start(ctx, engine.Submit, dev); err != nil {
			log.Warn("message handler start-up incomplete: IPMB/LAN bridging or events may be unavailable", "err", err)
		}
	}
	defer handler.Close()
	devices := []handover.Device{{Name: o.device, Kind: state.KindIPMI, Server: cuse.New(cuse.Config{
		DevName: o.device,
		Mode:    os.FileMode(o.deviceMode),
		UID:     -1,
		GID:     gid,
		Logger:  log,
		// /dev/ipmi0's ioctls only queue requests and dequeue replies.
		InlineIoctl: true,
	}, dev)}}
	if o.watchdogDevice != "" {
		devices = append(devices, handover.Device{Name: o.watchdogDevice, Kind: state.KindWatchdog,
			Server: cuse.New(cuse.Config{DevName: o.watchdogDevice, UID: -1, GID: -1, Logger: log}, wd)})
	}
	servers := make([]*cuse.Server, len(devices))
	for i, d := range devices {
		servers[i] = d.Server
	}
	// Further interfaces, each with its own stack, as /dev/ipmi1...; an
	// upgrade and systemd's store carry them like the first.
	more, err := startMoreStacks(ctx, o, log, rest, gid, tk, sd)
	defer func() {
		for i := len(more) - 1; i >= 0; i-- {
			more[i].stop(o, log)
		}
	}()
	if err != nil {
		return err
	}
	allServers := append([]*cuse.Server(nil), servers...)
	for _, m := range more {
		allServers = append(allServers, m.srv)
		devices = append(devices, handover.Device{Name: m.name, Kind: state.KindIPMI, Server: m.srv})
		if m.taken {
			resumes[m.name] = m.resume
		}
	}
	if err := tk.check(devices); err != nil {
		return err
	}

	// The built-in patter runs on its own: it must stop the BMC timer
	// while the engine still runs, after the devices are gone, and an
	// upgrade stops it without stopping the timer.
	var patter *handover.Patter
	if o.watchdog {
		patter = handover.NewPatter(wd, log)
		patter.Start()
	}

	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	names := []string{o.device, o.watchdogDevice}[:len(servers)]
	metricsIn := tk.hardware(hwMetrics)
	if metricsIn == nil {
		metricsIn = sd.hardware(hwMetrics)
	}
	// Every interface has its series, labelled with its device.
	ifaces := []metrics.Interface{metricsInterface(o.device, bmc, engine, handler)}
	metricsServers, metricsNames := servers, names
	for _, m := range more {
		ifaces = append(ifaces, metricsInterface(m.name, m.bmc, m.engine, m.handler))
		metricsServers = append(metricsServers[:len(metricsServers):len(metricsServers)], m.srv)
		metricsNames = append(metricsNames[:len(metricsNames):len(metricsNames)], m.name)
	}
	waitMetrics, metricsFile, err := startMetrics(serveCtx, o.metricsAddress, metricsIn, ifaces, wd, metricsServers, metricsNames, log)
	if err != nil {
		return err
	}
	// The metrics server stops with serveCtx: end it first, or after a
	// hand-over (which leaves ctx alive) the old process would wait here
	// for good instead of exiting.
	defer func() {
		stopServing()
		waitMetrics()
	}()
	errs := make(chan error, len(allServers))
	var wg sync.WaitGroup
	for _, d := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if ch, r, ok := tk.channel(d.Name, resumes); ok {
				err = d.Server.ServeResumed(serveCtx, ch, r)
			} else if ch := sd.channel(d.Name); ch != nil {
				// The previous process died: adopt its files, and have
				// the kernel send again what it had read (6.9+).
				err = d.Server.ServeResumed(serveCtx, ch, cuse.Resume{Resend: true})
			} else {
				err = d.Server.Serve(serveCtx)
			}
			if err != nil && channelDead(err) {
				if _, rerr := fdstore.Remove(storeChannel + d.Name); rerr != nil {
					log.Warn("FDSTOREREMOVE", "device", d.Name, "err", rerr)
				}
			}
			if err != nil {
				errs <- fmt.Errorf("serving %s: %w", d.Server.DevPath(), err)
				stopServing() // one device failing takes the daemon down
			}
		}()
	}
	hw := hardwareOf(bmc, devPort)
	var moreIfaces []handover.Interface
	for _, m := range more {
		hw = append(hw, m.hardware()...)
		moreIfaces = append(moreIfaces, m.handover())
	}
	sd.dropUnused(devices, hw)
	if metricsFile != nil {
		// The next process serves metrics on the same socket.
		hw = append(hw, handover.Hardware{Name: hwMetrics, File: metricsFile})
	}
	// A clean stop (SIGTERM) takes the descriptors out of the store first,
	// so the devices go when this process closes its channels.
	stopStore := context.AfterFunc(ctx, func() {
		notify(log, "STOPPING=1")
		removeDescriptors(log, devices, hw)
	})
	defer stopStore()
	up = &upgrader{o: o, log: log, d: &handover.Daemon{Devices: devices, Engine: engine, IPMI: dev, Handler: handler,
		More: moreIfaces, Watchdog: wd, Patter: patter, Hardware: hw, Logger: log}}
	defer up.listen(serveCtx)()
	ready := waitReady(serveCtx, allServers)
	if ready {
		// Set-up is over: CUSE_INIT, the nodes' mode and owner, port
		// access and the listeners are done. Nothing after this needs a
		// privilege, and a failed drop takes the daemon down (after an
		// upgrade, before it answers: the previous process serves on).
		if err := dropPrivileges(o, log); err != nil {
			stopServing()
			wg.Wait()
			return err
		}
		if err := tk.ready(); err != nil {
			log.Error("the previous process did not take our answer; stopping", "err", err)
			stopServing()
		}
		paths := make([]string, len(allServers))
		for i, srv := range allServers {
			paths[i] = srv.DevPath()
		}
		for _, m := range more {
			log.Info("ipmi-cuse serving a further interface", "device", m.srv.DevPath(), "bmc", m.bmc.What,
				"bmc_ipmi_version", fmt.Sprintf("%d.%d", m.id.ipmiVersion>>4, m.id.ipmiVersion&0xF))
		}
		if tk == nil {
			// The store keeps the channels (and the device) alive
			// through a crash; after an upgrade they are in it already,
			// and the previous process said READY=1 for us.
			storeDescriptors(log, devices, hw, sd)
			notify(log, "READY=1", fmt.Sprintf("STATUS=serving %v (%s)", paths, what))
		}
		go feedWatchdog(serveCtx, log, engine, o.kcsTxTimeout+time.Second, tk != nil)
		log.Info("ipmi-cuse serving", append([]any{"devices", paths, "bmc", what, "ports_any_thread", anyThread,
			"bmc_ipmi_version", fmt.Sprintf("%d.%d", id.ipmiVersion>>4, id.ipmiVersion&0xF),
			"priority_watchdog_commands", o.priorityWatchdog, "watchdog", o.watchdog,
			"watchdog_timeout", o.watchdogTimeout}, startupAttrs()...)...)
	}
	wg.Wait()
	close(errs)
	err = errors.Join(collect(errs)...)

	if up.handedOver() {
		// The new process serves the devices, the hardware and the BMC
		// timer: touch nothing more.
		log.Info("ipmi-cuse handed over to the new process; exiting")
		return nil
	}
	if patter != nil {
		if werr := patter.Stop(context.Canceled); werr != nil {
			log.Error("stopping the BMC watchdog", "err", werr)
		}
	}
	if err != nil {
		return err
	}
	es := engine.Stats()
	args := []any{"completed_normal", es.CompletedNormal, "completed_priority", es.CompletedPriority,
		"expired_in_queue", es.Expired, "failed_fast", es.FailedFast, "probes", es.Probes, "served_inline", es.Inline}
	if h := bmc.KCS; h != nil {
		ks := h.Stats()
		args = append(args, "kcs_transactions", ks.Transactions, "kcs_failures", ks.Failures, "kcs_recoveries", ks.Recoveries,
			"kcs_status_reads", ks.StatusReads, "kcs_sleeps", ks.Sleeps, "kcs_sleep_time", ks.SleepTime)
	}
	if h := bmc.BT; h != nil {
		bs := h.Stats()
		args = append(args, "bt_transactions", bs.Transactions, "bt_failures", bs.Failures, "bt_retries", bs.Retries,
			"bt_stale", bs.Stale, "bt_busy_refused", bs.BusyRefused, "bt_sleeps", bs.Sleeps)
	}
	if h := bmc.SSIF; h != nil {
		ss := h.Stats()
		args = append(args, "ssif_transactions", ss.Transactions, "ssif_failures", ss.Failures, "ssif_write_retries", ss.WriteRetries,
			"ssif_read_retries", ss.ReadRetries, "ssif_read_parts", ss.ReadParts, "ssif_multi_restarts", ss.MultiRestarts)
	}
	var cuseReqs, cuseNotifies uint64
	for _, srv := range servers {
		st := srv.Stats()
		cuseReqs += st.RequestsTotal()
		cuseNotifies += st.Notifications
	}
	args = append(args, "cuse_requests", cuseReqs, "cuse_notifies", cuseNotifies)
	log.Info("ipmi-cuse stopped cleanly", args...)
	for _, m := range more {
		log.Info("ipmi-cuse stopped cleanly", m.counters()...)
	}
	return nil
}

// flagsWanted reports whether anything waits for what the BMC's message
// flags announce: the watchdog's pretimeout, a bridged request's response,
// an event listener or a registered command (ipmi_ssif's "need watch").
func flagsWanted(watchdog bool, h *msghandler.Handler, d *ioctl.Device) bool {
	if watchdog || h.Outstanding() > 0 {
		return true
	}
	return d != nil && (d.EventListeners() > 0 || len(d.Registrations()) > 0)
}

// attentionFunc adapts a func to msghandler.AttentionCheck's argument.
type attentionFunc func() (bool, error)

func (f attentionFunc) Attention() (bool, error) { return f() }

// waitReady waits until every server has been accepted by the kernel, or
// ctx ends (a server failed or the daemon is stopping).
func waitReady(ctx context.Context, servers []*cuse.Server) bool {
	for _, srv := range servers {
		select {
		case <-srv.Ready():
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// collect drains a closed error channel.
func collect(errs <-chan error) []error {
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}

// deviceID is what the daemon needs from Get Device ID.
type deviceID struct {
	// ipmiVersion is major<<4 | minor (0x15 for IPMI 1.5, 0x20 for 2.0).
	ipmiVersion uint8
}

// getDeviceID asks the BMC for its device ID through the engine, as the
// kernel's ipmi_si does before it registers an interface: a BMC that does
// not answer is not served.
func getDeviceID(ctx context.Context, engine *sched.Engine, timeout time.Duration) (deviceID, error) {
	resp, err := transact(ctx, engine, []byte{0x06 << 2, 0x01}, timeout)
	if err != nil {
		return deviceID{}, err
	}
	if len(resp) < 3 || resp[2] != 0 {
		return deviceID{}, fmt.Errorf("response % x", resp)
	}
	if len(resp) < 3+5 {
		return deviceID{}, fmt.Errorf("response too short: % x", resp)
	}
	// Byte 5 of the data is the IPMI version, BCD with the major version in
	// the low nibble (0x02 = 2.0, 0x51 = 1.5).
	v := resp[3+4]
	return deviceID{ipmiVersion: (v&0x0F)<<4 | v>>4}, nil
}

// transact runs one request through the engine and waits for it.
func transact(ctx context.Context, engine *sched.Engine, msg []byte, timeout time.Duration) ([]byte, error) {
	done := make(chan *sched.Request, 1)
	r := &sched.Request{
		Owner:    startupOwner,
		Lane:     sched.LaneNormal,
		Deadline: time.Now().Add(timeout),
		Msg:      msg,
		Resp:     make([]byte, 0, 300),
		Done:     func(r *sched.Request) { done <- r },
	}
	if err := engine.Submit(r); err != nil {
		return nil, err
	}
	select {
	case r := <-done:
		return r.Resp, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
