package cuse

import (
	"bytes"
	"testing"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestWireSizes pins every wire struct to the kernel size in
// /work/shared/spec/cuse-protocol.md §0. go-fuse's *In types embed the
// 40-byte InHeader.
func TestWireSizes(t *testing.T) {
	tests := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"fuse_in_header", unsafe.Sizeof(fuse.InHeader{}), 40},
		{"fuse_out_header", unsafe.Sizeof(fuse.OutHeader{}), 16},
		{"cuse_init_in", unsafe.Sizeof(cuseInitIn{}), 16},
		{"cuse_init_out", unsafe.Sizeof(cuseInitOut{}), 72},
		{"fuse_open_in+hdr", unsafe.Sizeof(fuse.OpenIn{}), 40 + 8},
		{"fuse_open_out", unsafe.Sizeof(fuse.OpenOut{}), 16},
		{"fuse_read_in+hdr", unsafe.Sizeof(fuse.ReadIn{}), 40 + 40},
		{"fuse_write_in+hdr", unsafe.Sizeof(fuse.WriteIn{}), 40 + 40},
		{"fuse_write_out", unsafe.Sizeof(fuse.WriteOut{}), 8},
		{"fuse_release_in+hdr", unsafe.Sizeof(fuse.ReleaseIn{}), 40 + 24},
		{"fuse_flush_in+hdr", unsafe.Sizeof(fuse.FlushIn{}), 40 + 24},
		{"fuse_interrupt_in+hdr", unsafe.Sizeof(fuse.InterruptIn{}), 40 + 8},
		{"fuse_ioctl_in+hdr", unsafe.Sizeof(fuse.IoctlIn{}), 40 + 32},
		{"fuse_ioctl_out", unsafe.Sizeof(fuse.IoctlOut{}), 16},
		{"fuse_ioctl_iovec", unsafe.Sizeof(ioctlIovec{}), 16},
		{"fuse_poll_in+hdr", unsafe.Sizeof(pollIn{}), 40 + 24},
		{"fuse_poll_out", unsafe.Sizeof(pollOut{}), 8},
		{"fuse_notify_poll_wakeup_out", unsafe.Sizeof(notifyPollWakeup{}), 8},
	}
	consts := []struct {
		name string
		got  int
		want uintptr
	}{
		{"inHeaderSize", inHeaderSize, 40},
		{"outHeaderSize", outHeaderSize, 16},
		{"cuseInitInSize", cuseInitInSize, 16},
		{"cuseInitOutSize", cuseInitOutSize, 72},
		{"openInSize", openInSize, 8},
		{"openOutSize", openOutSize, 16},
		{"readInSize", readInSize, 40},
		{"writeInSize", writeInSize, 40},
		{"writeOutSize", writeOutSize, 8},
		{"releaseInSize", releaseInSize, 24},
		{"interruptInSize", interruptInSize, 8},
		{"ioctlInSize", ioctlInSize, 32},
		{"ioctlOutSize", ioctlOutSize, 16},
		{"ioctlIovecSize", ioctlIovecSize, 16},
		{"pollInSize", pollInSize, 24},
		{"pollOutSize", pollOutSize, 8},
		{"notifyPollWakeupOut", notifyPollWakeupOut, 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("sizeof = %d, want %d", tc.got, tc.want)
			}
		})
	}
	for _, tc := range consts {
		t.Run(tc.name, func(t *testing.T) {
			if uintptr(tc.got) != tc.want {
				t.Errorf("= %d, want %d", tc.got, tc.want)
			}
		})
	}
}

// TestWireConstants pins the protocol numbers, including go-fuse's exported
// ones this package relies on.
func TestWireConstants(t *testing.T) {
	tests := []struct {
		name      string
		got, want int64
	}{
		{"FUSE_OPEN", opOpen, 14},
		{"FUSE_READ", opRead, 15},
		{"FUSE_WRITE", opWrite, 16},
		{"FUSE_RELEASE", opRelease, 18},
		{"FUSE_FSYNC", opFsync, 20},
		{"FUSE_FLUSH", opFlush, 25},
		{"FUSE_INTERRUPT", opInterrupt, 36},
		{"FUSE_IOCTL", opIoctl, 39},
		{"FUSE_POLL", opPoll, 40},
		{"CUSE_INIT", opCuseInit, 4096},
		{"fuse.CUSE_INIT", fuse.CUSE_INIT, 4096},
		{"CUSE_UNRESTRICTED_IOCTL", fuse.CUSE_UNRESTRICTED_IOCTL, 1},
		{"FUSE_IOCTL_COMPAT", fuse.IOCTL_COMPAT, 1},
		{"FUSE_IOCTL_UNRESTRICTED", fuse.IOCTL_UNRESTRICTED, 2},
		{"FUSE_IOCTL_RETRY", fuse.IOCTL_RETRY, 4},
		{"FUSE_IOCTL_32BIT", ioctl32Bit, 8},
		{"FUSE_IOCTL_COMPAT_X32", ioctlCompatX32, 0x20},
		{"FUSE_IOCTL_MAX_IOV", fuse.FUSE_IOCTL_MAX_IOV, 256},
		{"FUSE_POLL_SCHEDULE_NOTIFY", fuse.FUSE_POLL_SCHEDULE_NOTIFY, 1},
		{"FUSE_NOTIFY_POLL", notifyPoll, 1},
		{"CUSE_INIT_INFO_MAX", fuse.CUSE_INIT_INFO_MAX, 4096},
		{"FUSE_MIN_READ_BUFFER", minReadBuffer, 8192},
		{"max_pages*PAGE_SIZE", ioctlMaxData, 131072},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("= %d, want %d", tc.got, tc.want)
			}
		})
	}
}

// TestDecodeEncode checks field offsets through a round trip of known bytes.
func TestDecodeEncode(t *testing.T) {
	raw := []byte{
		64, 0, 0, 0, 40, 0, 0, 0, // len 64, opcode POLL
		2, 0, 0, 0, 0, 0, 0, 0, // unique 2
		0, 0, 0, 0, 0, 0, 0, 0, // nodeid
		1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, // uid gid pid extlen pad
		5, 0, 0, 0, 0, 0, 0, 0, // fh 5
		7, 0, 0, 0, 0, 0, 0, 0, // kh 7
		1, 0, 0, 0, 0x41, 0, 0, 0, // flags, events
	}
	p, ok := decode[pollIn](raw)
	if !ok {
		t.Fatal("decode failed")
	}
	if p.Length != 64 || p.Opcode != opPoll || p.Unique != 2 || p.Uid != 1 || p.Gid != 2 || p.Pid != 3 ||
		p.Fh != 5 || p.Kh != 7 || p.Flags != 1 || p.Events != 0x41 {
		t.Errorf("decoded %+v", p)
	}
	if got := encode(nil, &p); !bytes.Equal(got, raw) {
		t.Errorf("encode = %v, want %v", got, raw)
	}
	if _, ok := decode[pollIn](raw[:63]); ok {
		t.Error("decode of a short buffer succeeded")
	}
}
