package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
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

// TestStacksPerInterface starts a stack for two simulated BMCs (KCS and
// BT): each has its own engine and answers on its own, and stopping one
// leaves the other working.
func TestStacksPerInterface(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	o, err := parseFlags([]string{"--bmc", "sim", "--kcs-transaction-timeout", "2s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	kcsSim := openSim(o, quiet)
	o.iface = "bt"
	btSim := openSim(o, quiet)
	ctx := context.Background()
	a, err := startStack(ctx, o, quiet, kcsSim)
	if err != nil {
		t.Fatal(err)
	}
	b, err := startStack(ctx, o, quiet, btSim)
	if err != nil {
		t.Fatal(err)
	}
	a.serve(o, quiet, "ipmi1", -1)
	b.serve(o, quiet, "ipmi2", -1)
	if a.srv.DevPath() != "/dev/ipmi1" || b.srv.DevPath() != "/dev/ipmi2" {
		t.Errorf("devices %s and %s", a.srv.DevPath(), b.srv.DevPath())
	}
	if a.engine == b.engine || a.id.ipmiVersion != 0x20 || b.id.ipmiVersion != 0x20 {
		t.Fatalf("stacks share an engine or did not read the device ID: %+v %+v", a.id, b.id)
	}
	a.stop(o, quiet)
	if _, err := getDeviceID(ctx, b.engine, time.Second); err != nil {
		t.Errorf("the BT stack after the KCS one stopped: %v", err)
	}
	if s := btSim.BT.Stats(); s.Transactions < 2 {
		t.Errorf("BT transactions %d: the BT stack's requests did not reach its own BMC", s.Transactions)
	}
	b.stop(o, quiet)
}

func TestDeviceSet(t *testing.T) {
	for args, want := range map[string]bool{"": false, "--device ipmi0": true, "--device ipmi3": true} {
		o, err := parseFlags(strings.Fields(args), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if o.deviceSet != want {
			t.Errorf("%q: deviceSet %v, want %v", args, o.deviceSet, want)
		}
	}
}
