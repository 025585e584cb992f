package bmcsim

import "fmt"

// Storage netfn SDR repository commands (IPMI v2.0 chapter 33) and sensor
// netfn commands (chapter 35).
const (
	CmdGetSDRRepositoryInfo = 0x20
	CmdReserveSDRRepository = 0x22
	CmdGetSDR               = 0x23

	CmdPlatformEvent        = 0x02
	CmdGetSensorHysteresis  = 0x25
	CmdGetSensorThresholds  = 0x27
	CmdGetSensorEventEnable = 0x29
	CmdGetSensorReading     = 0x2D
)

// Threshold indices in sensor.thr, in the order of Get Sensor Thresholds
// and of the readable-threshold mask bits.
const (
	thrLNC = iota
	thrLC
	thrLNR
	thrUNC
	thrUC
	thrUNR
)

// sensor is a threshold-based analog sensor: reading = (M×raw + B×10^Bexp)
// × 10^Rexp in its unit.
type sensor struct {
	num        byte
	name       string
	sensorType byte // 01 temperature, 02 voltage, 04 fan
	unit       byte // 1 °C, 4 V, 18 RPM
	entity     byte
	m          int16
	b          int16
	rexp       int8
	thr        [6]byte
	thrMask    byte // readable (and present) thresholds
	hystPos    byte
	hystNeg    byte
	raw        byte
	sensorMax  byte
	sensorMin  byte
	nominal    byte
}

func defaultSensors() []*sensor {
	return []*sensor{
		{num: 0x01, name: "CPU Temp", sensorType: 0x01, unit: 1, entity: 0x03, m: 1,
			thr: [6]byte{thrUNC: 85, thrUC: 90, thrUNR: 95, thrLNC: 5, thrLC: 3, thrLNR: 1}, thrMask: 0x3F,
			hystPos: 2, hystNeg: 2, raw: 45, sensorMax: 127, sensorMin: 0, nominal: 45},
		{num: 0x02, name: "Fan 1", sensorType: 0x04, unit: 18, entity: 0x1D, m: 64,
			thr: [6]byte{thrLNC: 10, thrLC: 8, thrLNR: 5}, thrMask: 0x07,
			hystPos: 1, hystNeg: 1, raw: 75, sensorMax: 255, sensorMin: 0, nominal: 75},
		{num: 0x03, name: "12V", sensorType: 0x02, unit: 4, entity: 0x07, m: 6, rexp: -2,
			thr: [6]byte{thrLNC: 183, thrLC: 180, thrLNR: 170, thrUNC: 216, thrUC: 220, thrUNR: 230}, thrMask: 0x3F,
			hystPos: 1, hystNeg: 1, raw: 200, sensorMax: 255, sensorMin: 0, nominal: 200},
	}
}

// fullSDR encodes the sensor as a Full Sensor Record (type 01h, IPMI v2.0
// table 43-1) with the given record ID.
func (s *sensor) fullSDR(id uint16) []byte {
	name := []byte(s.name)
	r := make([]byte, 48, 48+len(name))
	r[0], r[1] = byte(id), byte(id>>8)
	r[2] = 0x51
	r[3] = 0x01
	r[4] = byte(43 + len(name))
	r[5] = 0x20 // owner: BMC
	r[6] = 0x00 // LUN 0, channel 0
	r[7] = s.num
	r[8] = s.entity
	r[9] = 0x01 // entity instance 1, physical
	r[10] = 0x7F
	r[11] = 0x40 | 0x10 | 0x04 // auto re-arm; hysteresis readable; thresholds readable; per-threshold events
	r[12] = s.sensorType
	r[13] = 0x01 // threshold event/reading type
	lower := uint16(s.thrMask&0x07) << 12
	upper := uint16(s.thrMask&0x38>>3) << 12
	copy(r[14:16], le16(lower))
	copy(r[16:18], le16(upper))
	r[18] = s.thrMask // readable thresholds
	r[19] = 0x00      // settable thresholds: none
	r[20] = 0x00      // unsigned, no rate, no modifier
	r[21] = s.unit
	r[22] = 0x00
	r[23] = 0x00 // linear
	m, bb := uint16(s.m)&0x3FF, uint16(s.b)&0x3FF
	r[24] = byte(m)
	r[25] = byte(m>>8) << 6
	r[26] = byte(bb)
	r[27] = byte(bb>>8) << 6
	r[28] = 0x00
	r[29] = byte(s.rexp) << 4 // R exponent (4-bit signed), B exponent 0
	r[30] = 0x01              // nominal reading specified
	r[31] = s.nominal
	r[32] = 0
	r[33] = 0
	r[34] = s.sensorMax
	r[35] = s.sensorMin
	r[36], r[37], r[38] = s.thr[thrUNR], s.thr[thrUC], s.thr[thrUNC]
	r[39], r[40], r[41] = s.thr[thrLNR], s.thr[thrLC], s.thr[thrLNC]
	r[42], r[43] = s.hystPos, s.hystNeg
	r[47] = 0xC0 | byte(len(name)) // 8-bit ASCII + Latin 1
	return append(r, name...)
}

// mcLocatorSDR is the Management Controller Device Locator record (type
// 12h, IPMI v2.0 table 43-7) describing the BMC itself.
func mcLocatorSDR(id uint16) []byte {
	name := []byte("Example BMC")
	r := []byte{byte(id), byte(id >> 8), 0x51, 0x12, byte(11 + len(name)),
		0x20,          // device slave address
		0x00,          // channel 0
		0x00,          // no ACPI/global init notifications
		deviceSupport, // device capabilities
		0x00, 0x00, 0x00,
		0x06, // entity: system management module
		0x01, // instance
		0x00, // OEM
		0xC0 | byte(len(name)),
	}
	return append(r, name...)
}

type sdrRepo struct {
	records     [][]byte
	reservation uint16
}

func buildSDR(sensors []*sensor) sdrRepo {
	var r sdrRepo
	r.records = append(r.records, mcLocatorSDR(1))
	for i, s := range sensors {
		r.records = append(r.records, s.fullSDR(uint16(i+2)))
	}
	return r
}

func init() {
	register(NetFnStorage, CmdGetSDRRepositoryInfo, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		rsp := []byte{0x51}
		rsp = append(rsp, le16(uint16(len(b.sdr.records)))...)
		rsp = append(rsp, 0x00, 0x00)  // free space: none (read-only repository)
		rsp = append(rsp, le32(0)...)  // most recent addition
		rsp = append(rsp, le32(0)...)  // most recent erase
		return ccOK, append(rsp, 0x02) // reserve supported
	}))
	register(NetFnStorage, CmdReserveSDRRepository, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		b.sdr.reservation = nextReservation(b.sdr.reservation)
		return ccOK, le16(b.sdr.reservation)
	}))
	register(NetFnStorage, CmdGetSDR, fixedLen(6, (*BMC).getSDR))
	register(NetFnSensor, CmdGetSensorReading, fixedLen(1, func(b *BMC, d []byte) (byte, []byte) {
		s := b.sensorLocked(d[0])
		if s == nil {
			return ccNotPresent, nil
		}
		return ccOK, []byte{s.raw, 0xC0, s.status(), 0x00}
	}))
	register(NetFnSensor, CmdGetSensorThresholds, fixedLen(1, func(b *BMC, d []byte) (byte, []byte) {
		s := b.sensorLocked(d[0])
		if s == nil {
			return ccNotPresent, nil
		}
		rsp := []byte{s.thrMask}
		for i, v := range s.thr {
			if s.thrMask&(1<<i) == 0 {
				v = 0
			}
			rsp = append(rsp, v)
		}
		return ccOK, rsp
	}))
	register(NetFnSensor, CmdGetSensorHysteresis, fixedLen(2, func(b *BMC, d []byte) (byte, []byte) {
		s := b.sensorLocked(d[0])
		if s == nil {
			return ccNotPresent, nil
		}
		return ccOK, []byte{s.hystPos, s.hystNeg}
	}))
	register(NetFnSensor, CmdGetSensorEventEnable, fixedLen(1, func(b *BMC, d []byte) (byte, []byte) {
		s := b.sensorLocked(d[0])
		if s == nil {
			return ccNotPresent, nil
		}
		return ccOK, []byte{0xC0, 0x00, 0x00, 0x00, 0x00} // events and scanning on, no individual enables
	}))
	register(NetFnSensor, CmdPlatformEvent, func(b *BMC, d []byte) (byte, []byte) {
		// From the system interface: generator ID, EvMRev, sensor type,
		// sensor number, event dir/type, event data 1 [2 [3]].
		if len(d) < 6 || len(d) > 8 {
			return ccBadLength, nil
		}
		ed := [3]byte{d[5], 0xFF, 0xFF}
		copy(ed[1:], d[6:])
		b.generateEventLocked(d[0], d[2], d[3], d[4], ed)
		return ccOK, nil
	})
}

// status returns the threshold comparison bits of Get Sensor Reading.
func (s *sensor) status() byte {
	var st byte
	lower := func(i int) bool { return s.thrMask&(1<<i) != 0 && s.raw <= s.thr[i] }
	upper := func(i int) bool { return s.thrMask&(1<<i) != 0 && s.raw >= s.thr[i] }
	for _, i := range []int{thrLNC, thrLC, thrLNR} {
		if lower(i) {
			st |= 1 << i
		}
	}
	for _, i := range []int{thrUNC, thrUC, thrUNR} {
		if upper(i) {
			st |= 1 << i
		}
	}
	return st
}

func (b *BMC) sensorLocked(num byte) *sensor {
	for _, s := range b.sensors {
		if s.num == num {
			return s
		}
	}
	return nil
}

// SetSensorReading sets the raw reading of sensor num.
func (b *BMC) SetSensorReading(num, raw byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sensorLocked(num)
	if s == nil {
		return fmt.Errorf("bmcsim: sensor %#x: %w", num, ErrNoSensor)
	}
	s.raw = raw
	return nil
}

func (b *BMC) getSDR(d []byte) (byte, []byte) {
	r := &b.sdr
	res := uint16(d[0]) | uint16(d[1])<<8
	id := uint16(d[2]) | uint16(d[3])<<8
	off, n := d[4], d[5]
	if !checkReservation(res, r.reservation, off) {
		return ccResCanceled, nil
	}
	i := -1
	switch {
	case len(r.records) == 0:
	case id == 0x0000:
		i = 0
	case id == 0xFFFF:
		i = len(r.records) - 1
	default:
		for j, rec := range r.records {
			if uint16(rec[0])|uint16(rec[1])<<8 == id {
				i = j
			}
		}
	}
	if i < 0 {
		return ccNotPresent, nil
	}
	next := uint16(0xFFFF)
	if i+1 < len(r.records) {
		nr := r.records[i+1]
		next = uint16(nr[0]) | uint16(nr[1])<<8
	}
	data, cc := readPart(r.records[i], off, n)
	if cc != ccOK {
		return cc, nil
	}
	return ccOK, append(le16(next), data...)
}

// SDRRecords returns a copy of the SDR repository's records.
func (b *BMC) SDRRecords() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([][]byte, len(b.sdr.records))
	for i, r := range b.sdr.records {
		out[i] = append([]byte(nil), r...)
	}
	return out
}
