package bmcsim

// Storage netfn FRU commands (IPMI v2.0 chapter 34).
const (
	CmdGetFRUInventoryAreaInfo = 0x10
	CmdReadFRUData             = 0x11
	CmdWriteFRUData            = 0x12
)

// fruSize is the size of FRU device 0.
const fruSize = 256

// fruMaxRead is the most bytes one Read FRU Data returns; larger
// requests get 0xCA so clients shrink their chunks, as with real BMCs.
const fruMaxRead = 64

// fruArea builds one FRU information area (Platform Management FRU
// Information Storage Definition v1.0 §10-11): the fixed head, type/length
// encoded 8-bit ASCII fields, the C1h end marker, padding to a multiple of
// 8 bytes and the zero checksum.
func fruArea(head []byte, fields ...string) []byte {
	a := append([]byte(nil), head...)
	for _, f := range fields {
		a = append(a, 0xC0|byte(len(f)))
		a = append(a, f...)
	}
	a = append(a, 0xC1)
	for (len(a)+1)%8 != 0 {
		a = append(a, 0x00)
	}
	a = append(a, 0)
	a[1] = byte(len(a) / 8)
	a[len(a)-1] = zeroChecksum(a[:len(a)-1])
	return a
}

// zeroChecksum returns the byte that makes the sum of p and it 0 mod 256.
func zeroChecksum(p []byte) byte {
	var s byte
	for _, c := range p {
		s += c
	}
	return -s
}

// buildFRU returns the FRU 0 image: common header, board info area and
// product info area.
func buildFRU() []byte {
	// Board area: version 1, length (filled in), language English,
	// manufacturing time (minutes since 1996-01-01: 2024-01-01 00:00 =
	// 14,726,880 = E0B6E0h, stored LS first), then manufacturer, product
	// name, serial, part number, FRU file ID.
	board := fruArea([]byte{0x01, 0x00, 0x19, 0xE0, 0xB6, 0xE0},
		"Example Corp", "Example Board", "EXB0001", "EXB-PN-01", "")
	// Product area: version 1, length, language, then manufacturer,
	// product name, part/model, version, serial, asset tag, FRU file ID.
	product := fruArea([]byte{0x01, 0x00, 0x19},
		"Example Corp", "Example Server", "EXS-1", "1.0", "EXS0001", "ASSET-1", "")
	hdr := []byte{0x01, 0x00, 0x00, 0x01, byte(1 + len(board)/8), 0x00, 0x00, 0}
	hdr[7] = zeroChecksum(hdr[:7])
	img := make([]byte, fruSize)
	copy(img, hdr)
	copy(img[8:], board)
	copy(img[8+len(board):], product)
	return img
}

func init() {
	register(NetFnStorage, CmdGetFRUInventoryAreaInfo, fixedLen(1, func(b *BMC, d []byte) (byte, []byte) {
		if d[0] != 0 {
			return ccNotPresent, nil
		}
		return ccOK, []byte{byte(len(b.fru)), byte(len(b.fru) >> 8), 0x00} // byte access
	}))
	register(NetFnStorage, CmdReadFRUData, fixedLen(4, func(b *BMC, d []byte) (byte, []byte) {
		if d[0] != 0 {
			return ccNotPresent, nil
		}
		off, n := int(d[1])|int(d[2])<<8, int(d[3])
		if n > fruMaxRead {
			return ccCantReturn, nil
		}
		if off >= len(b.fru) {
			return ccOutOfRange, nil
		}
		n = min(n, len(b.fru)-off)
		return ccOK, append([]byte{byte(n)}, b.fru[off:off+n]...)
	}))
	register(NetFnStorage, CmdWriteFRUData, minLen(3, func(b *BMC, d []byte) (byte, []byte) {
		if d[0] != 0 {
			return ccNotPresent, nil
		}
		off, p := int(d[1])|int(d[2])<<8, d[3:]
		if off+len(p) > len(b.fru) {
			return ccOutOfRange, nil
		}
		copy(b.fru[off:], p)
		return ccOK, []byte{byte(len(p))}
	}))
}

// FRU returns a copy of FRU device 0's image.
func (b *BMC) FRU() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.fru...)
}
