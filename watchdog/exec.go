package watchdog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// runExec runs PretimeoutExec for pretimeout number n, bounded by
// ExecTimeout and Close, and logs its output.
func (w *Watchdog) runExec(n uint64, since time.Duration) {
	defer w.execWG.Done()
	defer func() {
		w.mu.Lock()
		w.execBusy = false
		w.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(w.execCtx, w.cfg.ExecTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", w.cfg.PretimeoutExec)
	sinceMs := int64(-1)
	if since >= 0 {
		sinceMs = since.Milliseconds()
	}
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("IPMI_CUSE_PRETIMEOUTS=%d", n),
		fmt.Sprintf("IPMI_CUSE_SINCE_LAST_PAT_MS=%d", sinceMs))
	out := &capWriter{max: maxExecOutput}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so the timeout kills whatever it started too;
	// WaitDelay stops waiting for pipes held open by stray children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	attrs := []any{slog.String("cmd", w.cfg.PretimeoutExec), slog.Duration("took", time.Since(start)),
		slog.String("output", out.String())}
	w.mu.Lock()
	w.stats.ExecRuns++
	if err != nil {
		w.stats.ExecFailures++
	}
	w.mu.Unlock()
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("killed after %v: %w", w.cfg.ExecTimeout, err)
		}
		w.log.Error("watchdog: pretimeout command failed", append(attrs, slog.Any("err", err))...)
		return
	}
	w.log.Info("watchdog: pretimeout command ran", attrs...)
}

// capWriter keeps the first max bytes written to it and counts the rest.
type capWriter struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped int
}

func (c *capWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := min(len(p), c.max-len(c.buf))
	c.buf = append(c.buf, p[:keep]...)
	c.dropped += len(p) - keep
	return len(p), nil
}

func (c *capWriter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped > 0 {
		return fmt.Sprintf("%s… (%d more bytes)", c.buf, c.dropped)
	}
	return string(c.buf)
}
