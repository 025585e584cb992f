package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/vmserial"
)

// SimBMC is the project's simulated BMC (bmcsim) served on a loopback TCP
// port with OpenIPMI's VM protocol (bmcsim/vmserial), for QEMU's
// ipmi-bmc-extern. Start a fresh one per boot so every boot sees the same
// initial BMC state.
type SimBMC struct {
	// Addr is host:port for BMC.Extern.
	Addr string
	// BMC is the simulated BMC, for fault injection and inspection.
	BMC    *bmcsim.BMC
	Server *vmserial.Server

	cancel context.CancelFunc
	done   chan error
	log    *lockedBuffer
}

// StartSimBMC listens on 127.0.0.1 (a free port) and serves a new
// bmcsim.BMC built from cfg until Close. Its log (BMC state changes and
// protocol events) is kept for Log.
func StartSimBMC(cfg bmcsim.Config) (*SimBMC, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("simulated BMC: %w", err)
	}
	lb := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Logger == nil {
		cfg.Logger = logger
	}
	b := bmcsim.New(cfg)
	srv := vmserial.NewServer(b, vmserial.Options{Logger: logger})
	ctx, cancel := context.WithCancel(context.Background())
	s := &SimBMC{Addr: ln.Addr().String(), BMC: b, Server: srv, cancel: cancel, done: make(chan error, 1), log: lb}
	go func() { s.done <- srv.Serve(ctx, ln) }()
	return s, nil
}

// Close stops serving and returns the server's error, if any other than
// the cancellation itself.
func (s *SimBMC) Close() error {
	s.cancel()
	if err := <-s.done; err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("simulated BMC: %w", err)
	}
	return nil
}

// Log returns what the BMC and its server logged so far.
func (s *SimBMC) Log() string { return s.log.String() }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
