package sysif

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/ssif"
)

// I2CDevicesDir is where the kernel lists I2C adapters (i2c-N).
var I2CDevicesDir = "/sys/bus/i2c/devices"

// i2cAdapters lists the adapter numbers under I2CDevicesDir, in order.
func i2cAdapters() ([]int, error) {
	ents, err := os.ReadDir(I2CDevicesDir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		if n, ok := strings.CutPrefix(e.Name(), "i2c-"); ok {
			if v, err := strconv.Atoi(n); err == nil {
				out = append(out, v)
			}
		}
	}
	sort.Ints(out)
	return out, nil
}

// adapterName reads an adapter's name, for messages.
func adapterName(bus int) string {
	b, err := os.ReadFile(filepath.Join(I2CDevicesDir, fmt.Sprintf("i2c-%d", bus), "name"))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func openSSIF(i Interface, o Options) (*Opened, error) {
	if i.Addr == 0 || i.Addr > 0x7F {
		return nil, fmt.Errorf("%s: not a 7-bit SMBus address", i)
	}
	if o.I2C != nil {
		// Inherited: its bus is the one the previous process found.
		bus, err := ssif.BusOf(o.I2C)
		if err != nil {
			return nil, fmt.Errorf("%s: the inherited descriptor: %w", i, err)
		}
		if i.Bus >= 0 && i.Bus != bus {
			return nil, fmt.Errorf("%s: the inherited descriptor is i2c-%d, not the interface's bus", i, bus)
		}
		return openSSIFOn(i, bus, o)
	}
	buses := []int{i.Bus}
	if i.Bus < 0 {
		// SMBIOS does not say which bus: try every adapter, as ipmi_ssif
		// does, and take the first where a BMC answers Get Device ID.
		var err error
		if buses, err = i2cAdapters(); err != nil || len(buses) == 0 {
			return nil, fmt.Errorf("%s: no I2C adapters in %s (load the SMBus driver, e.g. i2c-i801 or i2c-piix4, and i2c-dev; or give --ssif-bus): %v", i, I2CDevicesDir, err)
		}
	}
	var tried []string
	for _, bus := range buses {
		op, err := openSSIFOn(i, bus, o)
		if err == nil {
			return op, nil
		}
		tried = append(tried, fmt.Sprintf("i2c-%d (%s): %v", bus, adapterName(bus), err))
	}
	return nil, fmt.Errorf("no SSIF BMC answers at address %#x (from %s): %s", i.Addr, i.Source, strings.Join(tried, "; "))
}

// openSSIFOn opens /dev/i2c-bus (or uses o.I2C) and checks that a BMC answers there.
func openSSIFOn(i Interface, bus int, o Options) (*Opened, error) {
	var b *ssif.DevBus
	var err error
	if o.I2C != nil {
		b, err = ssif.NewDevBus(o.I2C, i.Addr)
	} else {
		b, err = ssif.OpenDevBus(bus, i.Addr)
	}
	if err != nil {
		return nil, err
	}
	sc := o.SSIF
	sc.Logger = o.Logger
	host := ssif.New(b, sc)
	// A probe: Get Device ID, with a short deadline so a bus without the
	// BMC costs little.
	probeDL := time.Now().Add(2 * time.Second)
	resp, err := host.Transact([]byte{0x06 << 2, 0x01}, make([]byte, 0, 64), probeDL)
	if err == nil && (len(resp) < 3 || resp[2] != 0) {
		err = fmt.Errorf("the BMC answered Get Device ID with % x", resp)
	}
	if err != nil {
		b.Close()
		return nil, err
	}
	caps, err := host.Init(time.Now().Add(2 * time.Second))
	if err != nil && o.Logger != nil {
		var cc interface{ CompletionCode() uint8 }
		if !errors.As(err, &cc) || cc.CompletionCode() != 0xC1 {
			o.Logger.Warn("SSIF: Get System Interface Capabilities failed; single-part messages only", "err", err)
		}
	}
	i.Bus = bus
	via := adapterName(bus)
	if o.I2C != nil {
		via += ", inherited descriptor"
	}
	return &Opened{Interface: i, Transport: host, Attention: host.Attention, SSIF: host, Files: []*os.File{b.File()},
		What:  fmt.Sprintf("%s (%s, %s; %d/%d bytes, multi-part %d)", i, i.Source, via, caps.MaxWrite, caps.MaxRead, caps.Multi),
		close: b.Close}, nil
}
