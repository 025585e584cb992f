package main

import (
	"log/slog"
	"os"
	"runtime/pprof"
)

// profileEnv names a file to write a CPU profile of the whole run to
// (make bench-vm's IPMI_CUSE_BENCH_PROFILE uses it to profile the daemon
// in the VM). It is for measuring, so it is an environment variable, not a
// flag a unit file would carry.
const profileEnv = "IPMI_CUSE_CPUPROFILE"

// startProfile starts the CPU profile profileEnv asks for, if any, and
// returns what stops it and closes the file.
func startProfile(log *slog.Logger) (stop func()) {
	path := os.Getenv(profileEnv)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		log.Warn("CPU profile not started", "path", path, "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Warn("CPU profile not started", "path", path, "err", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Warn("writing the CPU profile", "path", path, "err", err)
		}
	}
}
