package bmcsim

import (
	"bytes"
	"testing"
)

func reserveSEL(t *testing.T, b *BMC) (byte, byte) {
	t.Helper()
	r := mustOK(t, b, NetFnStorage, CmdReserveSEL)
	return r[0], r[1]
}

func TestSEL(t *testing.T) {
	b, _ := newManual(t)
	mustOK(t, b, NetFnStorage, CmdSetSELTime, 0x00, 0x10, 0x00, 0x68)
	if got := mustOK(t, b, NetFnStorage, CmdGetSELTime); !bytes.Equal(got, []byte{0x00, 0x10, 0x00, 0x68}) {
		t.Fatalf("SEL time % x", got)
	}
	var ids [][]byte
	for i := range 3 {
		rec := []byte{0, 0, 0x02, 0, 0, 0, 0, 0x41, 0, 0x04, 0x01, byte(i), 0x01, 0x57, 0xFF, 0xFF}
		ids = append(ids, mustOK(t, b, NetFnStorage, CmdAddSELEntry, rec...))
	}
	if info := mustOK(t, b, NetFnStorage, CmdGetSELInfo); info[0] != 0x51 || info[1] != 3 || info[2] != 0 {
		t.Fatalf("SEL info % x", info)
	}
	// Walk from the first record with full reads (no reservation).
	id := []byte{0, 0}
	n := 0
	for {
		r := mustOK(t, b, NetFnStorage, CmdGetSELEntry, 0, 0, id[0], id[1], 0, 0xFF)
		rec := r[2:]
		if len(rec) != 16 || !bytes.Equal(rec[0:2], ids[n]) || rec[11] != byte(n) || !bytes.Equal(rec[3:7], []byte{0x00, 0x10, 0x00, 0x68}) {
			t.Fatalf("record %d: % x", n, rec)
		}
		n++
		id = r[0:2]
		if id[0] == 0xFF && id[1] == 0xFF {
			break
		}
	}
	if n != 3 {
		t.Fatalf("walked %d records", n)
	}
	// Partial read needs the reservation.
	if cc, _ := do(t, b, NetFnStorage, CmdGetSELEntry, 0, 0, 0xFF, 0xFF, 8, 8); cc != 0xC5 {
		t.Fatalf("partial read without reservation: %#x", cc)
	}
	r0, r1 := reserveSEL(t, b)
	part := mustOK(t, b, NetFnStorage, CmdGetSELEntry, r0, r1, 0xFF, 0xFF, 8, 8)
	if len(part) != 10 || part[0] != 0xFF || part[5] != 2 {
		t.Fatalf("partial last record % x", part)
	}
	if cc, _ := do(t, b, NetFnStorage, CmdGetSELEntry, r0, r1, 0xFF, 0xFF, 8, 9); cc != 0xCA {
		t.Fatalf("read past the record end: %#x", cc)
	}
	// Adding cancels the reservation.
	mustOK(t, b, NetFnStorage, CmdAddSELEntry, make([]byte, 16)...)
	if cc, _ := do(t, b, NetFnStorage, CmdGetSELEntry, r0, r1, 0xFF, 0xFF, 8, 8); cc != 0xC5 {
		t.Fatalf("stale reservation: %#x", cc)
	}
	// Delete and clear.
	r0, r1 = reserveSEL(t, b)
	if got := mustOK(t, b, NetFnStorage, CmdDeleteSELEntry, r0, r1, ids[1][0], ids[1][1]); !bytes.Equal(got, ids[1]) {
		t.Fatalf("deleted % x", got)
	}
	if cc, _ := do(t, b, NetFnStorage, CmdClearSEL, r0, r1, 'C', 'L', 'R', 0xAA); cc != 0xC5 {
		t.Fatalf("clear with stale reservation: %#x", cc)
	}
	r0, r1 = reserveSEL(t, b)
	if cc, _ := do(t, b, NetFnStorage, CmdClearSEL, r0, r1, 'C', 'L', 'X', 0xAA); cc != 0xCC {
		t.Fatalf("clear without CLR: %#x", cc)
	}
	if got := mustOK(t, b, NetFnStorage, CmdClearSEL, r0, r1, 'C', 'L', 'R', 0xAA); got[0] != 0x01 {
		t.Fatalf("clear status % x", got)
	}
	if info := mustOK(t, b, NetFnStorage, CmdGetSELInfo); info[1] != 0 {
		t.Fatalf("entries after clear % x", info)
	}
	if cc, _ := do(t, b, NetFnStorage, CmdGetSELEntry, 0, 0, 0, 0, 0, 0xFF); cc != 0xCB {
		t.Fatalf("get from empty SEL: %#x", cc)
	}
}

func TestSELFull(t *testing.T) {
	b := New(Config{Clock: NewManualClock(t0), SELCapacity: 2, Logger: quiet})
	mustOK(t, b, NetFnStorage, CmdAddSELEntry, make([]byte, 16)...)
	mustOK(t, b, NetFnStorage, CmdAddSELEntry, make([]byte, 16)...)
	if cc, _ := do(t, b, NetFnStorage, CmdAddSELEntry, make([]byte, 16)...); cc != 0xC4 {
		t.Fatalf("add to full SEL: %#x", cc)
	}
	if info := mustOK(t, b, NetFnStorage, CmdGetSELInfo); info[13]&0x80 == 0 {
		t.Fatalf("overflow not reported: % x", info)
	}
}

func TestPlatformEvent(t *testing.T) {
	b, _ := newManual(t)
	mustOK(t, b, NetFnSensor, CmdPlatformEvent, 0x41, 0x04, 0x01, 0x01, 0x01, 0x57, 0x30)
	recs := b.SELRecords()
	if len(recs) != 1 || recs[0][7] != 0x41 || recs[0][11] != 0x01 || !bytes.Equal(recs[0][13:], []byte{0x57, 0x30, 0xFF}) {
		t.Fatalf("SEL % x", recs)
	}
	ev := mustOK(t, b, NetFnApp, CmdReadEventMessageBuffer)
	if !bytes.Equal(ev, recs[0]) {
		t.Fatalf("event buffer % x, SEL % x", ev, recs[0])
	}
}

// TestSDRWalk reads the whole repository as ipmitool does: reserve, read
// each record's 5-byte header, then the body in 16-byte chunks.
func TestSDRWalk(t *testing.T) {
	b, _ := newManual(t)
	res := mustOK(t, b, NetFnStorage, CmdReserveSDRRepository)
	info := mustOK(t, b, NetFnStorage, CmdGetSDRRepositoryInfo)
	count := int(info[1]) | int(info[2])<<8
	var got [][]byte
	id := []byte{0, 0}
	for !(id[0] == 0xFF && id[1] == 0xFF) {
		h := mustOK(t, b, NetFnStorage, CmdGetSDR, res[0], res[1], id[0], id[1], 0, 5)
		next, rec := h[0:2], append([]byte(nil), h[2:]...)
		total := 5 + int(rec[4])
		for off := 5; off < total; off += 16 {
			n := min(16, total-off)
			c := mustOK(t, b, NetFnStorage, CmdGetSDR, res[0], res[1], id[0], id[1], byte(off), byte(n))
			rec = append(rec, c[2:]...)
		}
		got = append(got, rec)
		id = next
	}
	want := b.SDRRecords()
	if len(got) != count || len(got) != len(want) {
		t.Fatalf("walked %d records, info says %d, repository has %d", len(got), count, len(want))
	}
	types := map[byte]int{}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d: read % x, want % x", i, got[i], want[i])
		}
		types[got[i][3]]++
		if got[i][2] != 0x51 || int(got[i][4]) != len(got[i])-5 {
			t.Fatalf("record %d header % x", i, got[i][:5])
		}
		// The ID string's type/length byte matches the string.
		var tl int
		switch got[i][3] {
		case 0x01:
			tl = 47
		case 0x12:
			tl = 15
		}
		if int(got[i][tl]&0x1F) != len(got[i])-tl-1 {
			t.Fatalf("record %d: ID string length byte %#x, %d bytes follow", i, got[i][tl], len(got[i])-tl-1)
		}
	}
	if types[0x12] != 1 || types[0x01] != 3 {
		t.Fatalf("record types %v", types)
	}
	// Errors: too long a chunk, stale reservation, absent record.
	if cc, _ := do(t, b, NetFnStorage, CmdGetSDR, res[0], res[1], 0, 0, 20, 16); cc != 0xCA {
		t.Fatalf("chunk past the end: %#x", cc)
	}
	mustOK(t, b, NetFnStorage, CmdReserveSDRRepository)
	if cc, _ := do(t, b, NetFnStorage, CmdGetSDR, res[0], res[1], 0, 0, 5, 16); cc != 0xC5 {
		t.Fatalf("stale reservation: %#x", cc)
	}
	if cc, _ := do(t, b, NetFnStorage, CmdGetSDR, 0, 0, 0x50, 0, 0, 0xFF); cc != 0xCB {
		t.Fatalf("absent record: %#x", cc)
	}
}

func TestFRU(t *testing.T) {
	b, _ := newManual(t)
	info := mustOK(t, b, NetFnStorage, CmdGetFRUInventoryAreaInfo, 0)
	size := int(info[0]) | int(info[1])<<8
	var img []byte
	for off := 0; off < size; off += 32 {
		r := mustOK(t, b, NetFnStorage, CmdReadFRUData, 0, byte(off), byte(off>>8), 32)
		if int(r[0]) != len(r)-1 {
			t.Fatalf("count %d with %d bytes", r[0], len(r)-1)
		}
		img = append(img, r[1:]...)
	}
	if len(img) != size {
		t.Fatalf("read %d bytes, size %d", len(img), size)
	}
	if img[0] != 0x01 || zeroChecksum(img[:8]) != 0 {
		t.Fatalf("common header % x", img[:8])
	}
	areas := map[string][]string{}
	for name, idx := range map[string]int{"board": 3, "product": 4} {
		start := int(img[idx]) * 8
		n := int(img[start+1]) * 8
		area := img[start : start+n]
		if zeroChecksum(area) != 0 {
			t.Fatalf("%s area checksum bad: % x", name, area)
		}
		p := 6
		if name == "product" {
			p = 3
		}
		for area[p] != 0xC1 {
			l := int(area[p] & 0x3F)
			areas[name] = append(areas[name], string(area[p+1:p+1+l]))
			p += 1 + l
		}
	}
	if areas["board"][0] != "Example Corp" || areas["board"][1] != "Example Board" || areas["product"][1] != "Example Server" {
		t.Fatalf("FRU fields %q", areas)
	}
	// Write, read back.
	if got := mustOK(t, b, NetFnStorage, CmdWriteFRUData, 0, 0xF0, 0, 1, 2, 3); got[0] != 3 {
		t.Fatalf("write count % x", got)
	}
	if got := mustOK(t, b, NetFnStorage, CmdReadFRUData, 0, 0xF0, 0, 4); !bytes.Equal(got, []byte{4, 1, 2, 3, 0}) {
		t.Fatalf("read back % x", got)
	}
	if cc, _ := do(t, b, NetFnStorage, CmdWriteFRUData, 0, 0xFF, 0, 1, 2); cc != 0xC9 {
		t.Fatalf("write past end: %#x", cc)
	}
}
