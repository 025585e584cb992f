package metrics_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/metrics"
)

// TestServeTCPAndUnix scrapes /metrics over both kinds of listener.
func TestServeTCPAndUnix(t *testing.T) {
	r := newRig(t)
	sock := filepath.Join(t.TempDir(), "m.sock")
	for _, addr := range []string{"127.0.0.1:0", "unix:" + sock} {
		t.Run(addr, func(t *testing.T) {
			ln, err := metrics.Listen(addr)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- metrics.Serve(ctx, ln, r.reg, quiet()) }()
			client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, ln.Addr().Network(), ln.Addr().String())
			}}}
			resp, err := client.Get("http://ipmi-cuse/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, want := range []string{"# TYPE ipmi_cuse_requests_total counter", "ipmi_cuse_bmc_up 1", "ipmi_cuse_build_info{"} {
				if !strings.Contains(string(body), want) {
					t.Errorf("scrape lacks %q", want)
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve after cancel: %v", err)
			}
		})
	}
}

func TestListenRejects(t *testing.T) {
	for _, addr := range []string{"unix:", "9101", "localhost"} {
		if ln, err := metrics.Listen(addr); err == nil {
			ln.Close()
			t.Errorf("Listen(%q) accepted", addr)
		}
	}
}
