package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

func TestParseOpsFlags(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		wantVersion bool
		wantMetrics string
	}{
		{"off by default", nil, false, ""},
		{"version", []string{"--version"}, true, ""},
		{"tcp", []string{"--metrics-address", "127.0.0.1:9101"}, false, "127.0.0.1:9101"},
		{"unix", []string{"--metrics-address=unix:/run/ipmi-cuse/metrics.sock"}, false, "unix:/run/ipmi-cuse/metrics.sock"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if o.version != tc.wantVersion || o.metricsAddress != tc.wantMetrics {
				t.Errorf("version %v metrics %q, want %v %q", o.version, o.metricsAddress, tc.wantVersion, tc.wantMetrics)
			}
		})
	}
}

// TestMetricsListenerHandedOver: a listener handed over at an upgrade is
// served by the new process as is, and its file can be handed on again.
func TestMetricsListenerHandedOver(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the old process's copy; f keeps the socket listening
	engine := sched.New(nopTransport{}, sched.Config{Logger: slog.New(slog.DiscardHandler)})
	defer engine.Close()
	ctx, cancel := context.WithCancel(context.Background())
	wait, next, err := startMetrics(ctx, addr, f, engine, nil, msghandler.New(msghandler.Config{}), nil, nil, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("startMetrics: %v", err)
	}
	defer func() { cancel(); wait() }()
	if next == nil {
		t.Error("no listener file to hand over at the next upgrade")
	} else {
		next.Close()
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape on the handed-over socket: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "ipmi_cuse_") {
		t.Errorf("scrape: %d: %.300s", resp.StatusCode, b)
	}
}

// nopTransport answers nothing; the test never submits.
type nopTransport struct{}

func (nopTransport) Transact(msg, resp []byte, deadline time.Time) ([]byte, error) {
	return resp[:0], nil
}
