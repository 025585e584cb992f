package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

func TestStartProfile(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	t.Setenv(profileEnv, "")
	startProfile(log)() // nothing asked: nothing written, nothing to stop

	path := filepath.Join(t.TempDir(), "cpu.pprof")
	t.Setenv(profileEnv, path)
	stop := startProfile(log)
	x := 0
	for i := range 1_000_000 {
		x += i
	}
	_ = x
	stop()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("profile: %v", err)
	}
	if fi.Size() == 0 {
		t.Fatalf("profile %s is empty", path)
	}
}
