package bmcsim

import "time"

// Storage netfn commands for the SEL (IPMI v2.0 chapter 31).
const (
	CmdGetSELInfo           = 0x40
	CmdGetSELAllocationInfo = 0x41
	CmdReserveSEL           = 0x42
	CmdGetSELEntry          = 0x43
	CmdAddSELEntry          = 0x44
	CmdDeleteSELEntry       = 0x46
	CmdClearSEL             = 0x47
	CmdGetSELTime           = 0x48
	CmdSetSELTime           = 0x49
)

// selRecordSize is the size of every SEL record.
const selRecordSize = 16

type selRepo struct {
	capacity    int
	records     [][]byte // each 16 bytes, record ID in bytes 0-1
	nextID      uint16
	reservation uint16
	lastAdd     uint32
	lastErase   uint32
	overflow    bool
	timeOffset  time.Duration // Set SEL Time minus BMC clock
}

func init() {
	register(NetFnStorage, CmdGetSELInfo, fixedLen(0, (*BMC).getSELInfo))
	register(NetFnStorage, CmdGetSELAllocationInfo, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		free := uint16(b.sel.capacity - len(b.sel.records))
		rsp := le16(uint16(b.sel.capacity))
		rsp = append(rsp, le16(selRecordSize)...)
		rsp = append(rsp, le16(free)...)
		rsp = append(rsp, le16(free)...)
		return ccOK, append(rsp, 1) // max record size: 1 unit
	}))
	register(NetFnStorage, CmdReserveSEL, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		b.sel.reservation = nextReservation(b.sel.reservation)
		return ccOK, le16(b.sel.reservation)
	}))
	register(NetFnStorage, CmdGetSELEntry, fixedLen(6, (*BMC).getSELEntry))
	register(NetFnStorage, CmdAddSELEntry, fixedLen(16, func(b *BMC, d []byte) (byte, []byte) {
		id, ok := b.addSELLocked(d)
		if !ok {
			return ccOutOfSpace, nil
		}
		return ccOK, le16(id)
	}))
	register(NetFnStorage, CmdDeleteSELEntry, fixedLen(4, (*BMC).deleteSELEntry))
	register(NetFnStorage, CmdClearSEL, fixedLen(6, (*BMC).clearSEL))
	register(NetFnStorage, CmdGetSELTime, fixedLen(0, func(b *BMC, _ []byte) (byte, []byte) {
		return ccOK, le32(b.selTimeLocked())
	}))
	register(NetFnStorage, CmdSetSELTime, fixedLen(4, func(b *BMC, d []byte) (byte, []byte) {
		t := time.Unix(int64(uint32(d[0])|uint32(d[1])<<8|uint32(d[2])<<16|uint32(d[3])<<24), 0)
		b.sel.timeOffset = t.Sub(b.clock.Now())
		return ccOK, nil
	}))
}

// nextReservation returns a new reservation ID; 0 is never used because
// it means "no reservation" in requests.
func nextReservation(r uint16) uint16 {
	r++
	if r == 0 {
		r = 1
	}
	return r
}

func (b *BMC) selTimeLocked() uint32 {
	return uint32(b.clock.Now().Add(b.sel.timeOffset).Unix())
}

func (b *BMC) getSELInfo([]byte) (byte, []byte) {
	s := &b.sel
	rsp := []byte{0x51}
	rsp = append(rsp, le16(uint16(len(s.records)))...)
	rsp = append(rsp, le16(uint16((s.capacity-len(s.records))*selRecordSize))...)
	rsp = append(rsp, le32(s.lastAdd)...)
	rsp = append(rsp, le32(s.lastErase)...)
	var op byte = 0x01 | 0x02 | 0x08 // alloc info, reserve, delete
	if s.overflow {
		op |= 0x80
	}
	return ccOK, append(rsp, op)
}

// addSELLocked stores a 16-byte record, assigning its record ID and (for
// timestamped types) its timestamp. Adding cancels the reservation, as
// QEMU's simulator does, so readers in the middle of a partial read see
// 0xC5.
func (b *BMC) addSELLocked(d []byte) (uint16, bool) {
	s := &b.sel
	if len(s.records) >= s.capacity {
		s.overflow = true
		return 0, false
	}
	r := append([]byte(nil), d...)
	id := s.nextID
	s.nextID++
	if s.nextID == 0 || s.nextID == 0xFFFF {
		s.nextID = 1
	}
	r[0], r[1] = byte(id), byte(id>>8)
	now := b.selTimeLocked()
	if r[2] < 0xE0 { // standard and timestamped OEM records
		copy(r[3:7], le32(now))
	}
	s.records = append(s.records, r)
	s.lastAdd = now
	s.reservation = nextReservation(s.reservation)
	return id, true
}

func (s *selRepo) find(id uint16) int {
	if len(s.records) == 0 {
		return -1
	}
	switch id {
	case 0x0000:
		return 0
	case 0xFFFF:
		return len(s.records) - 1
	}
	for i, r := range s.records {
		if uint16(r[0])|uint16(r[1])<<8 == id {
			return i
		}
	}
	return -1
}

// checkReservation implements the rule shared by SEL and SDR reads: a
// reservation ID of zero is allowed only for reads from offset 0.
func checkReservation(got, current uint16, offset byte) bool {
	if got == 0 {
		return offset == 0
	}
	return got == current
}

func (b *BMC) getSELEntry(d []byte) (byte, []byte) {
	s := &b.sel
	res := uint16(d[0]) | uint16(d[1])<<8
	id := uint16(d[2]) | uint16(d[3])<<8
	off, n := d[4], d[5]
	if !checkReservation(res, s.reservation, off) {
		return ccResCanceled, nil
	}
	i := s.find(id)
	if i < 0 {
		return ccNotPresent, nil
	}
	next := uint16(0xFFFF)
	if i+1 < len(s.records) {
		r := s.records[i+1]
		next = uint16(r[0]) | uint16(r[1])<<8
	}
	data, cc := readPart(s.records[i], off, n)
	if cc != ccOK {
		return cc, nil
	}
	return ccOK, append(le16(next), data...)
}

// readPart returns bytes [off, off+n) of rec; n = 0xFF means to the end.
func readPart(rec []byte, off, n byte) ([]byte, byte) {
	if int(off) > len(rec) {
		return nil, ccOutOfRange
	}
	if n == 0xFF {
		return rec[off:], ccOK
	}
	if int(off)+int(n) > len(rec) {
		return nil, ccCantReturn
	}
	return rec[off : int(off)+int(n)], ccOK
}

func (b *BMC) deleteSELEntry(d []byte) (byte, []byte) {
	s := &b.sel
	res := uint16(d[0]) | uint16(d[1])<<8
	if res != s.reservation || res == 0 {
		return ccResCanceled, nil
	}
	i := s.find(uint16(d[2]) | uint16(d[3])<<8)
	if i < 0 {
		return ccNotPresent, nil
	}
	r := s.records[i]
	s.records = append(s.records[:i:i], s.records[i+1:]...)
	s.lastErase = b.selTimeLocked()
	s.reservation = nextReservation(s.reservation)
	return ccOK, []byte{r[0], r[1]}
}

func (b *BMC) clearSEL(d []byte) (byte, []byte) {
	s := &b.sel
	res := uint16(d[0]) | uint16(d[1])<<8
	if res != s.reservation || res == 0 {
		return ccResCanceled, nil
	}
	if d[2] != 'C' || d[3] != 'L' || d[4] != 'R' {
		return ccInvalidField, nil
	}
	switch d[5] {
	case 0xAA:
		s.records = nil
		s.overflow = false
		s.lastErase = b.selTimeLocked()
		s.reservation = nextReservation(s.reservation)
	case 0x00:
	default:
		return ccInvalidField, nil
	}
	return ccOK, []byte{0x01} // erasure completed
}

// generateEventLocked is the BMC's event receiver: it logs a system event
// record to the SEL (when logging is enabled) and puts it in the event
// message buffer (when that is enabled and empty).
func (b *BMC) generateEventLocked(genID, sensorType, sensorNum, dirType byte, ed [3]byte) {
	rec := make([]byte, selRecordSize)
	rec[2] = 0x02 // system event record
	copy(rec[3:7], le32(b.selTimeLocked()))
	rec[7], rec[8] = genID, 0x00
	rec[9] = 0x04 // event message format revision (IPMI 1.5/2.0)
	rec[10], rec[11], rec[12] = sensorType, sensorNum, dirType
	copy(rec[13:], ed[:])
	if b.enables&EnableSEL != 0 {
		if id, ok := b.addSELLocked(rec); ok {
			rec[0], rec[1] = byte(id), byte(id>>8)
		}
	}
	if b.enables&EnableEventBuffer != 0 && b.eventBuf == nil {
		b.eventBuf = rec
	}
}

// SELRecords returns a copy of the SEL records, oldest first.
func (b *BMC) SELRecords() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([][]byte, len(b.sel.records))
	for i, r := range b.sel.records {
		out[i] = append([]byte(nil), r...)
	}
	return out
}
