package kcs_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/u-root/u-root/pkg/memio"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/kcsbmc"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
)

// fakeIO records accesses and serves reads from a map of addresses.
type fakeIO struct {
	regs map[uint16]uint8
	log  []string
	err  error
}

func (f *fakeIO) In(addr uint16, v memio.UintN) error {
	if f.err != nil {
		return f.err
	}
	*(v.(*memio.Uint8)) = memio.Uint8(f.regs[addr])
	f.log = append(f.log, fmt.Sprintf("in %#x", addr))
	return nil
}

func (f *fakeIO) Out(addr uint16, v memio.UintN) error {
	if f.err != nil {
		return f.err
	}
	f.log = append(f.log, fmt.Sprintf("out %#x %#x", addr, uint8(*(v.(*memio.Uint8)))))
	return nil
}

func (f *fakeIO) Close() error { return nil }

func TestIOPortAddresses(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cfg          kcs.IOConfig
		data, status uint16
	}{
		{"defaults", kcs.IOConfig{}, 0xCA2, 0xCA3},
		{"spacing 4", kcs.IOConfig{Base: 0xCA8, Spacing: 4}, 0xCA8, 0xCAC},
		{"base only", kcs.IOConfig{Base: 0x8A2}, 0x8A2, 0x8A3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeIO{regs: map[uint16]uint8{tc.data: 0x5A, tc.status: 0x41}}
			p, err := kcs.NewIOPort(f, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if d, s := p.Addrs(); d != tc.data || s != tc.status {
				t.Fatalf("Addrs() = %#x, %#x; want %#x, %#x", d, s, tc.data, tc.status)
			}
			st, _ := p.ReadStatus()
			dv, _ := p.ReadData()
			p.WriteCommand(kcs.CmdWriteStart)
			p.WriteData(0x18)
			if st != 0x41 || dv != 0x5A {
				t.Errorf("ReadStatus/ReadData = %#x/%#x, want 0x41/0x5a", st, dv)
			}
			want := []string{
				fmt.Sprintf("in %#x", tc.status), fmt.Sprintf("in %#x", tc.data),
				fmt.Sprintf("out %#x 0x61", tc.status), fmt.Sprintf("out %#x 0x18", tc.data),
			}
			if fmt.Sprint(f.log) != fmt.Sprint(want) {
				t.Errorf("accesses %q, want %q", f.log, want)
			}
		})
	}
	if _, err := kcs.NewIOPort(&fakeIO{}, kcs.IOConfig{Base: 0xFFFF, Spacing: 1}); err == nil {
		t.Error("status register beyond 0xFFFF accepted")
	}
}

func TestIOPortErrorsWrapped(t *testing.T) {
	eio := errors.New("I/O error")
	p, _ := kcs.NewIOPort(&fakeIO{err: eio}, kcs.IOConfig{})
	if _, err := p.ReadStatus(); !errors.Is(err, eio) {
		t.Fatalf("ReadStatus error %v does not wrap the accessor's", err)
	}
	if err := p.WriteData(1); !errors.Is(err, eio) {
		t.Fatalf("WriteData error %v does not wrap the accessor's", err)
	}
}

// withDevPort points OpenDevPort at path for one test.
func withDevPort(t testing.TB, path string) {
	old := kcs.DevPortPath
	kcs.DevPortPath = path
	t.Cleanup(func() { kcs.DevPortPath = old })
}

// TestDevPortOffsets runs the /dev/port accessor on a regular file, where
// the byte at offset N stands for I/O port N.
func TestDevPortOffsets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "port")
	img := make([]byte, 0x1000)
	img[0xCA2], img[0xCA3] = 0x77, 0x80
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	withDevPort(t, path)
	p, err := kcs.OpenDevPort(kcs.IOConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := p.ReadStatus(); err != nil || s != 0x80 {
		t.Fatalf("ReadStatus = %#x, %v", s, err)
	}
	if d, err := p.ReadData(); err != nil || d != 0x77 {
		t.Fatalf("ReadData = %#x, %v", d, err)
	}
	if err := p.WriteCommand(0x61); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteData(0x18); err != nil {
		t.Fatal(err)
	}
	p.Close()
	got, _ := os.ReadFile(path)
	if got[0xCA2] != 0x18 || got[0xCA3] != 0x61 {
		t.Fatalf("file bytes %#x %#x, want 0x18 0x61", got[0xCA2], got[0xCA3])
	}
}

func TestOpenErrors(t *testing.T) {
	withDevPort(t, filepath.Join(t.TempDir(), "missing"))
	if _, err := kcs.OpenDevPort(kcs.IOConfig{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OpenDevPort on a missing device: %v, want a wrapped ErrNotExist", err)
	}
	p, err := kcs.OpenArchPort(kcs.IOConfig{})
	if err == nil {
		p.Close() // privileged: iopl granted; do not touch the ports
		t.Skip("iopl(3) allowed here")
	}
	if !errors.Is(err, os.ErrPermission) && !errors.Is(err, kcs.ErrUnsupported) {
		t.Logf("iopl error is neither EPERM nor unsupported: %v", err)
	}
	if err.Error() == "" || errors.Unwrap(err) == nil {
		t.Errorf("OpenArchPort error %q is not wrapped", err)
	}
}

// BenchmarkDevPortAccess compares one byte access through memio's
// LinuxPort machinery (Seek + binary.Read) with kcs's pread, on a regular
// file standing in for /dev/port.
func BenchmarkDevPortAccess(b *testing.B) {
	path := filepath.Join(b.TempDir(), "port")
	if err := os.WriteFile(path, make([]byte, 0x1000), 0o600); err != nil {
		b.Fatal(err)
	}
	b.Run("memio", func(b *testing.B) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			b.Fatal(err)
		}
		lp := &memio.LinuxPort{ReadWriteCloser: memio.NewMemIOPort(f)}
		defer lp.Close()
		var v memio.Uint8
		b.ReportAllocs()
		for b.Loop() {
			if err := lp.In(0xCA3, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pread", func(b *testing.B) {
		withDevPort(b, path)
		p, err := kcs.OpenDevPort(kcs.IOConfig{})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.ReadStatus(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestAnyThread: a port reached through a file descriptor, or in/out with
// iopl on every thread, leaves the Host free to run on any goroutine; a
// ThreadBinder without a ThreadBound method is bound to one thread.
func TestAnyThread(t *testing.T) {
	p, err := kcs.NewIOPort(&fakeIO{}, kcs.IOConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if p.ThreadBound() || !kcs.New(p, kcs.Config{}).AnyThread() {
		t.Error("an IOPort without a per-thread binding is not usable from any thread")
	}
	if kcs.New(&threadCheckPort{BMC: kcsbmc.New(&fakeResponder{})}, kcs.Config{}).AnyThread() {
		t.Error("a ThreadBinder port is usable from any thread")
	}
}
