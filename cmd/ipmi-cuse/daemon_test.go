package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/kcsbmc"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// TestGetDeviceIDThroughEngine runs the daemon's start-up Get Device ID over
// the real engine, KCS host and simulated BMC, and against a silent BMC.
func TestGetDeviceIDThroughEngine(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	port := kcsbmc.New(bmcsim.New(bmcsim.Config{Logger: quiet}))
	host := kcs.New(port, kcs.Config{WaitTimeout: 50 * time.Millisecond, TransactionTimeout: 200 * time.Millisecond, Logger: quiet})
	engine := sched.New(host, sched.Config{Logger: quiet})
	defer engine.Close()

	id, err := getDeviceID(context.Background(), engine, time.Second)
	if err != nil {
		t.Fatalf("getDeviceID: %v", err)
	}
	if id.ipmiVersion != 0x20 {
		t.Errorf("IPMI version = %#x, want 0x20 (the simulated BMC is IPMI 2.0)", id.ipmiVersion)
	}

	port.Silence(time.Time{})
	if _, err := getDeviceID(context.Background(), engine, 500*time.Millisecond); err == nil {
		t.Error("getDeviceID succeeded against a silent BMC")
	}
}

// TestFlagsWanted: SSIF reads the message flags only while something
// waits for them.
func TestFlagsWanted(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := msghandler.New(msghandler.Config{Logger: quiet})
	if flagsWanted(false, h, nil) {
		t.Error("nothing waits, yet the flags are wanted")
	}
	if !flagsWanted(true, h, nil) {
		t.Error("the watchdog waits for a pretimeout, yet the flags are not wanted")
	}
}
