package watchdog

import (
	"bytes"
	"errors"
	"testing"
	"time"
	"unsafe"

	"github.com/ipmi-cuse/ipmi-cuse/internal/ioc"
)

func TestIoctlNumbers(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  uint32
		ioc  uint32
		want uint32
	}{
		{"WDIOC_GETSUPPORT", IoctlGetSupport, IOC(ioc.Read, 'W', 0, 40), 0x80285700},
		{"WDIOC_GETSTATUS", IoctlGetStatus, IOC(ioc.Read, 'W', 1, 4), 0x80045701},
		{"WDIOC_GETBOOTSTATUS", IoctlGetBootStatus, IOC(ioc.Read, 'W', 2, 4), 0x80045702},
		{"WDIOC_GETTEMP", IoctlGetTemp, IOC(ioc.Read, 'W', 3, 4), 0x80045703},
		{"WDIOC_SETOPTIONS", IoctlSetOptions, IOC(ioc.Read, 'W', 4, 4), 0x80045704},
		{"WDIOC_KEEPALIVE", IoctlKeepalive, IOC(ioc.Read, 'W', 5, 4), 0x80045705},
		{"WDIOC_SETTIMEOUT", IoctlSetTimeout, IOC(ioc.Read|ioc.Write, 'W', 6, 4), 0xC0045706},
		{"WDIOC_GETTIMEOUT", IoctlGetTimeout, IOC(ioc.Read, 'W', 7, 4), 0x80045707},
		{"WDIOC_SETPRETIMEOUT", IoctlSetPretimeout, IOC(ioc.Read|ioc.Write, 'W', 8, 4), 0xC0045708},
		{"WDIOC_GETPRETIMEOUT", IoctlGetPretimeout, IOC(ioc.Read, 'W', 9, 4), 0x80045709},
		{"WDIOC_GETTIMELEFT", IoctlGetTimeLeft, IOC(ioc.Read, 'W', 10, 4), 0x8004570A},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want || tc.ioc != tc.want {
				t.Errorf("constant %#x, IOC %#x, want %#x", tc.got, tc.ioc, tc.want)
			}
		})
	}
}

func TestInfoLayout(t *testing.T) {
	if n := unsafe.Sizeof(Info{}); n != SizeofInfo {
		t.Fatalf("Sizeof(Info) = %d, want %d", n, SizeofInfo)
	}
	in := Info{Options: 0x8380, FirmwareVersion: 1}
	copy(in.Identity[:], "IPMI")
	b := in.Encode()
	want := append([]byte{0x80, 0x83, 0, 0, 1, 0, 0, 0, 'I', 'P', 'M', 'I'}, make([]byte, 28)...)
	if !bytes.Equal(b, want) {
		t.Fatalf("Encode = % x, want % x", b, want)
	}
	got, err := DecodeInfo(b)
	if err != nil || got != in {
		t.Fatalf("DecodeInfo = %+v, %v", got, err)
	}
	if _, err := DecodeInfo(b[:39]); !errors.Is(err, ErrShort) {
		t.Fatalf("DecodeInfo(39 bytes) err = %v, want ErrShort", err)
	}
}

func TestInt(t *testing.T) {
	for _, v := range []int32{0, 1, -1, 255, 0x7fffffff, -0x80000000} {
		t.Run("", func(t *testing.T) {
			b := EncodeInt(v)
			if len(b) != SizeofInt {
				t.Fatalf("len %d", len(b))
			}
			if got, err := DecodeInt(b); err != nil || got != v {
				t.Fatalf("DecodeInt(% x) = %d, %v, want %d", b, got, err, v)
			}
		})
	}
	if _, err := DecodeInt([]byte{1, 2, 3}); !errors.Is(err, ErrShort) {
		t.Fatalf("short: err %v", err)
	}
}

func TestSetMsg(t *testing.T) {
	base := timerSettings{action: ActionReset, preAction: PreMsgInt, timeout: 10 * time.Second, pretimeout: 2 * time.Second}
	for _, tc := range []struct {
		name string
		mod  func(*timerSettings)
		want []byte
	}{
		{"running with pretimeout", func(s *timerSettings) { s.running = true },
			[]byte{0x44, 0x31, 2, 0, 100, 0}},
		{"stopped", nil, []byte{0x04, 0x00, 0, 0, 100, 0}},
		{"running no pretimeout", func(s *timerSettings) { s.running, s.pretimeout = true, 0 },
			[]byte{0x44, 0x01, 0, 0, 100, 0}},
		{"power cycle smi", func(s *timerSettings) {
			s.running, s.action, s.preAction = true, ActionPowerCycle, PreSMI
		}, []byte{0x44, 0x13, 2, 0, 100, 0}},
		{"action none still runs", func(s *timerSettings) { s.running, s.action = true, ActionNone },
			[]byte{0x44, 0x30, 2, 0, 100, 0}},
		{"ipmi 1.0 no dont-stop", func(s *timerSettings) { s.running, s.ipmi10 = true, true },
			[]byte{0x04, 0x31, 2, 0, 100, 0}},
		{"countdown little-endian, rounded up", func(s *timerSettings) {
			s.running, s.timeout, s.pretimeout = true, 6553*time.Second+50*time.Millisecond, 1500*time.Millisecond
		}, []byte{0x44, 0x31, 2, 0, 0xFB, 0xFF}}, // 65531: 6553.05 s rounded up
		{"300 s", func(s *timerSettings) { s.running, s.timeout = true, 300*time.Second },
			[]byte{0x44, 0x31, 2, 0, 0xB8, 0x0B}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base
			if tc.mod != nil {
				tc.mod(&s)
			}
			m := setMsg(s)
			if m[0] != 0x18 || m[1] != 0x24 {
				t.Fatalf("header % x, want 18 24", m[:2])
			}
			if !bytes.Equal(m[2:], tc.want) {
				t.Fatalf("data % x, want % x", m[2:], tc.want)
			}
		})
	}
}

func TestDecodeGetResponse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		resp    []byte
		want    TimerState
		wantErr error
	}{
		{"running", []byte{0x1C, 0x25, 0, 0x44, 0x31, 5, 0x10, 0xB8, 0x0B, 0x2C, 0x01},
			TimerState{Use: 4, Running: true, Action: ActionReset, PreAction: PreMsgInt, Pretimeout: 5 * time.Second,
				ExpirationFlags: 0x10, Initial: 300 * time.Second, Present: 30 * time.Second}, nil},
		{"stopped dont-log", []byte{0x1C, 0x25, 0, 0x84, 0x00, 0, 0, 100, 0, 100, 0},
			TimerState{Use: 4, DontLog: true, Initial: 10 * time.Second, Present: 10 * time.Second}, nil},
		{"error cc", []byte{0x1C, 0x25, 0xC1}, TimerState{}, ErrBMC},
		{"short data", []byte{0x1C, 0x25, 0, 0x44}, TimerState{}, ErrShort},
		{"no cc", []byte{0x1C, 0x25}, TimerState{}, ErrShort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeGetResponse(tc.resp)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Action
		ok   bool
	}{
		{"reset", ActionReset, true}, {"power-off", ActionPowerOff, true}, {"power_cycle", ActionPowerCycle, true},
		{"none", ActionNone, true}, {"reboot", 0, false},
	} {
		t.Run("action "+tc.in, func(t *testing.T) {
			a, err := ParseAction(tc.in)
			if (err == nil) != tc.ok || a != tc.want {
				t.Fatalf("ParseAction(%q) = %v, %v", tc.in, a, err)
			}
			if tc.ok && tc.in == a.String() {
				if b, _ := ParseAction(a.String()); b != a {
					t.Fatalf("round trip %v", a)
				}
			}
			if !tc.ok && !errors.Is(err, ErrConfig) {
				t.Fatalf("err %v not ErrConfig", err)
			}
		})
	}
	for _, tc := range []struct {
		in   string
		want PreAction
		ok   bool
	}{
		{"none", PreNone, true}, {"smi", PreSMI, true}, {"pre_nmi", PreNMI, true}, {"msg-int", PreMsgInt, true},
		{"pre_int", PreMsgInt, true}, {"panic", 0, false},
	} {
		t.Run("preaction "+tc.in, func(t *testing.T) {
			p, err := ParsePreAction(tc.in)
			if (err == nil) != tc.ok || p != tc.want {
				t.Fatalf("ParsePreAction(%q) = %v, %v", tc.in, p, err)
			}
			if tc.ok {
				if q, _ := ParsePreAction(p.String()); q != p {
					t.Fatalf("round trip %v", p)
				}
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	submit := (&fakeEngine{}).Submit
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no submit", Config{}},
		{"timeout too long", Config{Submit: submit, Timeout: MaxTimeout + time.Second}},
		{"timeout too short", Config{Submit: submit, Timeout: time.Millisecond}},
		{"pretimeout not shorter", Config{Submit: submit, Timeout: 5 * time.Second, Pretimeout: 5 * time.Second}},
		{"pretimeout rounds up to timeout", Config{Submit: submit, Timeout: 5 * time.Second, Pretimeout: 4100 * time.Millisecond}},
		{"pretimeout too long", Config{Submit: submit, Timeout: 600 * time.Second, Pretimeout: 256 * time.Second}},
		{"bad action", Config{Submit: submit, Action: 4}},
		{"bad preaction", Config{Submit: submit, PreAction: 7}},
		{"negative interval", Config{Submit: submit, PatInterval: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("New err = %v, want ErrConfig", err)
			}
		})
	}
	w, err := New(Config{Submit: submit, Timeout: 30 * time.Second, Pretimeout: 6 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if w.PatInterval() != 8*time.Second {
		t.Fatalf("default PatInterval %v, want (30-6)/3 = 8s", w.PatInterval())
	}
}
