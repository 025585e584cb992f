package main

import (
	"context"
	"errors"
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
	"github.com/ipmi-cuse/ipmi-cuse/sysif"
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
	a, err := startStack(ctx, o, quiet, kcsSim, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := startStack(ctx, o, quiet, btSim, true)
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

// TestFirstAnswering: interfaces that cannot be opened or whose BMC does
// not answer are skipped, logged, and the next takes their number, as the
// kernel registers only interfaces that answer Get Device ID.
func TestFirstAnswering(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	silent := func() *sysif.Opened {
		port := kcsbmc.New(bmcsim.New(bmcsim.Config{Logger: quiet}))
		port.Silence(time.Time{})
		host := kcs.New(port, kcs.Config{WaitTimeout: 20 * time.Millisecond, TransactionTimeout: 100 * time.Millisecond, Logger: quiet})
		return &sysif.Opened{Interface: sysif.Interface{Kind: sysif.KCS}, Transport: host, KCS: host, What: "silent KCS"}
	}
	answering := func() *sysif.Opened {
		host := kcs.New(kcsbmc.New(bmcsim.New(bmcsim.Config{Logger: quiet})), kcs.Config{TransactionTimeout: time.Second, Logger: quiet})
		return &sysif.Opened{Interface: sysif.Interface{Kind: sysif.KCS}, Transport: host, KCS: host, What: "answering KCS"}
	}
	kinds := map[string]func() (*sysif.Opened, error){
		"absent":    func() (*sysif.Opened, error) { return nil, errors.New("no KCS interface answers at 0xca2") },
		"silent":    func() (*sysif.Opened, error) { return silent(), nil },
		"answering": func() (*sysif.Opened, error) { return answering(), nil },
	}
	tests := []struct {
		name     string
		cands    []string
		want     int // index of the interface served; -1: none
		wantRest int
		wantLogs int // "not serving" lines
	}{
		{name: "first answers", cands: []string{"answering", "silent"}, want: 0, wantRest: 1},
		{name: "first silent", cands: []string{"silent", "answering", "answering"}, want: 1, wantRest: 1, wantLogs: 1},
		{name: "first two fail", cands: []string{"absent", "silent", "answering"}, want: 2, wantRest: 0, wantLogs: 2},
		{name: "only one, silent", cands: []string{"silent"}, want: -1},
		{name: "none answers", cands: []string{"absent", "silent"}, want: -1, wantLogs: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cands []sysif.Interface
			for n := range tt.cands {
				cands = append(cands, sysif.Interface{Kind: sysif.KCS, Base: uint16(0xCA2 + 8*n), Spacing: 1, Bus: -1})
			}
			open := func(i sysif.Interface) (*sysif.Opened, error) {
				return kinds[tt.cands[(int(i.Base)-0xCA2)/8]]()
			}
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(&logs, nil))
			newEngine := func(b *sysif.Opened) *sched.Engine { return sched.New(b.Transport, sched.Config{Logger: quiet}) }
			bmc, engine, id, rest, err := firstAnswering(context.Background(), log, cands, open, newEngine, 5*time.Second)
			if got := strings.Count(logs.String(), "not serving an interface"); got != tt.wantLogs {
				t.Errorf("%d log lines about skipped interfaces, want %d:\n%s", got, tt.wantLogs, logs.String())
			}
			if tt.want < 0 {
				if err == nil {
					t.Fatalf("served %s, want an error", bmc.What)
				}
				if len(tt.cands) > 1 && !strings.Contains(err.Error(), "no BMC answers on any of the") {
					t.Errorf("error %v does not say that no interface answers", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer engine.Close()
			if bmc.Interface.Kind != sysif.KCS || bmc.What != "answering KCS" || id.ipmiVersion != 0x20 {
				t.Errorf("served %q (IPMI %#x)", bmc.What, id.ipmiVersion)
			}
			if len(rest) != tt.wantRest || tt.wantRest > 0 && rest[0] != cands[tt.want+1] {
				t.Errorf("rest %v, want the %d after candidate %d", rest, tt.wantRest, tt.want)
			}
		})
	}
}
