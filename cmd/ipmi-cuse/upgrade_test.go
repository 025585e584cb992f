package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/ssif"
	"github.com/ipmi-cuse/ipmi-cuse/sysif"
	"golang.org/x/sys/unix"
)

// TestHardwareNames: the names a hand-over and systemd's store give the
// interfaces' descriptors are what the next process looks for, also when
// the descriptor was itself inherited (its path is then not its name).
func TestHardwareNames(t *testing.T) {
	dir := t.TempDir()
	file := func(name string) *os.File {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	inherited := file("upgrade-fd-3")
	i2c := file("upgrade-fd-4")
	fd, err := unix.Dup(int(file("devport").Fd()))
	if err != nil {
		t.Fatal(err)
	}
	devPort := os.NewFile(uintptr(fd), kcs.DevPortPath)
	t.Cleanup(func() { devPort.Close() })
	ssifHost := ssif.New(nil, ssif.Config{})
	tests := []struct {
		name      string
		bmc       *sysif.Opened
		inherited *os.File
		stack     string
		want      string
	}{
		{"opened /dev/port", &sysif.Opened{Files: []*os.File{devPort}}, nil, "", "devport"},
		{"inherited /dev/port", &sysif.Opened{Files: []*os.File{inherited}}, inherited, "", "devport"},
		{"inherited i2c", &sysif.Opened{SSIF: ssifHost, Interface: sysif.Interface{Kind: sysif.SSIF, Bus: 5, Addr: 0x10}, Files: []*os.File{i2c}}, nil, "", "i2c-5@0x10"},
		{"further interface's i2c", &sysif.Opened{SSIF: ssifHost, Interface: sysif.Interface{Kind: sysif.SSIF, Bus: 0, Addr: 0x10}, Files: []*os.File{i2c}}, nil, "ipmi1", "ipmi1.i2c-0@0x10"},
		{"further interface's /dev/port", &sysif.Opened{Files: []*os.File{devPort}}, nil, "ipmi2", "ipmi2.devport"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			if tc.stack == "" {
				hw := hardwareOf(tc.bmc, tc.inherited)
				if len(hw) != 1 {
					t.Fatalf("%d descriptors", len(hw))
				}
				got = hw[0].Name
			} else {
				s := &bmcStack{bmc: tc.bmc, name: tc.stack}
				hw := s.hardware()
				if len(hw) != 1 {
					t.Fatalf("%d descriptors", len(hw))
				}
				got = hw[0].Name
			}
			if got != tc.want {
				t.Errorf("name %q, want %q", got, tc.want)
			}
		})
	}
	// What the next process looks up finds them, and only for the
	// interface at that address.
	sd := &stored{files: map[string][]*os.File{storeHardware + "ipmi1.i2c-0@0x10": {i2c}, storeHardware + "i2c-5@0x10": {inherited}}}
	if f := inheritedI2C(nil, sd, stackHardware("ipmi1", ""), 0x10); f != i2c {
		t.Errorf("ipmi1's stored i2c not found")
	}
	if f := inheritedI2C(nil, sd, "", 0x10); f != inherited {
		t.Errorf("the first interface's stored i2c not found")
	}
	if f := inheritedI2C(nil, sd, "", 0x11); f != nil {
		t.Errorf("an SSIF interface at another address got the stored i2c")
	}
	if f := inheritedI2C(nil, sd, stackHardware("ipmi2", ""), 0x10); f != nil {
		t.Errorf("ipmi2 found a descriptor it does not have")
	}
	if f := inheritedI2C(nil, nil, "", 0x10); f != nil {
		t.Errorf("found a descriptor with nothing inherited")
	}
}
