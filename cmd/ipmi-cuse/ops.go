package main

import (
	"context"
	"log/slog"
	"net"
	"os"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/internal/buildinfo"
	"github.com/ipmi-cuse/ipmi-cuse/metrics"
	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
	"github.com/ipmi-cuse/ipmi-cuse/sysif"
	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

// startMetrics opens the metrics listener (during set-up, before any
// privilege drop) and serves the daemon's metrics on it until ctx ends;
// the returned function waits for the server to stop. With no address it
// does nothing.
//
// inherited, if not nil, is the listening socket a previous process handed
// over at an upgrade (it still listens on addr); the returned file is the
// listener's, to hand over at the next one (nil without a listener).
func startMetrics(ctx context.Context, addr string, inherited *os.File, ifaces []metrics.Interface,
	wd *watchdog.Watchdog, servers []*cuse.Server, names []string, log *slog.Logger) (wait func(), lnFile *os.File, err error) {
	if addr == "" {
		return func() {}, nil, nil
	}
	src := metrics.Sources{Interfaces: ifaces, Devices: map[string]metrics.DeviceSource{}}
	if wd != nil {
		src.Watchdog = wd
	}
	for i, srv := range servers {
		src.Devices[names[i]] = srv
	}
	var ln net.Listener
	if inherited != nil {
		ln, err = net.FileListener(inherited)
		inherited.Close() // FileListener made its own copy
	} else {
		ln, err = metrics.Listen(addr)
	}
	if err != nil {
		return nil, nil, err
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		// The socket's path must outlive this process when the next one
		// takes the listener over (Listen replaces a stale one at start).
		ul.SetUnlinkOnClose(false)
	}
	if fl, ok := ln.(interface{ File() (*os.File, error) }); ok {
		if lnFile, err = fl.File(); err != nil {
			log.Warn("metrics listener cannot be handed over at an upgrade", "err", err)
			lnFile = nil
		}
	}
	reg := metrics.Registry(metrics.New(src), buildinfo.Read())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := metrics.Serve(ctx, ln, reg, log); err != nil {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("serving metrics", "address", addr)
	return func() { <-done }, lnFile, nil
}

// metricsInterface describes one served interface for the metrics: its
// device name, engine, message handler and whichever host drives it.
func metricsInterface(device string, bmc *sysif.Opened, engine *sched.Engine, handler *msghandler.Handler) metrics.Interface {
	mi := metrics.Interface{Device: device, Engine: engine, Handler: handler}
	// A nil host must stay a nil interface value, or the collector would
	// call it.
	if bmc.KCS != nil {
		mi.KCS = bmc.KCS
	}
	if bmc.BT != nil {
		mi.BT = bmc.BT
	}
	if bmc.SSIF != nil {
		mi.SSIF = bmc.SSIF
	}
	return mi
}
