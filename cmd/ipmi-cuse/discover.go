package main

import (
	"errors"
	"fmt"

	"github.com/u-root/u-root/pkg/smbios"
)

// kcsInterface is where a KCS system interface lives in I/O space.
type kcsInterface struct {
	// Base is the I/O port of the data register.
	Base uint16
	// Spacing is the distance in bytes from the data register to the
	// status/command register.
	Spacing uint16
	// Source says where the address came from (for the start-up log line).
	Source string
}

// errNoKCS is returned when the firmware describes no usable KCS interface.
var errNoKCS = errors.New("no KCS interface described in SMBIOS type 38 (pass --kcs-port to give one)")

// kcsFromSMBIOS reads the IPMI Device Information records (SMBIOS type 38,
// DSP0134 7.39) and returns the first KCS interface that lives in I/O space.
// A memory-mapped KCS or another interface type (BT, SMIC, SSIF) is reported
// in the error, since ipmi-cuse drives only port-I/O KCS.
func kcsFromSMBIOS(info *smbios.Info) (kcsInterface, error) {
	devs, err := info.GetIPMIDeviceInfo()
	if err != nil {
		return kcsInterface{}, fmt.Errorf("reading SMBIOS type 38: %w", err)
	}
	var skipped []string
	for _, d := range devs {
		if d.InterfaceType != smbios.BMCInterfaceTypeKCSKeyboardControllerStyle {
			skipped = append(skipped, d.InterfaceType.String())
			continue
		}
		if d.BaseAddress&1 == 0 {
			skipped = append(skipped, fmt.Sprintf("memory-mapped KCS at %#x", d.BaseAddress))
			continue
		}
		// Bit 0 of the base address flags I/O space; bit 4 of the
		// modifier byte is the address's real least significant bit.
		addr := d.BaseAddress&^1 | uint64(d.BaseAddressModifierInterruptInfo>>4&1)
		if addr > 0xFFFF {
			skipped = append(skipped, fmt.Sprintf("KCS at out-of-range I/O address %#x", addr))
			continue
		}
		var spacing uint16
		switch d.BaseAddressModifierInterruptInfo >> 6 {
		case 0:
			spacing = 1
		case 1:
			spacing = 4
		case 2:
			spacing = 16
		default:
			skipped = append(skipped, "KCS with reserved register spacing")
			continue
		}
		return kcsInterface{Base: uint16(addr), Spacing: spacing, Source: "SMBIOS type 38"}, nil
	}
	if len(skipped) > 0 {
		return kcsInterface{}, fmt.Errorf("%w; found only: %v", errNoKCS, skipped)
	}
	return kcsInterface{}, errNoKCS
}

// discoverKCS finds the KCS interface from the firmware's SMBIOS tables.
func discoverKCS() (kcsInterface, error) {
	info, err := smbios.FromSysfs()
	if err != nil {
		return kcsInterface{}, fmt.Errorf("reading SMBIOS tables from /sys/firmware/dmi/tables: %w", err)
	}
	return kcsFromSMBIOS(info)
}
