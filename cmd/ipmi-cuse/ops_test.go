package main

import (
	"io"
	"testing"
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
