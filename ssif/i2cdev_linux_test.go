package ssif

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestBusOf: an inherited descriptor's bus is the minor of an i2c-dev
// node (major 89); anything else is refused.
func TestBusOf(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if _, err := BusOf(null); err == nil {
		t.Error("BusOf(/dev/null) accepted a device that is not i2c-dev")
	}
	dir := t.TempDir()
	reg, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if _, err := BusOf(reg); err == nil {
		t.Error("BusOf accepted a regular file")
	}
	// A node with i2c-dev's numbers (opening it needs no driver with
	// O_PATH). Making it needs CAP_MKNOD.
	node := filepath.Join(dir, "i2c-7")
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(i2cMajor, 7))); err != nil {
		t.Skipf("mknod (needs CAP_MKNOD): %v", err)
	}
	f, err := os.OpenFile(node, unix.O_PATH, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if bus, err := BusOf(f); err != nil || bus != 7 {
		t.Errorf("BusOf(i2c-7 node) = %d, %v, want 7", bus, err)
	}
}
