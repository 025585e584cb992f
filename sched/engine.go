package sched

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Sentinel errors. Callers branch on them with errors.Is; the ioctl layer
// maps them to completion codes.
var (
	// ErrClosed is returned by Submit after Close, and set on every request
	// still queued when the engine closes.
	ErrClosed = errors.New("sched: engine closed")
	// ErrQueueFull is returned by Submit when the owner's normal-lane queue
	// (or the priority lane) already holds its limit of requests.
	ErrQueueFull = errors.New("sched: queue full")
	// ErrDeadline is set on a request whose deadline passed while it was
	// still queued; the request never reached the BMC. It wraps
	// os.ErrDeadlineExceeded, so one errors.Is check covers it and a
	// transport timeout alike.
	ErrDeadline = fmt.Errorf("sched: deadline passed before the request reached the BMC: %w", os.ErrDeadlineExceeded)
	// ErrBMCUnresponsive is set on normal-lane requests while the BMC is
	// marked unresponsive (see Config.UnresponsiveAfter): they fail at once
	// instead of each waiting for a transport timeout.
	ErrBMCUnresponsive = errors.New("sched: BMC unresponsive")
	// ErrInvalidRequest is returned by Submit for a request the engine cannot
	// queue (nil Done, message shorter than netfn+cmd, unknown lane, no
	// deadline).
	ErrInvalidRequest = errors.New("sched: invalid request")
	// ErrYield is returned, without touching the hardware, by the TxFunc
	// given to Config.OnAttention when the hook should stop for now: a
	// priority request is waiting, or the turn's AttentionBudget is spent.
	// The hook keeps its state and returns true; the engine calls it again
	// after serving the priority lane (and one normal request, if any wait).
	ErrYield = errors.New("sched: attention work yields to queued requests")
)

// Transport carries one IPMI message to the BMC and back. kcs.Host
// satisfies it.
//
// msg is netfn<<2|lun, cmd, data...; the response (netfn<<2|lun, cmd,
// completion code, data...) is appended to resp[:0] and returned. The
// transport bounds its own time by the earlier of deadline and its own
// transaction timeout, and reports a timeout with an error that satisfies
// errors.Is(err, os.ErrDeadlineExceeded). The engine calls it from one
// goroutine only.
type Transport interface {
	Transact(msg, resp []byte, deadline time.Time) ([]byte, error)
}

// TxFunc runs one transaction on the engine goroutine, with the same
// contract as Transport.Transact. Its outcome counts towards BMC health.
type TxFunc func(msg, resp []byte, deadline time.Time) ([]byte, error)

// Config tunes an Engine. The zero value gives the defaults.
type Config struct {
	// MaxQueuePerOwner bounds one owner's normal-lane queue; Submit returns
	// ErrQueueFull beyond it. Default 128.
	MaxQueuePerOwner int
	// MaxPriorityQueue bounds the priority lane. Default 64.
	MaxPriorityQueue int
	// UnresponsiveAfter is the number of consecutive transport timeouts
	// after which the BMC is marked unresponsive. Every timeout counts,
	// including one caused by a request's own short deadline. Default 3.
	UnresponsiveAfter int
	// ProbeInterval is how often, at most, the engine sends a Get Device ID
	// probe while the BMC is unresponsive. Default 1 s.
	ProbeInterval time.Duration
	// ProbeTimeout is the deadline given to each probe. Default
	// ProbeInterval.
	ProbeTimeout time.Duration
	// Logger receives one line per BMC health change. Default
	// slog.Default().
	Logger *slog.Logger

	// Idle, if set, is called on the engine goroutine when the queues are
	// empty and the BMC is healthy: once after each burst of requests, and
	// every IdleInterval while nothing else happens (if IdleInterval > 0).
	// It may run transactions with tx (for example Get Message Flags and the
	// attention chain) without racing the engine for the hardware. Requests
	// submitted meanwhile, priority ones included, wait until Idle returns,
	// so Idle should run only a few short-deadline transactions.
	Idle func(tx TxFunc)
	// IdleInterval is how often Idle runs while the engine has no requests.
	// Zero means only after bursts.
	IdleInterval time.Duration

	// Attention, if set, is a cheap check of whether the BMC asks for
	// attention (for KCS: SMS_ATN in the status register, what
	// kcs.Host.Attention reads). The engine calls it on its goroutine after
	// every transaction and every AttentionInterval while it has no
	// requests. When it reports true, OnAttention runs before the next
	// normal-lane request, as the kernel's ipmi_si handles ATN before
	// taking a new message, but never before a waiting priority request.
	Attention func() bool
	// OnAttention handles an attention with tx (Get Message Flags and the
	// work the flags ask for) and reports whether work remains. tx returns
	// ErrYield instead of transacting once a priority request is waiting or
	// AttentionBudget transactions ran in this turn; the hook should then
	// keep its state and return true. The engine calls it again after the
	// priority lane and, if the previous turn was also attention work, one
	// normal-lane request, so attention that never clears (a BMC that
	// keeps SMS_ATN asserted) cannot starve either lane. After it returns
	// false the engine calls Attention again after the next transaction or
	// AttentionInterval. Both hooks run only while
	// the BMC is healthy; OnAttention must not block on anything that needs
	// the engine.
	OnAttention func(tx TxFunc) (more bool)
	// AttentionBudget is the most transactions one OnAttention turn may
	// run. Default 4.
	AttentionBudget int
	// AttentionInterval is how often Attention is polled while the engine
	// has no requests. Default 100 ms.
	AttentionInterval time.Duration

	// InlineMax is the longest a transaction may have taken for
	// ServeInline to run the next one on its caller's goroutine: after a
	// slower or failed one, ServeInline refuses (the caller submits), so a
	// slow or stalled BMC holds only the engine's goroutine, never the
	// caller's. Default 2 ms.
	InlineMax time.Duration

	// SingleFIFO is a test knob, not for production: it disables the
	// priority lane and per-owner round-robin, serving every request in
	// submission order from one unbounded queue, like a driver with one
	// FIFO. Scenario tests use it to prove that without priority the
	// watchdog starves. Deadlines and health tracking still apply.
	SingleFIFO bool
}

const (
	defaultMaxQueuePerOwner  = 128
	defaultMaxPriorityQueue  = 64
	defaultUnresponsiveAfter = 3
	defaultProbeInterval     = time.Second
	defaultAttentionBudget   = 4
	defaultAttentionInterval = 100 * time.Millisecond
	defaultInlineMax         = 2 * time.Millisecond
)

// Stats is a snapshot of an engine's counters and state.
type Stats struct {
	// CompletedNormal and CompletedPriority count Done calls per lane,
	// whatever the outcome.
	CompletedNormal, CompletedPriority uint64
	// Transacted counts requests that reached the transport.
	Transacted uint64
	// Expired counts requests completed with ErrDeadline without touching
	// the hardware.
	Expired uint64
	// FailedFast counts normal-lane requests completed with
	// ErrBMCUnresponsive.
	FailedFast uint64
	// Closed counts requests completed with ErrClosed.
	Closed uint64
	// TransportErrors counts failed transactions (requests, probes and Idle
	// transactions); Timeouts counts those that were timeouts.
	TransportErrors, Timeouts uint64
	// Probes counts Get Device ID probes sent while unresponsive.
	Probes uint64
	// Inline counts requests served by ServeInline on the caller's
	// goroutine (they count in Transacted too).
	Inline uint64
	// AttentionTurns counts OnAttention calls; AttentionTx counts the
	// transactions they ran; AttentionYields counts ErrYield refusals.
	AttentionTurns, AttentionTx, AttentionYields uint64
	// Healthy is false while the BMC is marked unresponsive.
	Healthy bool
	// ConsecutiveTimeouts is the current run of transport timeouts.
	ConsecutiveTimeouts int
	// QueuedNormal and QueuedPriority are the current queue depths;
	// Owners is the number of owners with normal-lane requests waiting.
	QueuedNormal, QueuedPriority, Owners int
}

// Engine is the single owner of a Transport. Requests are queued with
// Submit; one goroutine, started by New and stopped by Close, serves them:
//
//   - Between two transactions it first completes every queued request whose
//     deadline has passed (ErrDeadline, no hardware), then takes the priority
//     lane before the normal lane, so a priority request waits at most for
//     the one transaction in progress, whose time the transport bounds.
//   - The normal lane is round-robin across owners, one request per owner
//     per turn.
//   - After Config.UnresponsiveAfter consecutive transport timeouts the BMC
//     is unresponsive: normal requests fail at once with
//     ErrBMCUnresponsive, priority requests still go to the hardware, and a
//     Get Device ID probe goes out every Config.ProbeInterval. The first
//     successful transaction makes it healthy again.
//
// Expired requests are completed on the engine goroutine, so they are
// completed at the latest when the transaction in progress ends. This keeps
// every Done call on one goroutine (as Request documents) at the cost of
// lateness bounded by one transaction; the backlog of a dead BMC still
// drains in one sweep instead of one timeout per request.
type Engine struct {
	t   Transport
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	closed   bool
	prio     ring
	fifo     ring // SingleFIFO mode only
	byOwner  map[Owner]*ownerQueue
	active   ownerList
	free     []*ownerQueue
	nNormal  int
	earliest time.Time // lower bound of the earliest queued deadline; zero when nothing is queued

	// The engine's state below "Owned by the engine goroutine" belongs to
	// whoever holds the engine: its goroutine while it is not waiting
	// (busy), or a ServeInline caller (inline). Both flags change under mu.
	busy   bool
	inline bool
	missed bool // the engine goroutine woke while a ServeInline call held it

	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	// pause is the Pause in progress or in effect (nil: running); guarded
	// by mu.
	pause *pauseState
	// lastTurn is when the engine goroutine last went round its loop
	// (UnixNano), for Alive.
	lastTurn atomic.Int64

	// Owned by the engine goroutine.
	timer      *time.Timer
	scratch    []*Request
	healthy    bool
	consec     int
	downSince  time.Time
	nextProbe  time.Time
	worked     bool
	lastIdle   time.Time
	idleTx     TxFunc
	probeMsg   []byte
	probeResp  []byte
	healthyA   atomic.Bool
	consecA    atomic.Int64
	cNormal    atomic.Uint64
	cPriority  atomic.Uint64
	cTransact  atomic.Uint64
	cExpired   atomic.Uint64
	cFailFast  atomic.Uint64
	cClosed    atomic.Uint64
	cTransErr  atomic.Uint64
	cTimeouts  atomic.Uint64
	cProbes    atomic.Uint64
	cInline    atomic.Uint64
	cAttnTurns atomic.Uint64
	cAttnTx    atomic.Uint64
	cAttnYield atomic.Uint64
	attnDue    bool      // Attention reported true (or OnAttention has more to do)
	attnRan    bool      // the last turn was attention work, not a normal request
	attnBudget int       // transactions left in the current attention turn
	attnPolled time.Time // last Attention call
	attnTx     TxFunc
	obs        observations // see observe.go
	lastTxSlow bool         // the last transaction failed or took longer than InlineMax
	maxFree    int
	ownerLimit int
}

// New returns an engine serving t and starts its goroutine; stop it with
// Close or Shutdown.
func New(t Transport, cfg Config) *Engine {
	if cfg.MaxQueuePerOwner <= 0 {
		cfg.MaxQueuePerOwner = defaultMaxQueuePerOwner
	}
	if cfg.MaxPriorityQueue <= 0 {
		cfg.MaxPriorityQueue = defaultMaxPriorityQueue
	}
	if cfg.UnresponsiveAfter <= 0 {
		cfg.UnresponsiveAfter = defaultUnresponsiveAfter
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = defaultProbeInterval
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = cfg.ProbeInterval
	}
	if cfg.AttentionBudget <= 0 {
		cfg.AttentionBudget = defaultAttentionBudget
	}
	if cfg.AttentionInterval <= 0 {
		cfg.AttentionInterval = defaultAttentionInterval
	}
	if cfg.InlineMax <= 0 {
		cfg.InlineMax = defaultInlineMax
	}
	e := &Engine{
		t:         t,
		cfg:       cfg,
		log:       cfg.Logger,
		byOwner:   make(map[Owner]*ownerQueue),
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		timer:     time.NewTimer(time.Hour),
		healthy:   true,
		probeMsg:  []byte{0x06 << 2, 0x01}, // App netfn, Get Device ID
		probeResp: make([]byte, 0, 64),
		maxFree:   256,
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	e.timer.Stop()
	e.healthyA.Store(true)
	e.obs.init()
	e.idleTx = e.transact
	e.attnTx = e.attentionTx
	e.ownerLimit = cfg.MaxQueuePerOwner
	go e.run()
	return e
}

// Submit queues r. It returns ErrInvalidRequest (wrapped), ErrQueueFull
// (wrapped) or ErrClosed without calling r.Done; otherwise the engine
// calls r.Done exactly once later, from its goroutine, with r.Resp and
// r.Err filled in. r.Deadline must be set.
func (e *Engine) Submit(r *Request) error {
	if err := validate(r); err != nil {
		return err
	}
	r.Err = nil
	r.submitted = time.Now()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	switch {
	case e.cfg.SingleFIFO:
		e.fifo.push(r, math.MaxInt)
	case r.Lane == LanePriority:
		if !e.prio.push(r, e.cfg.MaxPriorityQueue) {
			e.mu.Unlock()
			return fmt.Errorf("%w: priority lane holds %d requests", ErrQueueFull, e.cfg.MaxPriorityQueue)
		}
	default:
		o := e.byOwner[r.Owner]
		if o == nil {
			o = e.newOwnerQueue(r.Owner)
		}
		if !o.q.push(r, e.ownerLimit) {
			e.mu.Unlock()
			return fmt.Errorf("%w: owner %d has %d requests queued", ErrQueueFull, r.Owner, e.ownerLimit)
		}
		if o.q.n == 1 {
			e.active.pushBack(o)
		}
		e.nNormal++
	}
	if e.earliest.IsZero() || r.Deadline.Before(e.earliest) {
		e.earliest = r.Deadline
	}
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return nil
}

func validate(r *Request) error {
	switch {
	case r == nil:
		return fmt.Errorf("%w: nil request", ErrInvalidRequest)
	case r.Done == nil:
		return fmt.Errorf("%w: no Done function", ErrInvalidRequest)
	case len(r.Msg) < 2:
		return fmt.Errorf("%w: message of %d bytes, need netfn and cmd", ErrInvalidRequest, len(r.Msg))
	case r.Lane != LaneNormal && r.Lane != LanePriority:
		return fmt.Errorf("%w: unknown lane %d", ErrInvalidRequest, r.Lane)
	case r.Deadline.IsZero():
		return fmt.Errorf("%w: no deadline", ErrInvalidRequest)
	}
	return nil
}

// ServeInline runs r on the calling goroutine if the engine is idle: no
// transaction or hook is running, nothing is queued on either lane, the BMC
// is healthy, no attention work is due, and the last transaction succeeded
// within Config.InlineMax. That is exactly when the engine
// goroutine would take r next, so the order of service, the priority lane
// and round-robin are unchanged; what it saves is the hand-off to the
// engine's goroutine and back, two thread switches per request when that
// goroutine is locked to its own thread. r.Done is called before
// ServeInline returns true, on the calling goroutine. When it returns false
// nothing happened to r, and the caller submits it as usual.
//
// The transport is then called from the caller's goroutine: the caller
// must be able to reach the hardware from its thread (see
// kcs.Host.AnyThread), and it is held for the transaction's time, up to the
// transport's own timeout when the BMC stalls.
func (e *Engine) ServeInline(r *Request) bool {
	if validate(r) != nil {
		return false
	}
	e.mu.Lock()
	if e.closed || e.busy || e.inline || e.pause != nil || e.cfg.SingleFIFO || e.prio.n > 0 || e.nNormal > 0 {
		e.mu.Unlock()
		return false
	}
	e.inline = true
	e.mu.Unlock()
	defer e.releaseInline() // even if Done panics: the engine must not stay held

	served := e.healthy && !e.attnDue && !e.lastTxSlow
	if served {
		r.Err = nil
		now := time.Now()
		r.submitted = now
		if !now.Before(r.Deadline) {
			r.Err = ErrDeadline
			e.cExpired.Add(1)
			e.complete(r, time.Time{})
		} else {
			e.cInline.Add(1)
			priority := r.Lane == LanePriority
			end := e.serve(r, now)
			if !priority {
				e.attnRan = false
			}
			e.pollAttention(end)
		}
	}
	return served
}

// releaseInline ends a ServeInline call's hold on the engine and wakes the
// engine goroutine if it has work (or woke meanwhile); otherwise it stays
// asleep, and the request cost no thread switch at all.
func (e *Engine) releaseInline() {
	e.mu.Lock()
	e.inline = false
	wake := e.missed || e.prio.n > 0 || e.nNormal > 0 || e.attnDue || !e.healthy || (e.worked && e.cfg.Idle != nil)
	e.missed = false
	e.mu.Unlock()
	if wake {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// Close stops the engine: Submit returns ErrClosed from now on, the
// transaction in progress (if any) finishes, every queued request completes
// with ErrClosed, and the goroutine exits before Close returns.
func (e *Engine) Close() error {
	return e.Shutdown(context.Background())
}

// Shutdown is Close with a bound on the wait: it returns ctx.Err() if the
// transaction in progress outlasts ctx. The engine still completes every
// queued request with ErrClosed when that transaction ends.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.stop)
	}
	e.mu.Unlock()
	select {
	case <-e.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sched: shutdown: %w", ctx.Err())
	}
}

// Stats returns a snapshot of the engine's counters and state.
func (e *Engine) Stats() Stats {
	s := Stats{
		CompletedNormal:     e.cNormal.Load(),
		CompletedPriority:   e.cPriority.Load(),
		Transacted:          e.cTransact.Load(),
		Expired:             e.cExpired.Load(),
		FailedFast:          e.cFailFast.Load(),
		Closed:              e.cClosed.Load(),
		TransportErrors:     e.cTransErr.Load(),
		Timeouts:            e.cTimeouts.Load(),
		Probes:              e.cProbes.Load(),
		Inline:              e.cInline.Load(),
		AttentionTurns:      e.cAttnTurns.Load(),
		AttentionTx:         e.cAttnTx.Load(),
		AttentionYields:     e.cAttnYield.Load(),
		Healthy:             e.healthyA.Load(),
		ConsecutiveTimeouts: int(e.consecA.Load()),
	}
	e.mu.Lock()
	s.QueuedNormal = e.nNormal
	s.QueuedPriority = e.prio.n
	s.Owners = e.active.n
	if e.cfg.SingleFIFO {
		s.QueuedNormal = e.fifo.n
	}
	e.mu.Unlock()
	return s
}

// newOwnerQueue returns an empty queue for owner, registered in byOwner but
// not yet in the round-robin list. Called with mu held.
func (e *Engine) newOwnerQueue(owner Owner) *ownerQueue {
	var o *ownerQueue
	if n := len(e.free); n > 0 {
		o = e.free[n-1]
		e.free[n-1] = nil
		e.free = e.free[:n-1]
	} else {
		o = new(ownerQueue)
	}
	o.owner = owner
	e.byOwner[owner] = o
	return o
}

// releaseOwner forgets an emptied owner queue, keeping its storage for
// reuse. Called with mu held, after o left the round-robin list.
func (e *Engine) releaseOwner(o *ownerQueue) {
	delete(e.byOwner, o.owner)
	if len(e.free) < e.maxFree {
		o.q.head = 0
		e.free = append(e.free, o)
	}
}

// run is the engine goroutine: the only caller of the transport.
func (e *Engine) run() {
	defer close(e.done)
	for {
		e.mu.Lock()
		if e.inline {
			// A ServeInline caller holds the engine; it wakes us when it
			// is done.
			e.missed = true
			e.mu.Unlock()
			select {
			case <-e.wake:
			case <-e.stop:
				// Keep waiting for the caller: Close must not return while
				// a transaction it does not know about runs.
				<-e.wake
			}
			continue
		}
		e.busy = true
		if e.closed {
			out := e.drainAll(e.scratch[:0])
			e.mu.Unlock()
			e.completeAll(out)
			return
		}
		e.lastTurn.Store(time.Now().UnixNano())
		if e.pause != nil && e.idleLocked() {
			e.holdLocked() // unlocks mu
			continue
		}
		now := time.Now()
		out := e.scratch[:0]
		if !e.earliest.IsZero() && !now.Before(e.earliest) {
			out = e.sweep(now, out)
		}
		if !e.healthy {
			out = e.failNormal(out)
		}
		r := e.nextPriority()
		attnTurn := false
		if r == nil {
			// Attention before the next normal request, unless the last
			// turn was attention work and a normal request is waiting.
			attnTurn = e.attnDue && e.healthy && e.cfg.OnAttention != nil && !(e.attnRan && e.normalWaiting())
			if !attnTurn {
				r = e.nextNormal()
			}
		}
		e.mu.Unlock()
		e.completeAll(out)

		if r != nil {
			priority := r.Lane == LanePriority
			end := e.serve(r, time.Now())
			if !priority || e.cfg.SingleFIFO {
				e.attnRan = false
			}
			e.pollAttention(end)
			continue
		}
		if attnTurn {
			e.runAttention()
			continue
		}
		if !e.healthy {
			if !now.Before(e.nextProbe) {
				e.probe(now)
				continue
			}
			e.wait(e.nextProbe)
			continue
		}
		if e.cfg.Attention != nil && !now.Before(e.attnPolled.Add(e.cfg.AttentionInterval)) {
			e.pollAttention(now)
			if e.attnDue {
				continue
			}
		}
		var until time.Time
		if e.cfg.Idle != nil {
			due := e.cfg.IdleInterval > 0 && !now.Before(e.lastIdle.Add(e.cfg.IdleInterval))
			if e.worked || due {
				e.worked = false
				e.cfg.Idle(e.idleTx)
				e.lastIdle = time.Now()
				continue
			}
			if e.cfg.IdleInterval > 0 {
				until = e.lastIdle.Add(e.cfg.IdleInterval)
			}
		}
		if e.cfg.Attention != nil {
			if next := e.attnPolled.Add(e.cfg.AttentionInterval); until.IsZero() || next.Before(until) {
				until = next
			}
		}
		e.wait(until)
	}
}

// pollAttention calls Config.Attention, if set and nothing is pending yet.
func (e *Engine) pollAttention(now time.Time) {
	if e.cfg.Attention == nil || e.attnDue || !e.healthy {
		return
	}
	e.attnPolled = now
	e.attnDue = e.cfg.Attention()
}

// runAttention runs one OnAttention turn with a fresh budget.
func (e *Engine) runAttention() {
	e.cAttnTurns.Add(1)
	e.attnBudget = e.cfg.AttentionBudget
	more := e.cfg.OnAttention(e.attnTx)
	e.attnRan = true
	e.attnDue = more
	// When the hook is done, Attention is polled again after the next
	// transaction or AttentionInterval, not at once: a BMC that keeps
	// SMS_ATN asserted for a flag nobody handles costs one turn per
	// AttentionInterval, not a busy loop.
	e.attnPolled = time.Now()
}

// attentionTx is the TxFunc given to OnAttention: it refuses with ErrYield
// once the turn's budget is spent or a priority request waits.
func (e *Engine) attentionTx(msg, resp []byte, deadline time.Time) ([]byte, error) {
	yield := e.attnBudget <= 0
	if !yield && !e.cfg.SingleFIFO {
		e.mu.Lock()
		yield = e.prio.n > 0 || e.closed
		e.mu.Unlock()
	}
	if yield {
		e.cAttnYield.Add(1)
		return resp[:0], ErrYield
	}
	e.attnBudget--
	e.cAttnTx.Add(1)
	return e.transact(msg, resp, deadline)
}

// wait blocks until a submit, Close, or the time until (if not zero). The
// engine is not busy while it waits: a ServeInline call may take it.
func (e *Engine) wait(until time.Time) {
	e.mu.Lock()
	e.busy = false
	e.mu.Unlock()
	if until.IsZero() {
		select {
		case <-e.wake:
		case <-e.stop:
		}
		return
	}
	e.timer.Reset(time.Until(until))
	select {
	case <-e.wake:
	case <-e.stop:
	case <-e.timer.C:
	}
	e.timer.Stop()
}

// next dequeues the request to serve when no attention work is due:
// priority lane first, then the next owner in round-robin order. Called
// with mu held.
func (e *Engine) next() *Request {
	if r := e.nextPriority(); r != nil {
		return r
	}
	return e.nextNormal()
}

// nextPriority dequeues the next priority-lane request, or in SingleFIFO
// mode nothing (nextNormal serves the one queue). Called with mu held.
func (e *Engine) nextPriority() *Request {
	if e.cfg.SingleFIFO {
		return nil
	}
	return e.prio.pop()
}

// normalWaiting reports whether a normal-lane request (or, in SingleFIFO
// mode, any request) is queued. Called with mu held.
func (e *Engine) normalWaiting() bool {
	if e.cfg.SingleFIFO {
		return e.fifo.n > 0
	}
	return e.nNormal > 0
}

// nextNormal dequeues the next owner's request in round-robin order (in
// SingleFIFO mode, the head of the one queue). While unresponsive the
// normal lane was failed just before, so only the priority lane is served.
// Called with mu held.
func (e *Engine) nextNormal() *Request {
	if e.cfg.SingleFIFO {
		return e.fifo.pop()
	}
	o := e.active.head
	if o == nil {
		return nil
	}
	r := o.q.pop()
	e.nNormal--
	e.active.remove(o)
	if o.q.n > 0 {
		e.active.pushBack(o)
	} else {
		e.releaseOwner(o)
	}
	return r
}

// sweep moves every queued request whose deadline is not after now to out
// with ErrDeadline and recomputes the earliest deadline. Called with mu
// held.
func (e *Engine) sweep(now time.Time, out []*Request) []*Request {
	var earliest time.Time
	keep := func(d time.Time) {
		if !d.IsZero() && (earliest.IsZero() || d.Before(earliest)) {
			earliest = d
		}
	}
	var d time.Time
	out, d = e.prio.expire(now, out, ErrDeadline)
	keep(d)
	out, d = e.fifo.expire(now, out, ErrDeadline)
	keep(d)
	for o := e.active.head; o != nil; {
		next := o.next
		before := o.q.n
		out, d = o.q.expire(now, out, ErrDeadline)
		keep(d)
		e.nNormal -= before - o.q.n
		if o.q.n == 0 {
			e.active.remove(o)
			e.releaseOwner(o)
		}
		o = next
	}
	e.earliest = earliest
	return out
}

// failNormal moves every normal-lane request to out with
// ErrBMCUnresponsive. Called with mu held.
func (e *Engine) failNormal(out []*Request) []*Request {
	if e.cfg.SingleFIFO {
		n := e.fifo.n
		for i := 0; i < n; i++ {
			r := e.fifo.pop()
			if r.Lane == LanePriority {
				e.fifo.push(r, math.MaxInt)
				continue
			}
			r.Err = ErrBMCUnresponsive
			out = append(out, r)
		}
		return out
	}
	for o := e.active.head; o != nil; o = e.active.head {
		out = o.q.drain(out, ErrBMCUnresponsive)
		e.active.remove(o)
		e.releaseOwner(o)
	}
	e.nNormal = 0
	return out
}

// drainAll moves every queued request to out with ErrClosed. Called with mu
// held.
func (e *Engine) drainAll(out []*Request) []*Request {
	out = e.prio.drain(out, ErrClosed)
	out = e.fifo.drain(out, ErrClosed)
	for o := e.active.head; o != nil; o = e.active.head {
		out = o.q.drain(out, ErrClosed)
		e.active.remove(o)
		e.releaseOwner(o)
	}
	e.nNormal = 0
	e.earliest = time.Time{}
	return out
}

// completeAll calls Done on each request in out (outside mu) and keeps
// out's storage for the next round.
func (e *Engine) completeAll(out []*Request) {
	for _, r := range out {
		switch r.Err {
		case ErrDeadline:
			e.cExpired.Add(1)
		case ErrBMCUnresponsive:
			e.cFailFast.Add(1)
		case ErrClosed:
			e.cClosed.Add(1)
		}
		e.complete(r, time.Time{})
	}
	clear(out)
	e.scratch = out[:0]
}

// complete counts and observes r and calls its Done; start is when it
// reached the transport (zero if it never did).
func (e *Engine) complete(r *Request, start time.Time) {
	e.completeAt(r, start, time.Now())
}

// completeAt is complete with the clock already read (now).
func (e *Engine) completeAt(r *Request, start, now time.Time) {
	if r.Lane == LanePriority {
		e.cPriority.Add(1)
	} else {
		e.cNormal.Add(1)
	}
	e.obs.observe(r, start, now)
	r.Done(r)
}

// serve runs r on the transport from start (the caller's reading of the
// clock), completes it, and returns when the transport finished. Reading
// the clock twice per request, not six times, matters where a reading is
// slow (an emulated clock source).
func (e *Engine) serve(r *Request, start time.Time) (end time.Time) {
	e.worked = true
	e.cTransact.Add(1)
	resp, end, err := e.transactFrom(start, r.Msg, r.Resp[:0], r.Deadline)
	r.Resp = resp
	if err != nil {
		r.Err = fmt.Errorf("sched: %s request netfn %#x cmd %#x: %w", r.Lane, r.Msg[0]>>2, r.Msg[1], err)
	}
	e.completeAt(r, start, end)
	return end
}

// probe sends Get Device ID to learn whether an unresponsive BMC is back.
func (e *Engine) probe(now time.Time) {
	e.cProbes.Add(1)
	e.nextProbe = now.Add(e.cfg.ProbeInterval)
	e.probeResp, _ = e.transact(e.probeMsg, e.probeResp[:0], now.Add(e.cfg.ProbeTimeout))
}

// transact calls the transport and updates BMC health from the outcome.
func (e *Engine) transact(msg, resp []byte, deadline time.Time) ([]byte, error) {
	resp, _, err := e.transactFrom(time.Now(), msg, resp, deadline)
	return resp, err
}

// transactFrom is transact with the clock read at start; it returns the
// clock's reading when the transport returned.
func (e *Engine) transactFrom(start time.Time, msg, resp []byte, deadline time.Time) ([]byte, time.Time, error) {
	resp, err := e.t.Transact(msg, resp, deadline)
	end := time.Now()
	e.lastTxSlow = err != nil || end.Sub(start) > e.cfg.InlineMax
	switch {
	case err == nil:
		if !e.healthy {
			e.healthy = true
			e.healthyA.Store(true)
			e.obs.healthUp.Add(1)
			e.log.Info("BMC responsive again",
				"down_for", time.Since(e.downSince).Round(time.Millisecond),
				"consecutive_timeouts", e.consec)
		}
		e.consec = 0
		e.consecA.Store(0)
	case errors.Is(err, os.ErrDeadlineExceeded):
		e.cTransErr.Add(1)
		e.cTimeouts.Add(1)
		e.consec++
		e.consecA.Store(int64(e.consec))
		if e.healthy && e.consec >= e.cfg.UnresponsiveAfter {
			now := time.Now()
			e.healthy = false
			e.healthyA.Store(false)
			e.obs.healthDown.Add(1)
			e.downSince = now
			e.nextProbe = now.Add(e.cfg.ProbeInterval)
			e.log.Warn("BMC unresponsive; failing normal requests fast and probing",
				"consecutive_timeouts", e.consec,
				"probe_interval", e.cfg.ProbeInterval,
				"last_error", err)
		}
	default:
		e.cTransErr.Add(1)
	}
	return resp, end, err
}

// String names the lane for logs and errors.
func (l Lane) String() string {
	switch l {
	case LaneNormal:
		return "normal"
	case LanePriority:
		return "priority"
	}
	return fmt.Sprintf("lane(%d)", uint8(l))
}
