package main

import (
	"context"
	"log/slog"
	"net"
	"os"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/internal/buildinfo"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/metrics"
	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
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
func startMetrics(ctx context.Context, addr string, inherited *os.File, engine *sched.Engine, host *kcs.Host, handler *msghandler.Handler,
	wd *watchdog.Watchdog, servers []*cuse.Server, names []string, log *slog.Logger) (wait func(), lnFile *os.File, err error) {
	if addr == "" {
		return func() {}, nil, nil
	}
	src := metrics.Sources{Engine: engine, Handler: handler, Devices: map[string]metrics.DeviceSource{}}
	if host != nil {
		src.KCS = host
	}
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
