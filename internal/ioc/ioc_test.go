package ioc

import "testing"

// TestIOC checks the encoding against numbers printed by a C program with
// <linux/ipmi.h> and <linux/watchdog.h> on x86-64, through IOC, the
// direction helpers and the decoders.
func TestIOC(t *testing.T) {
	tests := []struct {
		name               string
		dir, typ, nr, size uint32
		helper             uint32
		want               uint32
	}{
		{"IPMICTL_RECEIVE_MSG_TRUNC", Read | Write, 'i', 11, 48, RW('i', 11, 48), 0xC030690B},
		{"IPMICTL_SEND_COMMAND", Read, 'i', 13, 40, R('i', 13, 40), 0x8028690D},
		{"IPMICTL_SET_MAINTENANCE_MODE_CMD", Write, 'i', 31, 4, W('i', 31, 4), 0x4004691F},
		{"WDIOC_GETSUPPORT", Read, 'W', 0, 40, R('W', 0, 40), 0x80285700},
		{"WDIOC_SETTIMEOUT", Read | Write, 'W', 6, 4, RW('W', 6, 4), 0xC0045706},
		{"_IO('W', 5)", None, 'W', 5, 0, IO('W', 5), 0x00005705},
		{"largest fields", Read | Write, 0xFF, 0xFF, 1<<SizeBits - 1, RW(0xFF, 0xFF, 1<<SizeBits-1), 0xFFFFFFFF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IOC(tt.dir, tt.typ, tt.nr, tt.size); got != tt.want {
				t.Errorf("IOC = %#08x, want %#08x", got, tt.want)
			}
			if tt.helper != tt.want {
				t.Errorf("helper = %#08x, want %#08x", tt.helper, tt.want)
			}
			if d, ty, n, s := Dir(tt.want), Type(tt.want), NR(tt.want), Size(tt.want); d != tt.dir || ty != tt.typ || n != tt.nr || s != tt.size {
				t.Errorf("decoded dir %d type %#x nr %d size %d, want %d %#x %d %d", d, ty, n, s, tt.dir, tt.typ, tt.nr, tt.size)
			}
		})
	}
}

// TestConstantsMatchIOC: the shift constants that ABI packages use to build
// constants agree with IOC.
func TestConstantsMatchIOC(t *testing.T) {
	const c = Read<<DirShift | 4<<SizeShift | 'W'<<TypeShift | 1<<NRShift
	if c != R('W', 1, 4) || DirShift != 30 || SizeShift != 16 || TypeShift != 8 || NRShift != 0 {
		t.Errorf("constant %#08x, R %#08x; shifts %d %d %d %d", uint32(c), R('W', 1, 4), DirShift, SizeShift, TypeShift, NRShift)
	}
}
