package watchdog

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// This file holds the BMC command sequences, modelled on the kernel's
// ipmi_watchdog (_ipmi_set_timeout, __ipmi_heartbeat, _ipmi_heartbeat).
// Every function named ...Locked runs with opMu held.

// hbMode says whether a Set is followed by a Reset.
type hbMode uint8

const (
	hbNone        hbMode = iota // Set only
	hbIfNecessary               // Reset only if the Set stopped a running timer (IPMI 1.0)
	hbForce                     // always Reset (starting the timer)
)

// cmdName names a watchdog command for errors and logs.
func cmdName(cmd byte) string {
	switch cmd {
	case CmdResetWatchdog:
		return "Reset Watchdog Timer"
	case CmdSetWatchdog:
		return "Set Watchdog Timer"
	case CmdGetWatchdog:
		return "Get Watchdog Timer"
	}
	return fmt.Sprintf("cmd 0x%02x", cmd)
}

// do sends msg on the priority lane with a RequestTimeout deadline (or
// ctx's, if sooner) and waits for the response: netfn/LUN, cmd, completion
// code, data. A non-zero completion code is not an error here.
func (w *Watchdog) do(ctx context.Context, msg []byte) ([]byte, error) {
	name := cmdName(msg[1])
	deadline := time.Now().Add(w.cfg.RequestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	ch := make(chan *sched.Request, 1)
	r := &sched.Request{
		Owner:    w.cfg.Owner,
		Lane:     sched.LanePriority,
		Deadline: deadline,
		Msg:      msg,
		Resp:     make([]byte, 0, 16),
		Done:     func(r *sched.Request) { ch <- r },
	}
	if err := w.cfg.Submit(r); err != nil {
		return nil, fmt.Errorf("watchdog: submitting %s: %w", name, err)
	}
	select {
	case r = <-ch:
	case <-ctx.Done():
		// The engine still completes r later, into the buffered channel.
		return nil, fmt.Errorf("watchdog: waiting for %s: %w", name, ctx.Err())
	}
	if r.Err != nil {
		return nil, fmt.Errorf("watchdog: %s: %w", name, r.Err)
	}
	if len(r.Resp) < 3 {
		return nil, fmt.Errorf("watchdog: %s response % x: %w", name, r.Resp, ErrShortResponse)
	}
	return r.Resp, nil
}

// setLocked sends Set Watchdog Timer with the current settings, then a
// Reset as hb says. A Set that fails while the timer should run leaves
// needSet and needHB set, so the next heartbeat sends Set and Reset again
// instead of patting a timer that may not be armed.
func (w *Watchdog) setLocked(ctx context.Context, hb hbMode) error {
	w.mu.Lock()
	s := w.st
	w.mu.Unlock()
	resp, err := w.do(ctx, setMsg(s))
	if err == nil && resp[2] != 0 {
		err = &CompletionError{Cmd: CmdSetWatchdog, Code: resp[2]}
		w.log.Error("watchdog: BMC refused Set Watchdog Timer", slog.Any("err", err))
	}
	if err != nil {
		w.mu.Lock()
		if w.st.running {
			w.needSet, w.needHB = true, true
		}
		w.mu.Unlock()
		return err
	}
	w.mu.Lock()
	w.stats.Sets++
	if s.running && !s.ipmi10 {
		// With "don't stop", a Set restarts the countdown: it is a pat.
		w.stats.LastPat = w.now()
	}
	w.mu.Unlock()
	if hb == hbForce || (hb == hbIfNecessary && s.running && s.ipmi10) {
		return w.resetLocked(ctx)
	}
	return nil
}

// resetLocked pats: Reset Watchdog Timer, unless the timer is stopped
// (a Reset would start it). A 0x80 answer (the BMC lost its settings)
// re-sends the Set and retries, at most maxRearms times, then fails with
// ErrSettingsLost; any other error code fails with a *CompletionError.
func (w *Watchdog) resetLocked(ctx context.Context) error {
	for rearms := 0; ; {
		w.mu.Lock()
		running := w.st.running
		w.mu.Unlock()
		if !running {
			return nil
		}
		resp, err := w.do(ctx, resetMsg())
		if err != nil {
			return err
		}
		switch resp[2] {
		case 0:
			w.mu.Lock()
			w.stats.Pats++
			w.stats.LastPat = w.now()
			w.pinged = true
			w.mu.Unlock()
			return nil
		case CCNotInitialised:
			rearms++
			w.mu.Lock()
			w.stats.Rearms++
			w.mu.Unlock()
			if rearms > maxRearms {
				w.log.Error("watchdog: unable to restore the BMC watchdog's settings, giving up",
					slog.Int("rearms", maxRearms))
				return fmt.Errorf("%w: Reset Watchdog Timer answered 0x80 after %d re-arms", ErrSettingsLost, maxRearms)
			}
			w.log.Warn("watchdog: the BMC appears to have been reset (Reset Watchdog Timer answered 0x80); re-arming")
			if err := w.setLocked(ctx, hbNone); err != nil {
				return fmt.Errorf("watchdog: re-arming after 0x80: %w", err)
			}
		default:
			err := &CompletionError{Cmd: CmdResetWatchdog, Code: resp[2]}
			w.log.Error("watchdog: BMC refused Reset Watchdog Timer", slog.Any("err", err))
			return err
		}
	}
}

// heartbeatLocked is the kernel's _ipmi_heartbeat: the first heartbeat
// after a /dev/watchdog open starts the timer (Set, Reset); the first after
// a pretimeout (or a failed Set) re-sends the Set; otherwise a Reset. It
// does nothing while the timer is stopped.
func (w *Watchdog) heartbeatLocked(ctx context.Context) error {
	w.mu.Lock()
	if w.startOnHB {
		w.mu.Unlock()
		return w.startLocked(ctx)
	}
	if !w.st.running {
		w.mu.Unlock()
		return nil
	}
	if w.needSet {
		hb := hbIfNecessary
		if w.needHB {
			hb = hbForce
		}
		w.needSet, w.needHB = false, false
		w.mu.Unlock()
		return w.setLocked(ctx, hb)
	}
	w.mu.Unlock()
	return w.resetLocked(ctx)
}

// startLocked starts the timer: state running, Set with "don't stop",
// Reset; or, where the kernel treats action none as "stopped"
// (runsWhenStarted), a Set that stops it and no Reset.
func (w *Watchdog) startLocked(ctx context.Context) error {
	w.mu.Lock()
	w.st.running = w.runsWhenStarted()
	w.startOnHB = false
	w.needSet, w.needHB = false, false
	w.mu.Unlock()
	return w.setLocked(ctx, hbForce)
}

// stopLocked stops the timer: state stopped, Set without "don't stop".
func (w *Watchdog) stopLocked(ctx context.Context) error {
	w.mu.Lock()
	w.st.running = false
	w.startOnHB = false
	w.needSet, w.needHB = false, false
	w.mu.Unlock()
	return w.setLocked(ctx, hbNone)
}

// setTimesLocked changes the timeout and pretimeout and re-sends the Set
// (restarting a running countdown, as WDIOC_SETTIMEOUT pings in the
// generic API).
func (w *Watchdog) setTimesLocked(ctx context.Context, timeout, pretimeout time.Duration) error {
	if err := checkTimes(timeout, pretimeout); err != nil {
		return err
	}
	w.mu.Lock()
	w.st.timeout, w.st.pretimeout = timeout, pretimeout
	w.mu.Unlock()
	return w.setLocked(ctx, hbIfNecessary)
}

// getLocked sends Get Watchdog Timer and decodes it.
func (w *Watchdog) getLocked(ctx context.Context) (TimerState, error) {
	resp, err := w.do(ctx, getMsg())
	if err != nil {
		return TimerState{}, err
	}
	return DecodeGetResponse(resp)
}
