package sysif

import (
	"fmt"

	"github.com/u-root/u-root/pkg/smbios"
)

// FromSMBIOS reads the IPMI Device Information records (SMBIOS type 38,
// DSP0134 7.39) and returns the interfaces ipmi-cuse can drive, in the
// kernel's numbering order (see kernelOrder), and a description of each record
// it cannot use (SMIC, memory-mapped registers, reserved encodings), so
// errors name what was found.
func FromSMBIOS(info *smbios.Info) (found []Interface, unusable []string, err error) {
	devs, err := info.GetIPMIDeviceInfo()
	if err != nil {
		return nil, nil, fmt.Errorf("reading SMBIOS type 38: %w", err)
	}
	for _, d := range devs {
		i, why := fromRecord(d)
		if why != "" {
			unusable = append(unusable, why)
			continue
		}
		found = append(found, i)
	}
	return kernelOrder(found), unusable, nil
}

func fromRecord(d *smbios.IPMIDeviceInfo) (Interface, string) {
	const src = "SMBIOS type 38"
	var k Kind
	switch d.InterfaceType {
	case smbios.BMCInterfaceTypeKCSKeyboardControllerStyle:
		k = KCS
	case smbios.BMCInterfaceTypeBTBlockTransfer:
		k = BT
	case smbios.BMCInterfaceTypeSSIFSMBusSystemInterface:
		// The base address byte is the SMBus address in its 8-bit form
		// (the 7-bit address shifted left), as the kernel's dmi_ipmi
		// reads it; the bus is not described.
		return Interface{Kind: SSIF, Bus: -1, Addr: uint8(d.BaseAddress) >> 1, Source: src}, ""
	case smbios.BMCInterfaceTypeSMICServerManagementInterfaceChip:
		return Interface{}, fmt.Sprintf("SMIC at %#x (SMIC is not supported)", d.BaseAddress&^1)
	default:
		return Interface{}, fmt.Sprintf("%s (unknown interface type)", d.InterfaceType)
	}
	name := kindName(k)
	if d.BaseAddress&1 == 0 {
		return Interface{}, fmt.Sprintf("memory-mapped %s at %#x (memory-mapped registers are not supported, only I/O ports)", name, d.BaseAddress)
	}
	// Bit 0 of the base address flags I/O space; bit 4 of the modifier
	// byte is the address's real least significant bit.
	addr := d.BaseAddress&^1 | uint64(d.BaseAddressModifierInterruptInfo>>4&1)
	if addr > 0xFFFF {
		return Interface{}, fmt.Sprintf("%s at out-of-range I/O address %#x", name, addr)
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
		return Interface{}, fmt.Sprintf("%s at %#x with reserved register spacing", name, addr)
	}
	return Interface{Kind: k, Base: uint16(addr), Spacing: spacing, Bus: -1, IRQ: d.InterruptNumber, Source: src}, ""
}

// Discover reads the firmware's SMBIOS tables (/sys/firmware/dmi/tables)
// and returns what FromSMBIOS finds. With no usable interface the error
// wraps ErrNoInterface and names the records that could not be used.
func Discover() ([]Interface, error) {
	info, err := smbios.FromSysfs()
	if err != nil {
		return nil, fmt.Errorf("reading SMBIOS tables from /sys/firmware/dmi/tables: %w", err)
	}
	found, unusable, err := FromSMBIOS(info)
	if err != nil {
		return nil, err
	}
	if len(found) == 0 {
		if len(unusable) > 0 {
			return nil, fmt.Errorf("%w; found only: %v", ErrNoInterface, unusable)
		}
		return nil, ErrNoInterface
	}
	return found, nil
}

// Select picks the interfaces of kind k (all when k is empty), keeping the
// order. If none matches, the error names what there is.
func Select(all []Interface, k Kind) ([]Interface, error) {
	if k == "" {
		return all, nil
	}
	var out []Interface
	for _, i := range all {
		if i.Kind == k {
			out = append(out, i)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w of type %s; found: %v", ErrNoInterface, kindName(k), all)
	}
	return out, nil
}
