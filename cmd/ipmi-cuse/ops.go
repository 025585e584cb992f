package main

import (
	"context"
	"log/slog"

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
func startMetrics(ctx context.Context, addr string, engine *sched.Engine, host *kcs.Host, handler *msghandler.Handler,
	wd *watchdog.Watchdog, servers []*cuse.Server, names []string, log *slog.Logger) (wait func(), err error) {
	if addr == "" {
		return func() {}, nil
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
	ln, err := metrics.Listen(addr)
	if err != nil {
		return nil, err
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
	return func() { <-done }, nil
}
