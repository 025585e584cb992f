package sysif

import (
	"testing"

	"github.com/u-root/u-root/pkg/smbios"
)

// FuzzFromSMBIOS feeds arbitrary type 38 records (two per table, so the
// ordering and duplicate rules meet) through u-root's parser and
// FromSMBIOS, and checks what comes out: never a panic, only KCS, BT and
// SSIF, register spacings SMBIOS can encode, 7-bit SMBus addresses, and the
// kernel's order (ipmi_si's interfaces with an interrupt, then without,
// then SSIF) with no two ipmi_si interfaces at one address.
func FuzzFromSMBIOS(f *testing.F) {
	rec := func(ifType smbios.BMCInterfaceType, base uint64, modifier, irq uint8) []byte {
		b := []byte{byte(ifType), 0x20, 0x20, 0xFF}
		for i := range 8 {
			b = append(b, byte(base>>(8*i)))
		}
		return append(b, modifier, irq)
	}
	f.Add(rec(tKCS, 0xCA3, 0, 0), rec(tSSIF, 0x20, 0, 0))
	f.Add(rec(tKCS, 0xCA3, 0, 0), rec(tBT, 0xE5, 0, 5))
	f.Add(rec(tBT, 0xCA3, 0xC0, 0), rec(tKCS, 0xCA3, 0x10, 9))
	f.Add(rec(tSMIC, 0xFED00000, 0, 0), rec(tSSIF, 0, 0, 0))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		info := &smbios.Info{}
		for _, body := range [][]byte{a, b} {
			if len(body) > 60 {
				body = body[:60]
			}
			raw := append([]byte{byte(smbios.TableTypeIPMIDeviceInfo), byte(4 + len(body)), 0x26, 0x00}, body...)
			raw = append(raw, 0, 0) // no strings
			tbl, _, err := smbios.ParseTable(raw)
			if err != nil {
				return
			}
			info.Tables = append(info.Tables, tbl)
		}
		found, _, err := FromSMBIOS(info)
		if err != nil {
			return
		}
		phase := 0 // 0: SI with IRQ, 1: SI without, 2: SSIF
		seen := map[uint16]bool{}
		for _, i := range found {
			p := 2
			switch i.Kind {
			case KCS, BT:
				p = 1
				if i.IRQ != 0 {
					p = 0
				}
				if i.Spacing != 1 && i.Spacing != 4 && i.Spacing != 16 {
					t.Errorf("%v: spacing %d", i, i.Spacing)
				}
				if seen[i.Base] {
					t.Errorf("two ipmi_si interfaces at %#x: %v", i.Base, found)
				}
				seen[i.Base] = true
			case SSIF:
				if i.Addr > 0x7F || i.Bus != -1 {
					t.Errorf("%v: address %#x bus %d", i, i.Addr, i.Bus)
				}
			default:
				t.Errorf("kind %q found", i.Kind)
			}
			if p < phase {
				t.Errorf("out of the kernel's order: %v", found)
			}
			phase = p
		}
	})
}
