package sysif

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/smbios"
)

// type38 builds an SMBIOS type 38 table from raw bytes laid out as firmware
// lays them out, and parses it with u-root's own table parser.
func type38(t *testing.T, ifType smbios.BMCInterfaceType, base uint64, modifier, irq uint8) *smbios.Table {
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
	raw = append(raw, modifier, irq, 0, 0) // 10h modifier, 11h IRQ, no strings
	tbl, _, err := smbios.ParseTable(raw)
	if err != nil {
		t.Fatalf("ParseTable: %v", err)
	}
	return tbl
}

type rec struct {
	ifType   smbios.BMCInterfaceType
	base     uint64
	modifier uint8
	irq      uint8
}

const (
	tKCS  = smbios.BMCInterfaceTypeKCSKeyboardControllerStyle
	tBT   = smbios.BMCInterfaceTypeBTBlockTransfer
	tSSIF = smbios.BMCInterfaceTypeSSIFSMBusSystemInterface
	tSMIC = smbios.BMCInterfaceTypeSMICServerManagementInterfaceChip
)

func kcsAt(base, spacing uint16) Interface {
	return Interface{Kind: KCS, Base: base, Spacing: spacing, Bus: -1, Source: "SMBIOS type 38"}
}

func withIRQ(i Interface, irq uint8) Interface {
	i.IRQ = irq
	return i
}

func TestFromSMBIOS(t *testing.T) {
	ssif := Interface{Kind: SSIF, Bus: -1, Addr: 0x10, Source: "SMBIOS type 38"}
	btAt := Interface{Kind: BT, Base: 0xE4, Spacing: 1, Bus: -1, Source: "SMBIOS type 38"}
	tests := []struct {
		name     string
		recs     []rec
		want     []Interface
		unusable []string // substrings, in order
	}{
		// What QEMU's isa-ipmi-kcs describes: 0xCA2 in I/O space, spacing 1.
		{name: "qemu isa-ipmi-kcs", recs: []rec{{tKCS, 0xCA3, 0x00, 0}}, want: []Interface{kcsAt(0xCA2, 1)}},
		{name: "odd address via modifier bit 4", recs: []rec{{tKCS, 0xCA3, 0x10, 0}}, want: []Interface{kcsAt(0xCA3, 1)}},
		{name: "32-bit spacing", recs: []rec{{tKCS, 0xCA9, 0x40, 0}}, want: []Interface{kcsAt(0xCA8, 4)}},
		{name: "16-byte spacing", recs: []rec{{tKCS, 0xCA9, 0x80, 0}}, want: []Interface{kcsAt(0xCA8, 16)}},
		// QEMU's isa-ipmi-bt: 0xE4 in I/O space.
		{name: "qemu isa-ipmi-bt", recs: []rec{{tBT, 0xE5, 0, 0}}, want: []Interface{btAt}},
		// QEMU's smbus-ipmi at 0x10: the base address byte is 0x20.
		{name: "qemu smbus-ipmi", recs: []rec{{tSSIF, 0x20, 0, 0}}, want: []Interface{ssif}},
		// ipmi_si's interfaces come first, in table order, then SSIF.
		{name: "ssif, kcs, bt", recs: []rec{{tSSIF, 0x20, 0, 0}, {tKCS, 0xCA3, 0, 0}, {tBT, 0xE5, 0, 0}}, want: []Interface{kcsAt(0xCA2, 1), btAt, ssif}},
		{name: "memory mapped", recs: []rec{{tKCS, 0xFED00000, 0, 0}}, unusable: []string{"memory-mapped KCS at 0xfed00000"}},
		{name: "memory mapped BT beside KCS", recs: []rec{{tBT, 0xFED00000, 0, 0}, {tKCS, 0xCA3, 0, 0}}, want: []Interface{kcsAt(0xCA2, 1)}, unusable: []string{"memory-mapped BT"}},
		{name: "reserved spacing", recs: []rec{{tKCS, 0xCA3, 0xC0, 0}}, unusable: []string{"reserved register spacing"}},
		// init_ipmi_si tries the interfaces with an interrupt first, and
		// drops a second record at an address already kept.
		{name: "irq first", recs: []rec{{tKCS, 0xCA3, 0, 0}, {tSSIF, 0x20, 0, 0}, {tBT, 0xE5, 0, 5}}, want: []Interface{withIRQ(btAt, 5), kcsAt(0xCA2, 1), ssif}},
		{name: "duplicate address", recs: []rec{{tKCS, 0xCA3, 0, 0}, {tBT, 0xCA3, 0, 0}, {tKCS, 0xCA3, 0, 9}}, want: []Interface{withIRQ(kcsAt(0xCA2, 1), 9)}},
		{name: "SMIC", recs: []rec{{tSMIC, 0xCA9, 0, 0}}, unusable: []string{"SMIC at 0xca8 (SMIC is not supported)"}},
		{name: "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := &smbios.Info{}
			for _, r := range tt.recs {
				info.Tables = append(info.Tables, type38(t, r.ifType, r.base, r.modifier, r.irq))
			}
			got, unusable, err := FromSMBIOS(info)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("found %+v, want %+v", got, tt.want)
			}
			if len(unusable) != len(tt.unusable) {
				t.Fatalf("unusable %q, want %q", unusable, tt.unusable)
			}
			for i, u := range tt.unusable {
				if !strings.Contains(unusable[i], u) {
					t.Errorf("unusable[%d] = %q, want it to contain %q", i, unusable[i], u)
				}
			}
		})
	}
}

func TestSelect(t *testing.T) {
	all := []Interface{kcsAt(0xCA2, 1), {Kind: SSIF, Bus: -1, Addr: 0x10}}
	if got, err := Select(all, ""); err != nil || len(got) != 2 {
		t.Errorf("Select all: %v, %v", got, err)
	}
	if got, err := Select(all, SSIF); err != nil || len(got) != 1 || got[0].Kind != SSIF {
		t.Errorf("Select ssif: %v, %v", got, err)
	}
	_, err := Select(all, BT)
	if !errors.Is(err, ErrNoInterface) || !strings.Contains(err.Error(), "KCS at I/O 0xca2") {
		t.Errorf("Select bt: %v; want ErrNoInterface naming what was found", err)
	}
}

func TestParseKind(t *testing.T) {
	for s, want := range map[string]Kind{"kcs": KCS, "bt": BT, "ssif": SSIF} {
		if k, err := ParseKind(s); err != nil || k != want {
			t.Errorf("ParseKind(%q) = %q, %v", s, k, err)
		}
	}
	for _, s := range []string{"smic", "KCS", "", "usb"} {
		if _, err := ParseKind(s); err == nil {
			t.Errorf("ParseKind(%q) accepted", s)
		}
	}
}

func TestI2CAdapters(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"i2c-10", "i2c-2", "0-0010", "i2c-x"} {
		if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "i2c-2", "name"), []byte("SMBus PIIX4 adapter at 0700\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := I2CDevicesDir
	I2CDevicesDir = dir
	defer func() { I2CDevicesDir = old }()
	got, err := i2cAdapters()
	if err != nil || !reflect.DeepEqual(got, []int{2, 10}) {
		t.Errorf("i2cAdapters = %v, %v; want [2 10]", got, err)
	}
	if n := adapterName(2); n != "SMBus PIIX4 adapter at 0700" {
		t.Errorf("adapterName(2) = %q", n)
	}
	if n := adapterName(10); n != "?" {
		t.Errorf("adapterName(10) = %q, want ?", n)
	}
}

func TestOpenSSIFNoAdapters(t *testing.T) {
	old := I2CDevicesDir
	I2CDevicesDir = t.TempDir()
	defer func() { I2CDevicesDir = old }()
	_, err := Open(Interface{Kind: SSIF, Bus: -1, Addr: 0x10, Source: "SMBIOS type 38"}, Options{})
	if err == nil || !strings.Contains(err.Error(), "no I2C adapters") {
		t.Errorf("Open with no adapters: %v", err)
	}
}
