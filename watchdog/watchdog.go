package watchdog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// Defaults for Config fields left zero.
const (
	// DefaultTimeout is the kernel's timeout module parameter.
	DefaultTimeout = 10 * time.Second
	// DefaultRequestTimeout bounds each IPMI request: a pat that has not
	// reached the BMC in this time is worth nothing, and the next one is
	// due soon anyway.
	DefaultRequestTimeout = 3 * time.Second
	// DefaultExecTimeout bounds a --watchdog-pretimeout-exec command.
	DefaultExecTimeout = 30 * time.Second
	// DefaultOwner is the sched.Owner of the watchdog's requests when
	// Config.Owner is zero; below ioctl.OwnerBase, so it never collides
	// with a /dev/ipmi0 file.
	DefaultOwner sched.Owner = 2
	// maxRearms is how many times a Reset answered 0x80 is followed by a
	// Set and another Reset before giving up, as the kernel.
	maxRearms = 3
	// maxExecOutput is how much of the pretimeout command's output is kept
	// for the log.
	maxExecOutput = 4096
)

// Sentinel errors, for callers that branch on the kind of failure.
var (
	// ErrConfig means a Config (or a value given through an ioctl) is
	// outside what Set Watchdog Timer can express.
	ErrConfig = errors.New("watchdog: invalid configuration")
	// ErrBusy means the BMC watchdog already has a user: the built-in
	// patter (Run) and a /dev/watchdog opener exclude each other.
	ErrBusy = errors.New("watchdog: BMC watchdog already in use")
	// ErrSettingsLost means Reset Watchdog Timer kept answering 0x80 (the
	// BMC lost its settings) after maxRearms re-arms.
	ErrSettingsLost = errors.New("watchdog: unable to restore the BMC watchdog's settings")
	// ErrBMC is wrapped by every *CompletionError: the BMC answered with a
	// non-zero completion code.
	ErrBMC = errors.New("watchdog: BMC returned an error")
	// ErrShortResponse means the engine returned a response too short to
	// hold a completion code.
	ErrShortResponse = errors.New("watchdog: short response from the BMC")
)

// CompletionError is a non-zero completion code from the BMC.
type CompletionError struct {
	Cmd  uint8 // the command (netfn App)
	Code uint8 // the completion code
}

// Error says which command failed with which code.
func (e *CompletionError) Error() string {
	return fmt.Sprintf("watchdog: BMC answered cmd 0x%02x with completion code 0x%02x", e.Cmd, e.Code)
}

// Unwrap returns ErrBMC, so errors.Is(err, ErrBMC) matches.
func (e *CompletionError) Unwrap() error { return ErrBMC }

// Config configures a Watchdog. Only Submit is required.
type Config struct {
	// Submit queues one request on the engine (sched.Engine.Submit).
	// Every request goes on sched.LanePriority with a deadline. Required.
	Submit func(*sched.Request) error
	// Owner is the sched.Owner of every request. Zero means DefaultOwner.
	Owner sched.Owner
	// Timeout is the BMC countdown (100 ms resolution, at most
	// MaxTimeout). Zero means DefaultTimeout.
	Timeout time.Duration
	// Pretimeout is how long before expiry the BMC raises PreAction
	// (rounded up to whole seconds, at most MaxPretimeout, less than
	// Timeout). Zero disables it.
	Pretimeout time.Duration
	// Action is what the BMC does at expiry. The zero value is ActionNone
	// (the timer counts down and raises its pretimeout but the expiry does
	// nothing); the daemon's default is ActionReset.
	Action Action
	// PreAction is the interrupt raised at the pretimeout. Only PreMsgInt
	// reaches this daemon (through SMS_ATN and Pretimeout); SMI and NMI go
	// to firmware and the kernel.
	PreAction PreAction
	// NoWayOut keeps the timer running when the built-in patter stops and
	// when a /dev/watchdog opener closes, whatever it wrote; and makes
	// WDIOS_DISABLECARD fail with EBUSY.
	NoWayOut bool
	// PatInterval is how often the built-in patter pats. Zero means a third
	// of Timeout−Pretimeout (the time from a pat to the pretimeout).
	PatInterval time.Duration
	// RequestTimeout is the deadline of each IPMI request, from its
	// submission. Zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// IPMI10 says the BMC implements IPMI 1.0: the "don't stop" bit does
	// not exist, a Set stops the timer, so a Reset follows every Set
	// while the timer runs (as the kernel does for IPMI < 1.5).
	IPMI10 bool
	// Healthy, if set, is asked before every built-in pat; while it
	// returns false the patter skips pats, so a wedged daemon lets the BMC
	// take its action. It must not block.
	Healthy func() bool
	// PretimeoutExec, if not empty, is run with /bin/sh -c on each
	// pretimeout (one at a time; a pretimeout while it still runs does not
	// start another), with IPMI_CUSE_PRETIMEOUTS and
	// IPMI_CUSE_SINCE_LAST_PAT_MS in its environment. Its output is
	// logged.
	PretimeoutExec string
	// ExecTimeout bounds PretimeoutExec; its process group is killed after
	// it. Zero means DefaultExecTimeout.
	ExecTimeout time.Duration
	// Logger receives state changes (armed, stopped, pretimeout, pat
	// failures and recoveries). Nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time for the pat bookkeeping (Stats.LastPat,
	// the lateness logged at a pretimeout); nil means time.Now. Request
	// deadlines always use the wall clock, as the engine does.
	Now func() time.Time

	// StartNow makes Register start the timer (the kernel's start_now=1)
	// instead of stopping it.
	StartNow bool
	// PreOp is what a pretimeout does on the device side (the kernel's
	// preop). With PreNMI, PreOpGiveData becomes PreOpNone, as the kernel
	// does.
	PreOp PreOp
	// Panic is called once, on the first pretimeout, when PreOp is
	// PreOpPanic. The daemon crashes the kernel (sysrq 'c'); nil logs
	// that nothing could be done.
	Panic func()
	// PanicTimeout is the countdown Leave arms when the daemon stops while
	// the timer runs (the kernel's panic_wdt_timeout; see Leave). Zero
	// leaves the timer as it is.
	PanicTimeout time.Duration
	// GenericAPI makes /dev/watchdog answer as the generic Linux watchdog
	// API promises (the extras listed in the package doc) instead of as
	// the kernel's ipmi_watchdog does, and makes ActionNone run the timer.
	GenericAPI bool
}

// user says who drives the BMC timer.
type user uint8

const (
	userNone    user = iota
	userBuiltin      // Run
	userFile         // a /dev/watchdog opener
)

// Stats are the watchdog's counters, for logs and tests.
type Stats struct {
	// Running says the timer is meant to be counting down.
	Running bool
	// Sets and Pats count Set and Reset Watchdog Timer commands the BMC
	// accepted.
	Sets, Pats uint64
	// Failures counts heartbeats (pats, re-arms) that failed.
	Failures uint64
	// Rearms counts Resets answered 0x80, each followed by a Set.
	Rearms uint64
	// Pretimeouts counts calls of Pretimeout.
	Pretimeouts uint64
	// LastPat is when the countdown was last restarted (a Reset, or a Set
	// with "don't stop" while running); zero if never.
	LastPat time.Time
	// ExecRuns and ExecFailures count PretimeoutExec runs and the failed
	// ones; ExecSkipped counts pretimeouts that found one still running.
	ExecRuns, ExecFailures, ExecSkipped uint64
}

// Watchdog owns the BMC watchdog timer's settings and state. Two
// front-ends drive it, one at a time: the built-in patter (Run) and the
// /dev/watchdog device (Open, as a cuse.Device). Pretimeout is called by
// the daemon's attention handler.
type Watchdog struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration
	execCtx  context.Context
	execStop context.CancelFunc
	execWG   sync.WaitGroup

	// opMu serialises the BMC command sequences (the kernel's watchdog
	// mutex). It is held while waiting for the engine, so it is never
	// taken by Pretimeout, which may run on the engine goroutine. Lock
	// order: opMu, then mu.
	opMu sync.Mutex

	mu        sync.Mutex
	st        timerSettings
	startOnHB bool // a /dev/watchdog opener has not started the timer yet
	needSet   bool // the next heartbeat sends Set (after a pretimeout or a failed Set)
	needHB    bool // ... and a Reset after it (the failed Set was a start)
	user      user
	// expectClose is the magic 'V' seen by the last write.
	expectClose bool
	// pinged is WDIOF_KEEPALIVEPING for GETSTATUS: a heartbeat since the
	// last GETSTATUS.
	pinged     bool
	bootStat   int32
	bootKnown  bool
	dataToRead bool          // a pretimeout not yet read from /dev/watchdog
	readCh     chan struct{} // closed and replaced at each pretimeout
	userCh     chan struct{} // closed and replaced when a release starts or ends
	releasing  bool          // the open file's Release runs
	pollWake   func()
	execBusy   bool
	panicked   bool // PreOpPanic has called Panic
	exported   bool // ExportState ran: another process takes over
	imported   bool // ImportState ran: this process took over a timer
	stats      Stats
}

// New checks cfg, fills its defaults and returns a stopped Watchdog. It
// sends nothing to the BMC.
func New(cfg Config) (*Watchdog, error) {
	if cfg.Submit == nil {
		return nil, fmt.Errorf("%w: Submit is required", ErrConfig)
	}
	if cfg.Owner == 0 {
		cfg.Owner = DefaultOwner
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if err := checkTimes(cfg.Timeout, cfg.Pretimeout); err != nil {
		return nil, err
	}
	if cfg.Action > ActionPowerCycle {
		return nil, fmt.Errorf("%w: action %v", ErrConfig, cfg.Action)
	}
	if cfg.PreAction > PreMsgInt {
		return nil, fmt.Errorf("%w: pre-action %v", ErrConfig, cfg.PreAction)
	}
	if cfg.PreOp > PreOpGiveData {
		return nil, fmt.Errorf("%w: preop %v", ErrConfig, cfg.PreOp)
	}
	if cfg.PanicTimeout < 0 || cfg.PanicTimeout > MaxTimeout {
		return nil, fmt.Errorf("%w: panic timeout %v outside [0, %v]", ErrConfig, cfg.PanicTimeout, MaxTimeout)
	}
	if cfg.PatInterval < 0 || cfg.RequestTimeout < 0 || cfg.ExecTimeout < 0 {
		return nil, fmt.Errorf("%w: negative interval", ErrConfig)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.ExecTimeout == 0 {
		cfg.ExecTimeout = DefaultExecTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PreAction == PreNMI && cfg.PreOp == PreOpGiveData {
		cfg.Logger.Warn("watchdog: preop give-data does not work with an NMI pretimeout; using preop none, as the kernel does")
		cfg.PreOp = PreOpNone
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	w := &Watchdog{cfg: cfg, log: cfg.Logger, now: cfg.Now, readCh: make(chan struct{}), userCh: make(chan struct{})}
	w.interval = cfg.PatInterval
	if w.interval == 0 {
		w.interval = max((cfg.Timeout-cfg.Pretimeout)/3, 10*time.Millisecond)
	}
	w.st = timerSettings{
		action:     cfg.Action,
		preAction:  cfg.PreAction,
		timeout:    cfg.Timeout,
		pretimeout: cfg.Pretimeout,
		ipmi10:     cfg.IPMI10,
	}
	w.execCtx, w.execStop = context.WithCancel(context.Background())
	return w, nil
}

// checkTimes validates a timeout/pretimeout pair against what Set Watchdog
// Timer can carry and the BMC accepts (the pretimeout must fall inside the
// countdown).
func checkTimes(timeout, pretimeout time.Duration) error {
	if timeout < countdownUnit || timeout > MaxTimeout {
		return fmt.Errorf("%w: timeout %v outside [%v, %v]", ErrConfig, timeout, countdownUnit, MaxTimeout)
	}
	if pretimeout < 0 || pretimeout > MaxPretimeout {
		return fmt.Errorf("%w: pretimeout %v outside [0, %v]", ErrConfig, pretimeout, MaxPretimeout)
	}
	if pretimeout > 0 && time.Duration(pretimeoutSecs(pretimeout))*time.Second >= timeout {
		return fmt.Errorf("%w: pretimeout %v (whole seconds) not shorter than timeout %v", ErrConfig, pretimeout, timeout)
	}
	return nil
}

// PatInterval returns the built-in patter's interval after defaults.
func (w *Watchdog) PatInterval() time.Duration { return w.interval }

// Stats returns a snapshot of the counters.
func (w *Watchdog) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Running = w.st.running
	return s
}

// Close stops a running PretimeoutExec command (killing its process
// group) and waits for it. It does not touch the BMC timer: stopping Run
// does that.
func (w *Watchdog) Close() error {
	w.execStop()
	w.execWG.Wait()
	return nil
}

// Run is the built-in patter: it arms the BMC watchdog (Set Watchdog Timer
// with "don't stop", then Reset), pats it every PatInterval (while Healthy
// says so) until ctx is done, then stops the timer with a Set that clears
// "don't stop", unless NoWayOut. A failed arm or pat is logged and retried
// at the next interval (a failed Set is re-sent before the next Reset).
// Run returns ErrBusy if a /dev/watchdog opener holds the timer, and the
// error of the final stop, if any.
func (w *Watchdog) Run(ctx context.Context) error {
	if err := w.claim(userBuiltin); err != nil {
		return err
	}
	defer w.unclaim()

	w.log.Info("watchdog: arming the BMC watchdog",
		slog.Duration("timeout", w.cfg.Timeout), slog.Duration("pretimeout", w.cfg.Pretimeout),
		slog.String("action", w.cfg.Action.String()), slog.String("preaction", w.cfg.PreAction.String()),
		slog.Duration("pat_interval", w.interval), slog.Bool("nowayout", w.cfg.NoWayOut))
	failing := false
	note := func(err error, what string) {
		switch {
		case err != nil && ctx.Err() != nil:
			// Cancelled mid-request by shutdown: not a BMC failure.
		case err != nil:
			w.mu.Lock()
			w.stats.Failures++
			w.mu.Unlock()
			if !failing {
				w.log.Warn("watchdog: "+what+" failed; retrying at the next interval", slog.Any("err", err))
			}
			failing = true
		case failing:
			w.log.Info("watchdog: " + what + " succeeds again")
			failing = false
		}
	}

	w.opMu.Lock()
	err := w.startLocked(ctx)
	w.opMu.Unlock()
	note(err, "arming the BMC watchdog")

	tick := time.NewTicker(w.interval)
	defer tick.Stop()
	unhealthy := false
	for {
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), ErrHandover) {
				w.log.Info("watchdog: handing the BMC watchdog over to another process; it keeps running")
				return nil
			}
			return w.finish()
		case <-tick.C:
		}
		if w.cfg.Healthy != nil && !w.cfg.Healthy() {
			if !unhealthy {
				w.log.Error("watchdog: daemon unhealthy; not patting the BMC watchdog")
				unhealthy = true
			}
			continue
		}
		if unhealthy {
			w.log.Info("watchdog: daemon healthy again; patting the BMC watchdog")
			unhealthy = false
		}
		w.opMu.Lock()
		err := w.heartbeatLocked(ctx)
		w.opMu.Unlock()
		note(err, "patting the BMC watchdog")
	}
}

// finish is Run's clean shutdown: stop the timer unless NoWayOut.
func (w *Watchdog) finish() error {
	if w.cfg.NoWayOut {
		w.log.Warn("watchdog: nowayout: leaving the BMC watchdog running",
			slog.Duration("timeout", w.cfg.Timeout), slog.String("action", w.cfg.Action.String()))
		return nil
	}
	w.opMu.Lock()
	err := w.stopLocked(context.Background())
	w.opMu.Unlock()
	if err != nil {
		w.log.Error("watchdog: stopping the BMC watchdog failed", slog.Any("err", err))
		return fmt.Errorf("watchdog: stopping the BMC watchdog: %w", err)
	}
	w.log.Info("watchdog: BMC watchdog stopped")
	return nil
}

// claim makes u the timer's user, or fails with ErrBusy.
func (w *Watchdog) claim(u user) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.user != userNone {
		return ErrBusy
	}
	w.user = u
	return nil
}

func (w *Watchdog) unclaim() {
	w.mu.Lock()
	w.user = userNone
	w.mu.Unlock()
}

// Pretimeout reports that the BMC raised the watchdog pretimeout (flag
// 0x08 of Get Message Flags, already cleared by the caller). It logs one
// error line with how late the last pat was, counts it, does the PreOp
// (PreOpGiveData: one byte readable on /dev/watchdog, readers and pollers
// woken; PreOpPanic: Config.Panic, once), makes the next heartbeat re-send
// the full Set (as the kernel does), and starts PretimeoutExec in the
// background. It never blocks and sends nothing (Panic aside), so it may
// be called from the engine goroutine.
func (w *Watchdog) Pretimeout() {
	now := w.now()
	w.mu.Lock()
	w.stats.Pretimeouts++
	n := w.stats.Pretimeouts
	w.needSet = true
	var wake func()
	if w.givesData() {
		w.dataToRead = true
		close(w.readCh)
		w.readCh = make(chan struct{})
		wake = w.pollWake
		w.pollWake = nil
	}
	doPanic := w.cfg.PreOp == PreOpPanic && w.cfg.PreAction != PreNone && !w.panicked
	if doPanic {
		w.panicked = true
	}
	last := w.stats.LastPat
	st := w.st
	startExec := w.cfg.PretimeoutExec != "" && !w.execBusy && w.execCtx.Err() == nil
	if startExec {
		w.execBusy = true
		w.execWG.Add(1)
	} else if w.cfg.PretimeoutExec != "" {
		w.stats.ExecSkipped++
	}
	w.mu.Unlock()

	since := time.Duration(-1)
	attrs := []any{slog.Uint64("count", n), slog.Bool("running", st.running),
		slog.Duration("pretimeout_after", st.timeout-st.pretimeout), slog.Duration("timeout", st.timeout)}
	if !last.IsZero() {
		since = now.Sub(last)
		attrs = append(attrs, slog.Duration("since_last_pat", since))
	} else {
		attrs = append(attrs, slog.String("since_last_pat", "never"))
	}
	w.log.Error("watchdog: BMC watchdog pretimeout: the watchdog was not patted in time", attrs...)
	if doPanic {
		if w.cfg.Panic == nil {
			w.log.Error("watchdog: preop panic: no way to panic the host configured")
		} else {
			w.log.Error("watchdog: preop panic: panicking the host")
			w.cfg.Panic()
		}
	}
	if wake != nil {
		wake()
	}
	if startExec {
		go w.runExec(n, since)
	} else if w.cfg.PretimeoutExec != "" {
		w.log.Warn("watchdog: pretimeout command still running; not starting another")
	}
}

// errnoOf maps a watchdog error to what a /dev/watchdog caller sees: the
// kernel's EIO for lost settings and EINVAL for an error completion code;
// EINVAL for a bad argument; EINTR when the caller was interrupted; EIO for
// anything else (the request never got an answer).
func errnoOf(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, ErrBMC), errors.Is(err, ErrConfig):
		return syscall.EINVAL
	}
	return syscall.EIO
}
