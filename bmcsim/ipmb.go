package bmcsim

import (
	"fmt"
	"time"
)

// satellite is a simulated IPMB management controller behind the BMC,
// reachable with Send Message on channel 0. It answers Get Device ID and
// answers every other command with 0xC1.
type satellite struct {
	addr   byte
	delay  time.Duration // BMC time before the response is queued
	silent bool          // never answers
	gen    uint64        // bumped by BMC reset: pending answers are dropped
}

// bmcSA and smsLUN are the addresses requests bridged from the system
// interface come from.
const bmcSA = 0x20

func ipmbChecksum(p []byte) byte { return zeroChecksum(p) }

// sendMessage implements Send Message (IPMI v2.0 §22.7) for channel 0
// (IPMB) with no tracking: data = channel, then the IPMB frame rsSA,
// netFn/rsLUN, chk1, rqSA, rqSeq/rqLUN, cmd, data..., chk2.
func (b *BMC) sendMessage(d []byte) (byte, []byte) {
	ch := d[0] & 0x0F
	frame := d[1:]
	if ch != 0 {
		return ccInvalidField, nil // only IPMB takes bridged requests
	}
	if len(frame) < 7 {
		return ccBadLength, nil
	}
	sat := b.sats[frame[0]]
	if sat == nil {
		return CCNAKOnWrite, nil
	}
	b.stats.Bridged++
	if ipmbChecksum(frame[:2]) != frame[2] || ipmbChecksum(frame[3:len(frame)-1]) != frame[len(frame)-1] {
		return ccOK, nil // the write was acknowledged; the satellite drops the bad frame
	}
	if sat.silent || frame[1]&0x04 != 0 {
		// A silent satellite answers nothing, and no controller answers a
		// response (odd netfn): system software sending the response to
		// an incoming command is where the exchange ends.
		return ccOK, nil
	}
	rsp := sat.answer(frame)
	gen := sat.gen
	b.clock.AfterFunc(sat.delay, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if sat.gen != gen {
			return
		}
		_ = b.enqueueLocked(rsp) // a full queue loses the answer, as on a real BMC
	})
	return ccOK, nil
}

// answer returns the Get Message payload (channel byte, then the IPMB
// response without the leading destination address) for an IPMB request
// frame.
func (s *satellite) answer(f []byte) []byte {
	netfn, rsLUN := f[1]>>2, f[1]&3
	rqSA, rqSeq, rqLUN := f[3], f[4]>>2, f[4]&3
	cmd := f[5]
	body := []byte{s.addr, rqSeq<<2 | rsLUN, cmd}
	if netfn == NetFnApp && cmd == CmdGetDeviceID && len(f) == 7 {
		m := ExampleManufacturerID
		body = append(body, ccOK, 0x01, 0x01, 0x02, 0x03, 0x02, 0x01,
			byte(m), byte(m>>8), byte(m>>16), 0x06, 0x0C)
	} else {
		body = append(body, ccInvalidCmd)
	}
	hdr := []byte{rqSA, (netfn|1)<<2 | rqLUN}
	out := []byte{0x00, hdr[1], ipmbChecksum(hdr)}
	out = append(out, body...)
	return append(out, ipmbChecksum(body))
}

// SetSatelliteDelay sets how long (BMC time) the satellite at addr takes
// to answer a bridged request.
func (b *BMC) SetSatelliteDelay(addr byte, d time.Duration) error {
	return b.setSatellite(addr, func(s *satellite) { s.delay = d })
}

// SetSatelliteSilent makes the satellite at addr ignore (true) or answer
// (false) bridged requests.
func (b *BMC) SetSatelliteSilent(addr byte, silent bool) error {
	return b.setSatellite(addr, func(s *satellite) { s.silent = silent })
}

// setSatellite changes the satellite at addr with set, under the BMC's
// lock; it fails with ErrBadArgument when there is none.
func (b *BMC) setSatellite(addr byte, set func(*satellite)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sats[addr]
	if s == nil {
		return fmt.Errorf("bmcsim: no satellite at %#x: %w", addr, ErrBadArgument)
	}
	set(s)
	return nil
}

// InjectIPMBRequest puts a request that the controller at rqSA sent to the
// system software (LUN 2, SMS) over IPMB channel 0 into the receive message
// queue, as Get Message returns it: channel 0, netFn/rsLUN, chk1, rqSA,
// rqSeq/rqLUN, cmd, data..., chk2.
func (b *BMC) InjectIPMBRequest(rqSA, netfn, cmd, seq byte, data []byte) error {
	hdr := []byte{bmcSA, netfn<<2 | 2}
	body := append([]byte{rqSA, seq << 2, cmd}, data...)
	msg := []byte{0x00, hdr[1], ipmbChecksum(hdr)}
	msg = append(msg, body...)
	msg = append(msg, ipmbChecksum(body))
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.enqueueLocked(msg); err != nil {
		return fmt.Errorf("bmcsim: InjectIPMBRequest: %w", err)
	}
	return nil
}
