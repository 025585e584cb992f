package testbed

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// Session is one complete guest run: build the initrd, boot, parse.
type Session struct {
	Env      *Env
	Commands []Command
	Script   ScriptOptions
	// Daemon is the host path of the static ipmi-cuse binary (shim mode).
	Daemon string
	// GuestBins maps guest paths to host binaries added to the overlay
	// (e.g. static Go test clients built with BuildStatic).
	GuestBins map[string]string
	BMC       BMC
	// Extra are further BMCs with their own interfaces (see VM.Extra).
	Extra []BMC
	// Dir is a scratch directory for the initrd and the serial logs.
	Dir     string
	Timeout time.Duration
}

// Run boots the session's VM and returns the parsed guest output and the raw
// result. On error both may still be non-nil (partial output, console).
func (s *Session) Run(ctx context.Context) (*Output, *Result, error) {
	base, err := s.Env.BaseInitramfs()
	if err != nil {
		return nil, nil, err
	}
	so := s.Script
	if so.Interfaces == nil {
		so.Interfaces = Interfaces(append([]BMC{s.BMC}, s.Extra...)...)
	}
	script, err := Script(s.Commands, so)
	if err != nil {
		return nil, nil, err
	}
	ov := NewOverlay()
	ov.Install(script)
	if s.Script.Mode == ShimMode {
		if s.Daemon == "" {
			return nil, nil, fmt.Errorf("session: shim mode needs the daemon: %w", ErrNoDaemon)
		}
		if err := ov.AddHostFile(GuestDaemon, s.Daemon, 0o755); err != nil {
			return nil, nil, err
		}
	}
	for g, h := range s.GuestBins {
		if err := ov.AddHostFile(g, h, 0o755); err != nil {
			return nil, nil, err
		}
	}
	initrd := filepath.Join(s.Dir, "initrd.cpio")
	if err := ov.WriteInitrd(initrd, base); err != nil {
		return nil, nil, err
	}
	vm := &VM{Env: s.Env, Initrd: initrd, BMC: s.BMC, Extra: s.Extra, Dir: s.Dir, Timeout: s.Timeout}
	res, err := vm.Run(ctx)
	if err != nil {
		if res != nil {
			out, _ := ParseOutput(res.Guest)
			return out, res, err
		}
		return nil, nil, err
	}
	out, err := ParseOutput(res.Guest)
	if err != nil {
		return out, res, fmt.Errorf("guest output: %w", err)
	}
	return out, res, nil
}
