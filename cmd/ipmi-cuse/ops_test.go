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

	"github.com/ipmi-cuse/ipmi-cuse/internal/buildinfo"
	"github.com/ipmi-cuse/ipmi-cuse/metrics"
	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
	"github.com/ipmi-cuse/ipmi-cuse/sysif"
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
	ifaces := []metrics.Interface{metricsInterface("ipmi0", &sysif.Opened{}, engine, msghandler.New(msghandler.Config{}))}
	wait, next, err := startMetrics(ctx, addr, f, ifaces, nil, nil, nil, slog.New(slog.DiscardHandler))
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

// TestMetricsOfEveryStack: the series of a further interface's stack (a
// BT one here) come from its own engine and host, labelled with its
// device, beside the first interface's (KCS).
func TestMetricsOfEveryStack(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	o, err := parseFlags([]string{"--bmc", "sim", "--kcs-transaction-timeout", "2s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	kcsSim := openSim(o, quiet)
	o.iface = "bt"
	btSim := openSim(o, quiet)
	a, err := startStack(context.Background(), o, quiet, kcsSim, true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.stop(o, quiet)
	b, err := startStack(context.Background(), o, quiet, btSim, true)
	if err != nil {
		t.Fatal(err)
	}
	defer b.stop(o, quiet)
	reg := metrics.Registry(metrics.New(metrics.Sources{Interfaces: []metrics.Interface{
		metricsInterface("ipmi0", a.bmc, a.engine, a.handler), metricsInterface("ipmi1", b.bmc, b.engine, b.handler)}}), buildinfo.Read())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := func(family, device string) float64 {
		for _, mf := range mfs {
			if mf.GetName() != family {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "device" && l.GetValue() == device {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		return -1
	}
	if n := got("ipmi_cuse_bt_transactions_total", "ipmi1"); n < 1 || n != float64(btSim.BT.Stats().Transactions) {
		t.Errorf("bt_transactions_total{device=ipmi1} = %v, the BT host counted %d", n, btSim.BT.Stats().Transactions)
	}
	if n := got("ipmi_cuse_kcs_transactions_total", "ipmi0"); n < 1 || n != float64(kcsSim.KCS.Stats().Transactions) {
		t.Errorf("kcs_transactions_total{device=ipmi0} = %v, the KCS host counted %d", n, kcsSim.KCS.Stats().Transactions)
	}
	if got("ipmi_cuse_bt_transactions_total", "ipmi0") != -1 || got("ipmi_cuse_kcs_transactions_total", "ipmi1") != -1 {
		t.Error("a host counter under the other interface's device")
	}
}
