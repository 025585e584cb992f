package bmcsim

import (
	"log/slog"
	"time"
)

// TimeoutAction is what the watchdog does on expiry (IPMI v2.0 §27.6,
// Set Watchdog Timer byte 2 bits 2:0).
type TimeoutAction byte

// Watchdog timeout actions.
const (
	ActionNone       TimeoutAction = 0
	ActionHardReset  TimeoutAction = 1
	ActionPowerDown  TimeoutAction = 2
	ActionPowerCycle TimeoutAction = 3
)

// String names the action for logs.
func (a TimeoutAction) String() string {
	switch a {
	case ActionNone:
		return "none"
	case ActionHardReset:
		return "hard-reset"
	case ActionPowerDown:
		return "power-down"
	case ActionPowerCycle:
		return "power-cycle"
	}
	return "invalid"
}

// Pretimeout interrupt types (Set Watchdog Timer byte 2 bits 6:4).
const (
	PretimeoutNone = 0
	PretimeoutSMI  = 1
	PretimeoutNMI  = 2
	PretimeoutMsg  = 3 // messaging interrupt
)

// tick is the watchdog's countdown unit.
const tick = 100 * time.Millisecond

// watchdog is the state of the BMC's watchdog timer. All fields are
// guarded by BMC.mu.
type watchdog struct {
	initialised bool // a Set Watchdog Timer came since reset
	running     bool
	dontLog     bool
	use         byte // timer use 1..5
	intType     byte // pretimeout interrupt type
	action      TimeoutAction
	preSecs     byte   // pretimeout interval, seconds
	expFlags    byte   // timer use expiration flags
	initial     uint16 // initial countdown, 100 ms units
	stopped     uint16 // countdown while stopped
	expireAt    time.Time
	preFired    bool
	timer       Stopper
	gen         uint64 // invalidates stale timer callbacks
}

func (w *watchdog) stopTimer() {
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	w.gen++
}

func init() {
	register(NetFnApp, CmdSetWatchdogTimer, fixedLen(6, (*BMC).setWatchdog))
	register(NetFnApp, CmdGetWatchdogTimer, fixedLen(0, (*BMC).getWatchdog))
	register(NetFnApp, CmdResetWatchdogTimer, fixedLen(0, (*BMC).resetWatchdog))
}

func (b *BMC) setWatchdog(d []byte) (byte, []byte) {
	use := d[0] & 0x07
	dontStop := d[0]&0x40 != 0
	action := TimeoutAction(d[1] & 0x07)
	intType := (d[1] >> 4) & 0x07
	pre := d[2]
	countdown := uint16(d[4]) | uint16(d[5])<<8
	if use == 0 || use > 5 || action > ActionPowerCycle || intType > PretimeoutMsg {
		return ccInvalidField, nil
	}
	if intType != PretimeoutNone && uint32(pre)*10 > uint32(countdown) {
		return ccInvalidField, nil // pretimeout must fit in the countdown
	}
	w := &b.wd
	w.initialised = true
	w.use = use
	w.dontLog = d[0]&0x80 != 0
	w.action = action
	w.intType = intType
	w.preSecs = pre
	w.expFlags &^= d[3] & 0x3E
	w.initial = countdown
	w.preFired = false
	b.stats.WatchdogSets++
	if dontStop && w.running {
		b.startWatchdogLocked() // new countdown, keep running
		return ccOK, nil
	}
	w.stopTimer()
	w.running = false
	w.stopped = countdown
	return ccOK, nil
}

func (b *BMC) getWatchdog([]byte) (byte, []byte) {
	w := &b.wd
	u := w.use
	if w.running {
		u |= 0x40
	}
	if w.dontLog {
		u |= 0x80
	}
	present := w.stopped
	if w.running {
		present = b.presentCountdownLocked()
	}
	return ccOK, []byte{
		u,
		w.intType<<4 | byte(w.action),
		w.preSecs,
		w.expFlags,
		byte(w.initial), byte(w.initial >> 8),
		byte(present), byte(present >> 8),
	}
}

func (b *BMC) presentCountdownLocked() uint16 {
	left := b.wd.expireAt.Sub(b.clock.Now())
	if left <= 0 {
		return 0
	}
	n := (left + tick - 1) / tick
	if n > 0xFFFF {
		n = 0xFFFF
	}
	return uint16(n)
}

func (b *BMC) resetWatchdog([]byte) (byte, []byte) {
	if !b.wd.initialised {
		b.stats.WatchdogResetsEarly++
		return CCWatchdogUninitialised, nil
	}
	b.stats.WatchdogResets++
	b.stats.LastPat = b.clock.Now()
	b.startWatchdogLocked()
	return ccOK, nil
}

// startWatchdogLocked (re)loads the countdown with the initial value and
// runs it.
func (b *BMC) startWatchdogLocked() {
	w := &b.wd
	w.stopTimer()
	w.running = true
	w.preFired = false
	w.expireAt = b.clock.Now().Add(time.Duration(w.initial) * tick)
	b.scheduleWatchdogLocked()
}

// scheduleWatchdogLocked arms the timer for the next watchdog event:
// the pretimeout if one is due, else the expiry.
func (b *BMC) scheduleWatchdogLocked() {
	w := &b.wd
	next := w.expireAt
	if w.intType != PretimeoutNone && w.preSecs > 0 && !w.preFired {
		next = w.expireAt.Add(-time.Duration(w.preSecs) * time.Second)
	}
	gen := w.gen
	d := next.Sub(b.clock.Now())
	if d < 0 {
		d = 0
	}
	w.timer = b.clock.AfterFunc(d, func() { b.watchdogFired(gen) })
}

// watchdogFired runs when a watchdog timer falls due.
func (b *BMC) watchdogFired(gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := &b.wd
	if gen != w.gen || !w.running {
		return
	}
	now := b.clock.Now()
	if w.intType != PretimeoutNone && w.preSecs > 0 && !w.preFired &&
		!now.Before(w.expireAt.Add(-time.Duration(w.preSecs)*time.Second)) {
		w.preFired = true
		b.pretimeout = true
		b.stats.PretimeoutsFired++
		b.log.Warn("bmcsim: watchdog pretimeout", slog.Int("interrupt", int(w.intType)),
			slog.Int("use", int(w.use)), slog.Int("pretimeout_s", int(w.preSecs)))
		if !w.dontLog {
			b.watchdogEventLocked(0x08)
		}
	}
	if !now.Before(w.expireAt) {
		b.watchdogExpiredLocked()
		return
	}
	w.gen++
	b.scheduleWatchdogLocked()
}

func (b *BMC) watchdogExpiredLocked() {
	w := &b.wd
	w.stopTimer()
	w.running = false
	w.stopped = 0
	w.expFlags |= 1 << w.use
	b.stats.TimeoutsFired++
	b.stats.LastAction = w.action
	b.stats.LastActionTime = b.clock.Now()
	b.log.Warn("bmcsim: watchdog expired", slog.String("action", w.action.String()), slog.Int("use", int(w.use)))
	switch w.action {
	case ActionHardReset:
		b.chassisActionLocked(ChassisHardReset, 0x04)
	case ActionPowerDown:
		b.chassisActionLocked(ChassisPowerDown, 0x04)
	case ActionPowerCycle:
		b.chassisActionLocked(ChassisPowerCycle, 0x04)
	}
	if !w.dontLog {
		b.watchdogEventLocked(byte(w.action)) // offsets 0..3 match the actions
	}
}

// watchdogSensor is the sensor number the BMC's Watchdog 2 events carry.
const watchdogSensor = 0x10

// watchdogEventLocked logs a Watchdog 2 (sensor type 23h) event with the
// given offset: 0 expired, 1 hard reset, 2 power down, 3 power cycle, 8
// timer interrupt.
func (b *BMC) watchdogEventLocked(offset byte) {
	w := &b.wd
	b.generateEventLocked(0x20, 0x23, watchdogSensor, 0x6F,
		[3]byte{0xC0 | offset, w.intType<<4 | w.use, 0xFF})
}
