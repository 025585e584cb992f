package testbed

import "fmt"

// Interface is the IPMI system interface QEMU gives the guest for a BMC.
type Interface string

// The system interfaces QEMU emulates and the kernel drives.
const (
	// KCS is isa-ipmi-kcs: I/O ports 0xCA2/0xCA3 (the default).
	KCS Interface = "kcs"
	// BT is isa-ipmi-bt: I/O ports 0xE4..0xE6, driven by ipmi_si.
	BT Interface = "bt"
	// SSIF is smbus-ipmi on the PIIX4 SMBus (the guest's i2c-0) at the 7-bit
	// address SSIFAddress, driven by ipmi_ssif.
	SSIF Interface = "ssif"
)

// SSIFAddress is the 7-bit SMBus address the testbed gives smbus-ipmi
// (QEMU's default, 0, is not a usable address).
const SSIFAddress = 0x10

// OrKCS returns i, or KCS when i is empty.
func (i Interface) OrKCS() Interface { return i.orKCS() }

// orKCS returns i, or KCS when i is empty.
func (i Interface) orKCS() Interface {
	if i == "" {
		return KCS
	}
	return i
}

// qemuDevice is the -device argument of the interface for BMC id bmc; irq
// is the ISA interrupt for KCS and BT (0: QEMU's default).
func (i Interface) qemuDevice(bmc string, irq int) string {
	var d string
	switch i.orKCS() {
	case BT:
		d = "isa-ipmi-bt,bmc=" + bmc
	case SSIF:
		return fmt.Sprintf("smbus-ipmi,bmc=%s,address=%#x", bmc, SSIFAddress)
	default:
		d = "isa-ipmi-kcs,bmc=" + bmc
	}
	if irq != 0 {
		d += fmt.Sprintf(",irq=%d", irq)
	}
	return d
}

// kernelModules are what the kernel driver needs for the interfaces, in
// load order: ipmi_si's interfaces before ipmi_ssif's, as the kernel numbers
// them when both are built in or loaded in that order.
func kernelModules(ifaces []Interface) []string {
	if len(ifaces) == 0 {
		ifaces = []Interface{KCS}
	}
	mods := []string{"ipmi_msghandler", "ipmi_devintf"}
	var si, ssif bool
	for _, i := range ifaces {
		if i.orKCS() == SSIF {
			ssif = true
		} else {
			si = true
		}
	}
	if si {
		mods = append(mods, "ipmi_si")
	}
	if ssif {
		mods = append(mods, "i2c-smbus", "i2c-piix4", "ipmi_ssif")
	}
	return mods
}

// shimModules are what ipmi-cuse needs in the guest besides CUSE: the
// SMBus adapter and its userspace access when an interface is SSIF.
func shimModules(ifaces []Interface) []string {
	for _, i := range ifaces {
		if i.orKCS() == SSIF {
			return []string{"i2c-smbus", "i2c-piix4", "i2c-dev"}
		}
	}
	return nil
}
