package watchdog

import (
	"context"
	"log/slog"
	"time"
)

// This file holds what the kernel's ipmi_watchdog does around the life of
// the driver rather than of one opener: its registration with an
// interface (start_now, or stop), and what it does when nobody will pat
// the timer any more (panic_wdt_timeout).

// Register does what ipmi_watchdog does when it registers with an
// interface, once the BMC's IPMI version is known (Config.IPMI10) and
// before the device is served: with StartNow it starts the timer with its
// own settings (Set Watchdog Timer: timer use SMS/OS with "don't stop",
// the action, the pre-action and pretimeout if a pretimeout is set, the
// timeout; then Reset Watchdog Timer), unless the action is none, which
// the kernel treats as "stopped"; otherwise it stops the timer with its
// own settings (timer use SMS/OS without "don't stop", action and
// pre-action none, pretimeout 0, the timeout; no Reset). Either way a
// timer the firmware left armed (an OS Load watchdog, say) can no longer
// act. "Don't log" is never set and no expiration flag is cleared, as in
// the kernel.
//
// The kernel's driver ignores the answer; Register returns it so the
// daemon can log it. Register is for a fresh start: after ImportState (an
// upgrade took over the timer) it does nothing, so the hand-over's state
// must be imported before Register is called.
func (w *Watchdog) Register(ctx context.Context) error {
	w.opMu.Lock()
	defer w.opMu.Unlock()
	w.mu.Lock()
	imported := w.imported
	w.mu.Unlock()
	if imported {
		w.log.Info("watchdog: timer taken over from the previous process; not registering again")
		return nil
	}
	if w.cfg.StartNow {
		err := w.startLocked(ctx)
		w.log.Info("watchdog: registered: timer started now (start_now)",
			slog.Bool("running", w.Stats().Running), slog.Duration("timeout", w.cfg.Timeout),
			slog.Duration("pretimeout", w.cfg.Pretimeout), slog.String("action", w.cfg.Action.String()),
			slog.String("preaction", w.cfg.PreAction.String()), slog.Any("err", err))
		return err
	}
	err := w.stopLocked(ctx)
	w.log.Info("watchdog: registered: timer stopped with SMS/OS settings until a watchdog daemon starts it",
		slog.Duration("timeout", w.cfg.Timeout), slog.Any("err", err))
	return err
}

// Leave is called when the daemon stops for good while it may leave the
// BMC timer running (NoWayOut, or a /dev/watchdog opener that never closed
// with the magic 'V'): nobody will pat the timer any more, the situation
// the kernel's driver meets at a kernel panic. As its panic handler does,
// if the timer runs and PanicTimeout is set, Leave re-arms it with
// PanicTimeout and no pretimeout (keeping the action), so the host has
// that long to finish going down before the BMC acts. A stopped timer is
// left alone, and so is any timer after ExportState (a hand-over: the
// next process pats it). It returns the Set's error, if any. Register
// is not for that next process either.
func (w *Watchdog) Leave(ctx context.Context) error {
	w.opMu.Lock()
	defer w.opMu.Unlock()
	w.mu.Lock()
	running := w.st.running
	if !running || w.cfg.PanicTimeout == 0 || w.exported {
		w.mu.Unlock()
		return nil
	}
	w.st.timeout, w.st.pretimeout = w.cfg.PanicTimeout, 0
	w.mu.Unlock()
	err := w.setLocked(ctx, hbIfNecessary)
	w.log.Warn("watchdog: stopping while the BMC watchdog runs: re-armed with the panic timeout, nobody pats it any more",
		slog.Duration("panic_timeout", w.cfg.PanicTimeout), slog.String("action", w.cfg.Action.String()), slog.Any("err", err))
	return err
}

// runsWhenStarted says whether starting the timer makes it run: the
// kernel's driver treats action none as "stopped" (its start sends a Set
// that stops the timer and no Reset); the built-in patter and the generic
// API run the timer whatever the action. Called with mu held.
func (w *Watchdog) runsWhenStarted() bool {
	return w.cfg.Action != ActionNone || w.cfg.GenericAPI || w.user == userBuiltin
}

// givesData says whether a pretimeout becomes readable on /dev/watchdog:
// with preop give-data and a pre-action (the kernel), or always (the
// generic API). Called with mu held.
func (w *Watchdog) givesData() bool {
	return w.cfg.GenericAPI || (w.cfg.PreOp == PreOpGiveData && w.cfg.PreAction != PreNone)
}

// DefaultPanicTimeout is the kernel's panic_wdt_timeout default.
const DefaultPanicTimeout = 255 * time.Second
