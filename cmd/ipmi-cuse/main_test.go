package main

import (
	"errors"
	"flag"
	"io"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, o options)
		wantErr bool
	}{
		{name: "defaults", args: nil, check: func(t *testing.T, o options) {
			if o.bmc != "kcs" || o.kcsPort != 0 || o.portIO != "ioport" || o.device != "ipmi0" || o.deviceMode != 0o600 || !o.priorityWatchdog {
				t.Errorf("defaults = %+v", o)
			}
		}},
		{name: "all set", args: []string{"--bmc", "sim", "--kcs-port", "0xca8", "--kcs-spacing", "4", "--port-io", "devport",
			"--device", "ipmi3", "--device-mode", "0660", "--log-level", "debug", "--priority-watchdog-commands=false", "--request-timeout", "5s"},
			check: func(t *testing.T, o options) {
				if o.bmc != "sim" || o.kcsPort != 0xca8 || o.kcsSpacing != 4 || o.portIO != "devport" || o.device != "ipmi3" ||
					o.deviceMode != 0o660 || o.logLevel.String() != "DEBUG" || o.priorityWatchdog || o.requestTimeout != 5*time.Second {
					t.Errorf("parsed = %+v", o)
				}
			}},
		{name: "bad bmc", args: []string{"--bmc", "bt"}, wantErr: true},
		{name: "bt port implies bt", args: []string{"--bt-port", "0xe4", "--bt-spacing", "4"}, check: func(t *testing.T, o options) {
			if o.iface != "bt" || o.btPort != 0xe4 || o.btSpacing != 4 {
				t.Errorf("parsed = %+v", o)
			}
		}},
		{name: "kcs port implies kcs", args: []string{"--kcs-port", "0xca2"}, check: func(t *testing.T, o options) {
			if o.iface != "kcs" {
				t.Errorf("parsed = %+v", o)
			}
		}},
		{name: "interface ssif", args: []string{"--interface", "ssif"}, check: func(t *testing.T, o options) {
			if o.iface != "ssif" {
				t.Errorf("parsed = %+v", o)
			}
		}},
		{name: "interface smic", args: []string{"--interface", "smic"}, wantErr: true},
		{name: "interface unknown", args: []string{"--interface", "usb"}, wantErr: true},
		{name: "bt port with interface kcs", args: []string{"--interface", "kcs", "--bt-port", "0xe4"}, wantErr: true},
		{name: "kcs and bt ports", args: []string{"--kcs-port", "0xca2", "--bt-port", "0xe4"}, wantErr: true},
		{name: "bt port too big", args: []string{"--bt-port", "0x10000"}, wantErr: true},
		{name: "sim ssif", args: []string{"--bmc", "sim", "--interface", "ssif"}, wantErr: true},
		{name: "ssif address", args: []string{"--ssif-bus", "3", "--ssif-address", "0x10"}, check: func(t *testing.T, o options) {
			if o.iface != "ssif" || o.ssifBus != 3 || o.ssifAddr != 0x10 {
				t.Errorf("parsed = %+v", o)
			}
		}},
		{name: "ssif bus alone implies ssif", args: []string{"--ssif-bus", "0"}, check: func(t *testing.T, o options) {
			if o.iface != "ssif" || o.ssifBus != 0 || o.ssifAddr != 0 {
				t.Errorf("parsed = %+v", o)
			}
		}},
		{name: "ssif 8-bit address", args: []string{"--ssif-address", "0x20"}, check: func(t *testing.T, o options) {
			if o.ssifAddr != 0x20 {
				t.Errorf("parsed = %+v", o)
			}
		}},
		{name: "ssif address too big", args: []string{"--ssif-address", "0x80"}, wantErr: true},
		{name: "ssif with kcs port", args: []string{"--kcs-port", "0xca2", "--ssif-address", "0x10"}, wantErr: true},
		{name: "bad port-io", args: []string{"--port-io", "mmio"}, wantErr: true},
		{name: "port too big", args: []string{"--kcs-port", "0x10000"}, wantErr: true},
		{name: "zero spacing", args: []string{"--kcs-spacing", "0"}, wantErr: true},
		{name: "device with slash", args: []string{"--device", "ipmi/0"}, wantErr: true},
		{name: "mode not octal", args: []string{"--device-mode", "0999"}, wantErr: true},
		{name: "mode too big", args: []string{"--device-mode", "01777"}, wantErr: true},
		{name: "bad level", args: []string{"--log-level", "loud"}, wantErr: true},
		{name: "stray argument", args: []string{"now"}, wantErr: true},
		{name: "negative timeout", args: []string{"--request-timeout", "-1s"}, wantErr: true},
		{name: "watchdog", args: []string{"--watchdog", "--watchdog-timeout", "20s", "--watchdog-pretimeout", "10s",
			"--watchdog-action", "power-cycle", "--watchdog-preaction", "msg-int", "--watchdog-nowayout", "--watchdog-pretimeout-exec", "logger hi"},
			check: func(t *testing.T, o options) {
				if !o.watchdog || o.watchdogTimeout != 20*time.Second || o.watchdogPretimeout != 10*time.Second ||
					o.watchdogAction != watchdog.ActionPowerCycle || o.watchdogPreAction != watchdog.PreMsgInt ||
					!o.watchdogNoWayOut || o.watchdogExec != "logger hi" {
					t.Errorf("parsed = %+v", o)
				}
			}},
		{name: "watchdog device", args: []string{"--watchdog-device", "watchdog0"}, check: func(t *testing.T, o options) {
			if o.watchdog || o.watchdogDevice != "watchdog0" || o.watchdogAction != watchdog.ActionReset {
				t.Errorf("parsed = %+v", o)
			}
		}},
		{name: "both watchdog front-ends", args: []string{"--watchdog", "--watchdog-device", "watchdog"}, wantErr: true},
		{name: "watchdog device named like ipmi device", args: []string{"--watchdog-device", "ipmi0"}, wantErr: true},
		{name: "bad watchdog action", args: []string{"--watchdog-action", "explode"}, wantErr: true},
		{name: "bad watchdog preaction", args: []string{"--watchdog-preaction", "irq"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseFlags(%q) = %+v, want an error", tt.args, o)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q): %v", tt.args, err)
			}
			tt.check(t, o)
		})
	}
}

func TestHelp(t *testing.T) {
	if _, err := parseFlags([]string{"--help"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help gave %v, want flag.ErrHelp", err)
	}
}

func TestLookupGroup(t *testing.T) {
	if g, err := lookupGroup(""); err != nil || g != -1 {
		t.Errorf(`lookupGroup("") = %d, %v; want -1`, g, err)
	}
	if g, err := lookupGroup("42"); err != nil || g != 42 {
		t.Errorf(`lookupGroup("42") = %d, %v; want 42`, g, err)
	}
	if g, err := lookupGroup("root"); err != nil || g != 0 {
		t.Errorf(`lookupGroup("root") = %d, %v; want 0`, g, err)
	}
	if _, err := lookupGroup("no-such-group-here"); err == nil {
		t.Error("lookupGroup of a missing group succeeded")
	}
}
