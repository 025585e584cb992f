package testbed

import (
	"fmt"
	"os"
)

// FRUData returns a small FRU inventory image (IPMI Platform Management FRU
// Information Storage Definition v1.0): a common header and a board info
// area with fixed strings, so `fru print 0` and ipmi-fru have real fields to
// decode. The manufacturing date is left unspecified so the output does not
// depend on the time zone.
func FRUData() []byte {
	board := []byte{0x01, 0x00, 0x00, 0x00, 0x00, 0x00} // version, length (set below), language, mfg date
	for _, s := range []string{"ipmi-cuse", "Testbed Board", "SN-0001", "PN-0002", "fru-v1"} {
		board = append(board, 0xC0|byte(len(s)))
		board = append(board, s...)
	}
	board = append(board, 0xC1) // end of fields
	for (len(board)+1)%8 != 0 {
		board = append(board, 0)
	}
	board = append(board, 0)
	board[1] = byte(len(board) / 8)
	board[len(board)-1] = zeroSum(board[:len(board)-1])
	hdr := []byte{0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00}
	hdr[7] = zeroSum(hdr[:7])
	img := append(hdr, board...)
	return append(img, make([]byte, 256-len(img))...)
}

// zeroSum returns the byte that makes the sum of b and it 0 mod 256.
func zeroSum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// WriteFRUData writes FRUData to path for BMC.FRUData.
func WriteFRUData(path string) error {
	if err := os.WriteFile(path, FRUData(), 0o644); err != nil {
		return fmt.Errorf("FRU data: %w", err)
	}
	return nil
}
