package bmcsim

import (
	"log/slog"
	"time"
)

// Chassis netfn commands (IPMI v2.0 chapter 28).
const (
	CmdGetChassisCapabilities = 0x00
	CmdGetChassisStatus       = 0x01
	CmdChassisControl         = 0x02
	CmdGetSystemRestartCause  = 0x07
	CmdGetPOHCounter          = 0x0F
)

// ChassisControl is a Chassis Control operation (IPMI v2.0 §28.3).
type ChassisControl byte

// Chassis Control operations.
const (
	ChassisPowerDown  ChassisControl = 0
	ChassisPowerUp    ChassisControl = 1
	ChassisPowerCycle ChassisControl = 2
	ChassisHardReset  ChassisControl = 3
	ChassisPulseDiag  ChassisControl = 4
	ChassisSoftOff    ChassisControl = 5
)

// String names the operation for logs.
func (c ChassisControl) String() string {
	switch c {
	case ChassisPowerDown:
		return "power-down"
	case ChassisPowerUp:
		return "power-up"
	case ChassisPowerCycle:
		return "power-cycle"
	case ChassisHardReset:
		return "hard-reset"
	case ChassisPulseDiag:
		return "pulse-diag"
	case ChassisSoftOff:
		return "soft-off"
	}
	return "invalid"
}

// ChassisState is the observable chassis state.
type ChassisState struct {
	PowerOn      bool
	LastControl  ChassisControl // last operation done (by command or watchdog)
	Controls     uint64         // operations done
	RestartCause byte           // Get System Restart Cause code
	PowerOnSince time.Time      // BMC time the chassis last powered on
}

type chassisState struct {
	powerOn      bool
	lastControl  ChassisControl
	controls     uint64
	restartCause byte
	lastEvent    byte // Get Chassis Status "last power event"
	hooks        []func(ChassisControl)
}

func init() {
	register(NetFnChassis, CmdGetChassisCapabilities, fixedLen(0, func(*BMC, []byte) (byte, []byte) {
		// no intrusion/lockout capabilities; FRU 0, SDR, SEL, SM and bridge
		// devices all at the BMC (20h).
		return ccOK, []byte{0x00, 0x20, 0x20, 0x20, 0x20, 0x20}
	}))
	register(NetFnChassis, CmdGetChassisStatus, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		var p byte = 0x40 // power restore policy: always on (10b at bits 6:5)
		if b.chassis.powerOn {
			p |= 0x01
		}
		return ccOK, []byte{p, b.chassis.lastEvent, 0x00, 0x00}
	}))
	register(NetFnChassis, CmdChassisControl, fixedLen(1, func(b *BMC, d []byte) (byte, []byte) {
		op := ChassisControl(d[0] & 0x0F)
		if op > ChassisSoftOff {
			return ccInvalidField, nil
		}
		b.chassisActionLocked(op, 0x01) // restart cause: chassis control command
		return ccOK, nil
	}))
	register(NetFnChassis, CmdGetSystemRestartCause, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		return ccOK, []byte{b.chassis.restartCause, 0x0F}
	}))
	register(NetFnChassis, CmdGetPOHCounter, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		hours := uint32(b.clock.Now().Sub(b.bootTime) / time.Hour)
		return ccOK, append([]byte{60}, le32(hours)...) // 60 minutes per count
	}))
}

// chassisActionLocked records a chassis operation (from Chassis Control or
// a watchdog expiry) and calls the hooks registered with OnChassisControl.
func (b *BMC) chassisActionLocked(op ChassisControl, cause byte) {
	c := &b.chassis
	c.lastControl = op
	c.controls++
	switch op {
	case ChassisPowerDown, ChassisSoftOff:
		c.powerOn = false
		if op == ChassisPowerDown {
			b.stats.PowerDowns++
		}
	case ChassisPowerUp:
		c.powerOn = true
		c.restartCause = cause
		c.lastEvent = 0x10 // last power on via IPMI command
	case ChassisPowerCycle:
		c.powerOn = true
		c.restartCause = cause
		b.stats.PowerCycles++
	case ChassisHardReset:
		c.powerOn = true
		c.restartCause = cause
		b.stats.HardResets++
	}
	b.log.Info("bmcsim: chassis control", slog.String("op", op.String()), slog.Bool("power_on", c.powerOn))
	for _, h := range c.hooks {
		go h(op)
	}
}

// Chassis returns the chassis state.
func (b *BMC) Chassis() ChassisState {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.chassis
	return ChassisState{PowerOn: c.powerOn, LastControl: c.lastControl, Controls: c.controls, RestartCause: c.restartCause, PowerOnSince: b.bootTime}
}

// OnChassisControl registers f to be called (in its own goroutine) after
// every chassis operation, whether from Chassis Control or a watchdog
// expiry. An adapter can use it to reset or power off a VM.
func (b *BMC) OnChassisControl(f func(ChassisControl)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chassis.hooks = append(b.chassis.hooks, f)
}
