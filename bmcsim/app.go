package bmcsim

import "fmt"

// App netfn commands (IPMI v2.0 chapters 20-22).
const (
	CmdGetDeviceID            = 0x01
	CmdColdReset              = 0x02
	CmdWarmReset              = 0x03
	CmdGetSelfTestResults     = 0x04
	CmdGetDeviceGUID          = 0x08
	CmdResetWatchdogTimer     = 0x22
	CmdSetWatchdogTimer       = 0x24
	CmdGetWatchdogTimer       = 0x25
	CmdSetBMCGlobalEnables    = 0x2E
	CmdGetBMCGlobalEnables    = 0x2F
	CmdClearMessageFlags      = 0x30
	CmdGetMessageFlags        = 0x31
	CmdGetMessage             = 0x33
	CmdSendMessage            = 0x34
	CmdReadEventMessageBuffer = 0x35
	CmdGetSystemGUID          = 0x37
	CmdGetChannelInfo         = 0x42
)

// rcvQueueMax is the receive message queue depth.
const rcvQueueMax = 32

func init() {
	register(NetFnApp, CmdGetDeviceID, fixedLen(0, (*BMC).getDeviceID))
	register(NetFnApp, CmdColdReset, fixedLen(0, (*BMC).bmcReset))
	register(NetFnApp, CmdWarmReset, fixedLen(0, (*BMC).bmcReset))
	register(NetFnApp, CmdGetSelfTestResults, fixedLen(0, func(*BMC, []byte) (byte, []byte) {
		return ccOK, []byte{0x55, 0x00} // 55h: no error
	}))
	register(NetFnApp, CmdGetDeviceGUID, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		return ccOK, append([]byte(nil), b.cfg.DeviceGUID[:]...)
	}))
	register(NetFnApp, CmdGetSystemGUID, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		return ccOK, append([]byte(nil), b.cfg.SystemGUID[:]...)
	}))
	register(NetFnApp, CmdSetBMCGlobalEnables, fixedLen(1, func(b *BMC, d []byte) (byte, []byte) {
		b.enables = d[0]
		return ccOK, nil
	}))
	register(NetFnApp, CmdGetBMCGlobalEnables, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		return ccOK, []byte{b.enables}
	}))
	register(NetFnApp, CmdClearMessageFlags, fixedLen(1, func(b *BMC, d []byte) (byte, []byte) {
		if d[0]&FlagReceiveMessage != 0 {
			b.rcvQueue = nil
		}
		if d[0]&FlagEventBuffer != 0 {
			b.eventBuf = nil
		}
		if d[0]&FlagPretimeout != 0 {
			b.pretimeout = false
		}
		return ccOK, nil
	}))
	register(NetFnApp, CmdGetMessageFlags, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		return ccOK, []byte{b.flagsLocked()}
	}))
	register(NetFnApp, CmdGetMessage, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		if len(b.rcvQueue) == 0 {
			return CCQueueEmpty, nil
		}
		m := b.rcvQueue[0]
		b.rcvQueue = b.rcvQueue[1:]
		return ccOK, m
	}))
	register(NetFnApp, CmdReadEventMessageBuffer, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		if b.eventBuf == nil {
			return CCQueueEmpty, nil
		}
		e := b.eventBuf
		b.eventBuf = nil
		return ccOK, e
	}))
	register(NetFnApp, CmdGetChannelInfo, fixedLen(1, (*BMC).getChannelInfo))
	register(NetFnApp, CmdSendMessage, minLen(1, (*BMC).sendMessage))
}

// deviceSupport is the Additional Device Support byte of Get Device ID
// (and the MC Device Locator's capabilities): sensor device, SDR
// repository, SEL, FRU inventory, IPMB event receiver and generator,
// chassis device.
const deviceSupport = 0x01 | 0x02 | 0x04 | 0x08 | 0x10 | 0x20 | 0x80

func (b *BMC) getDeviceID([]byte) (byte, []byte) {
	return ccOK, deviceIDBody[:]
}

// deviceIDBody is the fixed Get Device ID response data, kept in one array
// so answering the most common request allocates nothing (callers copy it).
var deviceIDBody = [...]byte{
	0x20,       // device ID
	0x80 | 0x1, // provides device SDRs; device revision 1
	0x01,       // firmware major 1, device available
	0x00,       // firmware minor 0 (BCD)
	0x02,       // IPMI version 2.0
	deviceSupport,
	ExampleManufacturerID & 0xFF, ExampleManufacturerID >> 8 & 0xFF, ExampleManufacturerID >> 16,
	byte(ExampleProductID & 0xFF), byte(ExampleProductID >> 8),
	0x00, 0x00, 0x00, 0x01, // auxiliary firmware revision
}

// bmcReset implements Cold Reset and Warm Reset: the volatile state goes
// back to power-on (watchdog stopped and uninitialised, message queues and
// flags cleared, reservations cancelled, global enables at default). SEL,
// SDR and FRU are non-volatile and stay.
func (b *BMC) bmcReset([]byte) (byte, []byte) {
	b.wd.stopTimer()
	b.wd = watchdog{gen: b.wd.gen} // keep gen so stale timer callbacks stay stale
	b.rcvQueue = nil
	b.eventBuf = nil
	b.pretimeout = false
	b.enables = EnableEventBuffer | EnableSEL
	b.sel.reservation++
	b.sdr.reservation++
	for _, s := range b.sats {
		s.gen++
	}
	b.stats.BMCResets++
	b.log.Info("bmcsim: BMC reset")
	return ccOK, nil
}

// IPMI's own IANA number (7154), used as the vendor ID of standard
// channels in Get Channel Info.
var ipmiIANA = []byte{0xF2, 0x1B, 0x00}

func (b *BMC) getChannelInfo(d []byte) (byte, []byte) {
	ch := d[0] & 0x0F
	if ch == 0x0E { // "this channel": the system interface
		ch = 0x0F
	}
	var medium, proto, session byte
	aux := []byte{0x00, 0x00}
	switch ch {
	case 0x00:
		medium, proto, session = 0x01, 0x01, 0x00 // IPMB, IPMB-1.0, session-less
	case 0x01:
		medium, proto, session = 0x04, 0x01, 0x80 // 802.3 LAN, IPMB-1.0, multi-session
	case 0x0F:
		medium, proto, session = 0x0C, 0x05, 0x00 // system interface, KCS, session-less
		aux = []byte{0x05, 0x05}                  // SMS and event buffer interrupts on IRQ 5
	default:
		return ccInvalidField, nil
	}
	rsp := []byte{ch, medium, proto, session}
	rsp = append(rsp, ipmiIANA...)
	return ccOK, append(rsp, aux...)
}

// AddEvent puts a 16-byte event message (SEL record format) into the event
// message buffer, setting the event-buffer-full flag, as if the BMC had
// generated it. It fails if the buffer is already full.
func (b *BMC) AddEvent(ev []byte) error {
	if len(ev) != 16 {
		return fmt.Errorf("bmcsim: AddEvent: %d bytes, want 16: %w", len(ev), ErrBadArgument)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.eventBuf != nil {
		return fmt.Errorf("bmcsim: AddEvent: %w", ErrQueueFull)
	}
	b.eventBuf = append([]byte(nil), ev...)
	return nil
}

// enqueueLocked adds a Get Message payload (channel byte first) to the
// receive message queue.
func (b *BMC) enqueueLocked(msg []byte) error {
	if len(b.rcvQueue) >= rcvQueueMax {
		return ErrQueueFull
	}
	b.rcvQueue = append(b.rcvQueue, msg)
	return nil
}
