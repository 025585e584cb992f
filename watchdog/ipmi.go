package watchdog

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// IPMI watchdog commands (IPMI v2.0 §27, netfn App), as the kernel's
// ipmi_watchdog sends them (linux-ipmi-abi.md §7.3).
const (
	netFnApp         = 0x06
	CmdResetWatchdog = 0x22 // Reset Watchdog Timer: the heartbeat
	CmdSetWatchdog   = 0x24 // Set Watchdog Timer: 6 data bytes
	CmdGetWatchdog   = 0x25 // Get Watchdog Timer: 8 data bytes back

	// CCNotInitialised is the completion code of a Reset Watchdog Timer the
	// BMC cannot honour because no Set came since its own reset: it lost
	// the settings and must be re-armed.
	CCNotInitialised = 0x80

	timerUseSMSOS = 0x04 // timer use 4: SMS/OS
	timerDontStop = 0x40 // byte 0 bit 6: don't stop the timer on Set (IPMI ≥ 1.5)
	expiredSMSOS  = 1 << timerUseSMSOS

	// countdownUnit is the unit of the initial and present countdowns.
	countdownUnit = 100 * time.Millisecond
	// MaxTimeout is the longest countdown Set Watchdog Timer can carry
	// (0xFFFF × 100 ms), whole seconds.
	MaxTimeout = 6553 * time.Second
	// MaxPretimeout is the longest pretimeout interval (one byte of
	// seconds).
	MaxPretimeout = 255 * time.Second
)

// Action is what the BMC does when the countdown expires (Set Watchdog
// Timer byte 1 bits 2:0).
type Action uint8

// Timeout actions.
const (
	ActionNone       Action = 0 // no action: the timer expires silently
	ActionReset      Action = 1 // hard reset
	ActionPowerOff   Action = 2 // power down
	ActionPowerCycle Action = 3 // power cycle
)

// String returns the flag spelling of the action.
func (a Action) String() string {
	switch a {
	case ActionNone:
		return "none"
	case ActionReset:
		return "reset"
	case ActionPowerOff:
		return "power-off"
	case ActionPowerCycle:
		return "power-cycle"
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// ParseAction parses a --watchdog-action value: reset, power-off,
// power-cycle or none (the kernel's spellings power_off and power_cycle
// are accepted too).
func ParseAction(s string) (Action, error) {
	switch strings.ReplaceAll(strings.ToLower(s), "_", "-") {
	case "none":
		return ActionNone, nil
	case "reset":
		return ActionReset, nil
	case "power-off":
		return ActionPowerOff, nil
	case "power-cycle":
		return ActionPowerCycle, nil
	}
	return 0, fmt.Errorf("%w: action %q (want reset, power-off, power-cycle or none)", ErrConfig, s)
}

// PreAction is the interrupt the BMC raises at the pretimeout (Set Watchdog
// Timer byte 1 bits 6:4).
type PreAction uint8

// Pretimeout interrupts.
const (
	PreNone   PreAction = 0 // no interrupt
	PreSMI    PreAction = 1 // system management interrupt
	PreNMI    PreAction = 2 // NMI / diagnostic interrupt
	PreMsgInt PreAction = 3 // messaging interrupt: SMS_ATN with flag 0x08, what Pretimeout handles
)

// String returns the flag spelling of the pre-action.
func (p PreAction) String() string {
	switch p {
	case PreNone:
		return "none"
	case PreSMI:
		return "smi"
	case PreNMI:
		return "nmi"
	case PreMsgInt:
		return "msg-int"
	}
	return fmt.Sprintf("PreAction(%d)", uint8(p))
}

// ParsePreAction parses a --watchdog-preaction value: none, smi, nmi or
// msg-int (the kernel's pre_none, pre_smi, pre_nmi and pre_int too).
func ParsePreAction(s string) (PreAction, error) {
	switch strings.TrimPrefix(strings.ReplaceAll(strings.ToLower(s), "_", "-"), "pre-") {
	case "none":
		return PreNone, nil
	case "smi":
		return PreSMI, nil
	case "nmi":
		return PreNMI, nil
	case "msg-int", "int":
		return PreMsgInt, nil
	}
	return 0, fmt.Errorf("%w: pre-action %q (want none, smi, nmi or msg-int)", ErrConfig, s)
}

// timerSettings is what one Set Watchdog Timer carries.
type timerSettings struct {
	running    bool // the timer should count down (the kernel's state != none)
	action     Action
	preAction  PreAction
	timeout    time.Duration
	pretimeout time.Duration
	ipmi10     bool // the BMC implements IPMI 1.0: no don't-stop bit
}

// countdown returns the timeout in 100 ms units, rounded up.
func countdown(d time.Duration) uint16 {
	n := (d + countdownUnit - 1) / countdownUnit
	return uint16(min(max(n, 1), 0xFFFF))
}

// pretimeoutSecs returns the pretimeout in whole seconds, rounded up.
func pretimeoutSecs(d time.Duration) uint8 {
	n := (d + time.Second - 1) / time.Second
	return uint8(min(max(n, 0), 255))
}

// setMsg returns the Set Watchdog Timer request (netfn/LUN, cmd, 6 data
// bytes) laid out as in linux-ipmi-abi.md §7.3.
func setMsg(s timerSettings) []byte {
	use := byte(timerUseSMSOS)
	if s.running && !s.ipmi10 {
		use |= timerDontStop
	}
	var act, pre byte
	if s.running {
		act = byte(s.action) & 0x07
		if s.pretimeout > 0 {
			act |= (byte(s.preAction) & 0x07) << 4
			pre = pretimeoutSecs(s.pretimeout)
		}
	}
	cd := countdown(s.timeout)
	return []byte{netFnApp << 2, CmdSetWatchdog, use, act, pre, 0, byte(cd), byte(cd >> 8)}
}

// resetMsg is Reset Watchdog Timer.
func resetMsg() []byte { return []byte{netFnApp << 2, CmdResetWatchdog} }

// getMsg is Get Watchdog Timer.
func getMsg() []byte { return []byte{netFnApp << 2, CmdGetWatchdog} }

// TimerState is the decoded data of a Get Watchdog Timer response.
type TimerState struct {
	Use       uint8     // timer use, bits 2:0
	Running   bool      // byte 0 bit 6: the timer is counting down
	DontLog   bool      // byte 0 bit 7
	Action    Action    // byte 1 bits 2:0
	PreAction PreAction // byte 1 bits 6:4
	// Pretimeout is the pretimeout interval.
	Pretimeout time.Duration
	// ExpirationFlags are the timer-use expiration flags (bit n = use n
	// expired since they were last cleared).
	ExpirationFlags uint8
	// Initial and Present are the initial and present countdowns.
	Initial, Present time.Duration
}

// DecodeGetResponse decodes a Get Watchdog Timer response as the engine
// returns it (netfn/LUN, cmd, completion code, 8 data bytes). It fails with
// a *CompletionError for a non-zero completion code and ErrShort when the
// data is cut short.
func DecodeGetResponse(resp []byte) (TimerState, error) {
	if len(resp) < 3 {
		return TimerState{}, fmt.Errorf("watchdog: Get Watchdog Timer response % x: %w", resp, ErrShort)
	}
	if resp[2] != 0 {
		return TimerState{}, &CompletionError{Cmd: CmdGetWatchdog, Code: resp[2]}
	}
	d := resp[3:]
	if len(d) < 8 {
		return TimerState{}, fmt.Errorf("watchdog: Get Watchdog Timer response % x: %w", resp, ErrShort)
	}
	return TimerState{
		Use:             d[0] & 0x07,
		Running:         d[0]&0x40 != 0,
		DontLog:         d[0]&0x80 != 0,
		Action:          Action(d[1] & 0x07),
		PreAction:       PreAction(d[1] >> 4 & 0x07),
		Pretimeout:      time.Duration(d[2]) * time.Second,
		ExpirationFlags: d[3],
		Initial:         time.Duration(binary.LittleEndian.Uint16(d[4:])) * countdownUnit,
		Present:         time.Duration(binary.LittleEndian.Uint16(d[6:])) * countdownUnit,
	}, nil
}

// PreOp is what the daemon does when the BMC raises the pretimeout (the
// kernel's preop module parameter). It matters only with a pre-action;
// only PreMsgInt reaches the daemon.
type PreOp uint8

// Pretimeout operations.
const (
	// PreOpNone (preop_none, the kernel's default): the pretimeout is
	// logged (and PretimeoutExec runs); nothing is readable on
	// /dev/watchdog.
	PreOpNone PreOp = 0
	// PreOpPanic (preop_panic): Config.Panic is called, once; the daemon
	// crashes the kernel through /proc/sysrq-trigger, as the kernel's
	// driver panics.
	PreOpPanic PreOp = 1
	// PreOpGiveData (preop_give_data): one byte becomes readable on
	// /dev/watchdog and poll reports POLLIN. CUSE has no fasync, so no
	// SIGIO is sent.
	PreOpGiveData PreOp = 2
)

// String returns the flag spelling of the pretimeout operation.
func (p PreOp) String() string {
	switch p {
	case PreOpNone:
		return "none"
	case PreOpPanic:
		return "panic"
	case PreOpGiveData:
		return "give-data"
	}
	return fmt.Sprintf("PreOp(%d)", uint8(p))
}

// ParsePreOp parses a --watchdog-preop value: none, panic or give-data
// (the kernel's preop_none, preop_panic and preop_give_data too).
func ParsePreOp(s string) (PreOp, error) {
	switch strings.TrimPrefix(strings.ReplaceAll(strings.ToLower(s), "_", "-"), "preop-") {
	case "none":
		return PreOpNone, nil
	case "panic":
		return PreOpPanic, nil
	case "give-data":
		return PreOpGiveData, nil
	}
	return 0, fmt.Errorf("%w: preop %q (want none, panic or give-data)", ErrConfig, s)
}
