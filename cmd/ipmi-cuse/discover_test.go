package main

import (
	"errors"
	"testing"

	"github.com/u-root/u-root/pkg/smbios"
)

// type38 builds an SMBIOS type 38 table from raw bytes laid out as firmware
// lays them out, and parses it with u-root's own table parser.
func type38(t *testing.T, ifType smbios.BMCInterfaceType, base uint64, modifier uint8) *smbios.Table {
	t.Helper()
	raw := []byte{byte(smbios.TableTypeIPMIDeviceInfo), 0x12, 0x26, 0x00,
		byte(ifType), // 04h interface type
		0x20,         // 05h IPMI 2.0
		0x20,         // 06h I2C slave address
		0xFF,         // 07h NV storage: none
	}
	for i := 0; i < 8; i++ {
		raw = append(raw, byte(base>>(8*i))) // 08h base address
	}
	raw = append(raw, modifier, 5, 0, 0) // 10h modifier, 11h IRQ, no strings
	tbl, _, err := smbios.ParseTable(raw)
	if err != nil {
		t.Fatalf("ParseTable: %v", err)
	}
	return tbl
}

// rec describes one type 38 record for a test case.
type rec struct {
	ifType   smbios.BMCInterfaceType
	base     uint64
	modifier uint8
}

func TestKCSFromSMBIOS(t *testing.T) {
	const kcs = smbios.BMCInterfaceTypeKCSKeyboardControllerStyle
	tests := []struct {
		name    string
		recs    []rec
		want    kcsInterface
		wantErr bool
	}{
		// What QEMU's isa-ipmi-kcs describes: 0xCA2 in I/O space, spacing 1.
		{name: "qemu isa-ipmi-kcs", recs: []rec{{kcs, 0xCA3, 0x00}}, want: kcsInterface{0xCA2, 1, "SMBIOS type 38"}},
		{name: "odd address via modifier bit 4", recs: []rec{{kcs, 0xCA3, 0x10}}, want: kcsInterface{0xCA3, 1, "SMBIOS type 38"}},
		{name: "32-bit spacing", recs: []rec{{kcs, 0xCA9, 0x40}}, want: kcsInterface{0xCA8, 4, "SMBIOS type 38"}},
		{name: "16-byte spacing", recs: []rec{{kcs, 0xCA9, 0x80}}, want: kcsInterface{0xCA8, 16, "SMBIOS type 38"}},
		{name: "BT skipped, KCS second", recs: []rec{{smbios.BMCInterfaceTypeBTBlockTransfer, 0xE5, 0}, {kcs, 0xCA3, 0}}, want: kcsInterface{0xCA2, 1, "SMBIOS type 38"}},
		{name: "memory mapped", recs: []rec{{kcs, 0xFED00000, 0}}, wantErr: true},
		{name: "reserved spacing", recs: []rec{{kcs, 0xCA3, 0xC0}}, wantErr: true},
		{name: "SSIF only", recs: []rec{{smbios.BMCInterfaceTypeSSIFSMBusSystemInterface, 0x20, 0}}, wantErr: true},
		{name: "none", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := &smbios.Info{}
			for _, r := range tt.recs {
				info.Tables = append(info.Tables, type38(t, r.ifType, r.base, r.modifier))
			}
			got, err := kcsFromSMBIOS(info)
			if tt.wantErr {
				if !errors.Is(err, errNoKCS) {
					t.Fatalf("got %+v, %v; want errNoKCS", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
