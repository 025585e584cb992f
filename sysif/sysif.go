// Package sysif finds the BMC's system interfaces (SMBIOS type 38, flags)
// and opens each as a transport for the engine: KCS (kcs/), BT (bt/) or
// SSIF (ssif/). It keeps the daemon's wiring thin: the daemon asks for the
// interfaces, opens each, and builds one engine per interface, knowing
// nothing of the interface types.
package sysif

import (
	"errors"
	"fmt"
)

// Kind is a system interface type.
type Kind string

// The interface types of IPMI v2.0 (SMBIOS type 38 byte 04h).
const (
	KCS  Kind = "kcs"
	SMIC Kind = "smic"
	BT   Kind = "bt"
	SSIF Kind = "ssif"
)

// ParseKind reads an interface type as the flags spell it.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KCS, BT, SSIF:
		return k, nil
	case SMIC:
		return "", errors.New("SMIC interfaces are not supported (only KCS, BT and SSIF)")
	}
	return "", fmt.Errorf("unknown interface type %q (kcs, bt or ssif)", s)
}

// Interface is one system interface and where it lives.
type Interface struct {
	Kind Kind
	// Base is the I/O port of the first register (KCS data, BT control).
	Base uint16
	// Spacing is the distance in bytes between registers (KCS, BT).
	Spacing uint16
	// Bus is the I2C adapter number of an SSIF BMC (/dev/i2c-Bus), or -1
	// when it must be found by probing every adapter, as ipmi_ssif does
	// (SMBIOS does not name the bus).
	Bus int
	// Addr is the 7-bit SMBus address of an SSIF BMC.
	Addr uint8
	// IRQ is the interrupt SMBIOS gives a KCS or BT interface (0: none).
	// ipmi-cuse polls, but the number orders the interfaces as the
	// kernel numbers them (see kernelOrder).
	IRQ uint8
	// Source says where the description came from (for logs).
	Source string
}

// String names the interface and its address, for logs and errors.
func (i Interface) String() string {
	switch i.Kind {
	case SSIF:
		if i.Bus < 0 {
			return fmt.Sprintf("SSIF at SMBus address %#x", i.Addr)
		}
		return fmt.Sprintf("SSIF at i2c-%d address %#x", i.Bus, i.Addr)
	case KCS, BT:
		return fmt.Sprintf("%s at I/O %#x spacing %d", kindName(i.Kind), i.Base, i.Spacing)
	}
	return kindName(i.Kind)
}

func kindName(k Kind) string {
	switch k {
	case KCS, BT, SSIF, SMIC:
		return map[Kind]string{KCS: "KCS", BT: "BT", SSIF: "SSIF", SMIC: "SMIC"}[k]
	}
	return string(k)
}

// ErrNoInterface is returned when the firmware describes no interface
// ipmi-cuse can drive.
var ErrNoInterface = errors.New("no usable IPMI system interface described in SMBIOS type 38")

// kernelOrder orders interfaces as the kernel numbers them (/dev/ipmi0,
// /dev/ipmi1...) when every one answers: ipmi_si's before ipmi_ssif's, as
// when ipmi_si is loaded or built in before ipmi_ssif; among ipmi_si's,
// init_ipmi_si tries those with an interrupt first, then those without,
// each group in table order, and skips a record at the I/O address of one
// already kept (a duplicate, as ipmi_si_add_smi drops it). SSIF records
// keep their table order. An interface that does not answer takes no
// number: the daemon skips it when it opens them (ipmi_msghandler numbers
// only the interfaces that registered).
func kernelOrder(in []Interface) []Interface {
	out := make([]Interface, 0, len(in))
	seen := map[uint16]bool{}
	for _, withIRQ := range []bool{true, false} {
		for _, i := range in {
			if i.Kind == SSIF || (i.IRQ != 0) != withIRQ || seen[i.Base] {
				continue
			}
			seen[i.Base] = true
			out = append(out, i)
		}
	}
	for _, i := range in {
		if i.Kind == SSIF {
			out = append(out, i)
		}
	}
	return out
}
