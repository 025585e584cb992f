package main

// Crash survival through systemd's file descriptor store, and systemd's
// watchdog. The work is in packages fdstore (FDSTORE=1, LISTEN_FDS) and
// cuse (ServeResumed adopts the files the dead process had open); this
// file names the descriptors and decides when to store and remove them.

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/fdstore"
	"github.com/ipmi-cuse/ipmi-cuse/handover"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// Descriptor names in the store: "cuse-" + the device name for a CUSE
// channel, "hw-" + the hardware name for a hardware descriptor.
const (
	storeChannel  = "cuse-"
	storeHardware = "hw-"
)

// stored are the descriptors systemd gave back after a restart (nil when
// it gave none). Its methods work on nil.
type stored struct {
	files map[string][]*os.File
	log   *slog.Logger
}

// fromStore takes the descriptors systemd passed, if any.
func fromStore(log *slog.Logger) *stored {
	m := fdstore.Inherited()
	if len(m) == 0 {
		return nil
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	log.Info("restarted with descriptors from the service manager's store: resuming those devices", "names", names)
	return &stored{files: m, log: log}
}

func (s *stored) get(name string) *os.File {
	if s == nil || len(s.files[name]) == 0 {
		return nil
	}
	// A file stored twice under one name: the first is as good as any.
	return s.files[name][0]
}

// channel returns the stored channel of device name, or nil.
func (s *stored) channel(name string) *os.File { return s.get(storeChannel + name) }

// hardware returns the stored hardware descriptor, or nil.
func (s *stored) hardware(name string) *os.File { return s.get(storeHardware + name) }

// hardwareNamed returns the first stored hardware descriptor whose name
// starts with prefix and ends with suffix, or nil.
func (s *stored) hardwareNamed(prefix, suffix string) *os.File {
	if s == nil {
		return nil
	}
	for n := range s.files {
		if name, ok := strings.CutPrefix(n, storeHardware); ok && strings.HasPrefix(name, prefix) && strings.HasSuffix(name, suffix) {
			return s.get(n)
		}
	}
	return nil
}

// storeDescriptors gives systemd every channel and hardware descriptor
// this process created (those it got from the store are in it already).
func storeDescriptors(log *slog.Logger, devices []handover.Device, hw []handover.Hardware, sd *stored) {
	for _, d := range devices {
		if sd.channel(d.Name) != nil {
			continue
		}
		ok, err := fdstore.Store(storeChannel+d.Name, d.Server.Channel())
		switch {
		case err != nil:
			log.Warn("could not give the CUSE channel to the service manager: a crash will drop the device", "device", d.Name, "err", err)
		case ok:
			log.Debug("CUSE channel in the service manager's store", "device", d.Name)
		}
	}
	for _, h := range hw {
		if sd.hardware(h.Name) != nil {
			continue
		}
		if _, err := fdstore.Store(storeHardware+h.Name, h.File); err != nil {
			log.Warn("could not give a hardware descriptor to the service manager", "name", h.Name, "err", err)
		}
	}
}

// dropUnused takes out of the store, and closes, the descriptors systemd
// gave back that this run does not serve (an interface that no longer
// answers): kept, they would hold a device nobody serves.
func (s *stored) dropUnused(devices []handover.Device, hw []handover.Hardware) {
	if s == nil {
		return
	}
	used := make(map[string]bool)
	for _, d := range devices {
		used[storeChannel+d.Name] = true
	}
	for _, h := range hw {
		used[storeHardware+h.Name] = true
	}
	used[storeHardware+hwMetrics] = true // the metrics listener is taken in startMetrics
	for name, files := range s.files {
		if used[name] {
			continue
		}
		s.log.Warn("the service manager's store holds a descriptor this run does not serve; removing it", "name", name)
		if _, err := fdstore.Remove(name); err != nil {
			s.log.Warn("FDSTOREREMOVE", "name", name, "err", err)
		}
		for _, f := range files {
			f.Close()
		}
		delete(s.files, name)
	}
}

// removeDescriptors takes everything this daemon stored out of the store,
// so a stopped service leaves no device behind.
func removeDescriptors(log *slog.Logger, devices []handover.Device, hw []handover.Hardware) {
	for _, d := range devices {
		if _, err := fdstore.Remove(storeChannel + d.Name); err != nil {
			log.Warn("FDSTOREREMOVE", "device", d.Name, "err", err)
		}
	}
	for _, h := range hw {
		if _, err := fdstore.Remove(storeHardware + h.Name); err != nil {
			log.Warn("FDSTOREREMOVE", "name", h.Name, "err", err)
		}
	}
}

// channelDead reports whether a serve error means the channel can never
// serve again (so keeping it in the store would only make restarts fail).
func channelDead(err error) bool {
	return errors.Is(err, cuse.ErrDisconnected) || errors.Is(err, cuse.ErrInitRejected) || errors.Is(err, cuse.ErrProtocol)
}

// feedWatchdog sends WATCHDOG=1 while the engine makes progress, if the
// service manager asked for it (WatchdogSec=): a wedged engine stops the
// feeding and gets the daemon restarted (with the store, without dropping
// a client). window is the longest the engine may stay in one turn (a
// transaction is bounded by the KCS transaction timeout).
func feedWatchdog(ctx context.Context, log *slog.Logger, engine *sched.Engine, window time.Duration, upgraded bool) {
	if upgraded && os.Getenv("WATCHDOG_USEC") != "" {
		// WATCHDOG_PID names the process systemd started; this one took
		// over from it and becomes the main process (MAINPID=).
		os.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	}
	iv, err := daemon.SdWatchdogEnabled(false)
	if err != nil || iv <= 0 {
		return
	}
	log.Info("feeding the service manager's watchdog from the engine's progress", "interval", iv, "window", window)
	tick := time.NewTicker(iv / 3)
	defer tick.Stop()
	wedged := false
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		if !engine.Alive(window) {
			if !wedged {
				log.Error("the engine has made no progress; no longer feeding the service manager's watchdog", "window", window)
			}
			wedged = true
			continue
		}
		if wedged {
			log.Info("the engine makes progress again; feeding the service manager's watchdog")
			wedged = false
		}
		notify(log, "WATCHDOG=1")
	}
}
