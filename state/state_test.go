package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

// sample is a state with every part filled in.
func sample() *State {
	var addr [ioctl.MaxChannels]uint8
	addr[0], addr[3] = 0x20, 0x81
	return &State{
		Devices: []Device{
			{Name: "ipmi0", Kind: KindIPMI, LastFh: 1_000_000_123, Files: []File{
				{Fh: 1_000_000_100, Flags: 2, Kh: 7, IPMI: &ioctl.FileState{
					Owner: uint64(ioctl.OwnerBase) + 4, Inflight: 1, Retries: -1, RetryTimeMs: 0, GetsEvents: true,
					Queue: []ioctl.Message{{RecvType: 1, Addr: []byte{0x0c, 0, 0x0f, 0, 0, 0, 0, 0}, MsgID: -5, NetFn: 7, Cmd: 1,
						Data: []byte{0, 0x20, 0x81}}},
					Registrations: []ioctl.CmdRegistration{{NetFn: 0x30, Cmd: 1, Chans: 0xFFFF}},
				}},
				{Fh: 1_000_000_123, Flags: 0x802, IPMI: &ioctl.FileState{Owner: uint64(ioctl.OwnerBase) + 5, Retries: 2, RetryTimeMs: 900}},
			}},
			{Name: "watchdog", Kind: KindWatchdog, LastFh: 9, Files: []File{{Fh: 9, Flags: 1}},
				Requests: [][]byte{append(make([]byte, 40), 1, 2, 3)}},
		},
		IPMI: &ioctl.DeviceState{LastOwner: 5, MyAddr: addr, MaintMode: ioctl.MaintenanceModeAuto, MaintRemaining: 3 * time.Second},
		Handler: &msghandler.State{IPMIVersion: 0x02, ChannelsReady: true, EventBuffer: true, CurSeq: 3,
			Waiting: []ioctl.Message{{RecvType: 2, Addr: []byte{0x0c, 0, 0x0f, 0, 0, 0, 0, 0}, Data: []byte{1, 2, 3}}},
			Seq: []msghandler.SeqState{{Slot: 2, SeqID: 77, Owner: ioctl.OwnerBase + 4, Addr: []byte{1, 0, 0, 0, 0x72, 0, 0, 0},
				SA: 0x72, MsgID: 11, NetFn: 6, Cmd: 1, Msg: []byte{0x40, 0xb8}, TimeoutMs: 2000, RetryMs: 1000, RetriesLeft: 2}}},
		Watchdog: &watchdog.State{Running: true, Action: watchdog.ActionReset, PreAction: watchdog.PreMsgInt,
			Timeout: 30 * time.Second, Pretimeout: 10 * time.Second, FileOpen: true, ExpectClose: true,
			Stats: watchdog.Stats{Running: true, Sets: 1, Pats: 40, LastPat: time.Unix(1_700_000_000, 5).UTC()}},
		Hardware: []string{"kcs-devport"},
	}
}

// sampleTwo is sample with a second interface (/dev/ipmi1) and its file.
func sampleTwo() *State {
	s := sample()
	var addr [ioctl.MaxChannels]uint8
	addr[0] = 0x20
	s.Devices = append(s.Devices, Device{Name: "ipmi1", Kind: KindIPMI, LastFh: 40, Files: []File{
		{Fh: 40, Flags: 2, IPMI: &ioctl.FileState{Owner: uint64(ioctl.OwnerBase) + 1, Retries: -1, GetsEvents: true,
			Queue: []ioctl.Message{{RecvType: 1, MsgID: 3, NetFn: 7, Cmd: 1, Data: []byte{0}}}}},
	}})
	s.More = []Interface{{Device: "ipmi1", IPMI: ioctl.DeviceState{LastOwner: 1, MyAddr: addr},
		Handler: &msghandler.State{IPMIVersion: 0x02, ChannelsReady: true, CurSeq: 9}}}
	s.Hardware = append(s.Hardware, "ipmi1.i2c-0")
	return s
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    *State
	}{
		{"full", sample()},
		{"two interfaces", sampleTwo()},
		{"further interface without handler", func() *State { s := sampleTwo(); s.More[0].Handler = nil; return s }()},
		{"empty", &State{}},
		{"watchdog only", &State{Watchdog: &watchdog.State{Timeout: 10 * time.Second}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Encode(tc.s)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.s) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.s)
			}
		})
	}
}

// reheader rewrites b's header fields after a change to the body.
func reheader(b []byte, version uint32) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[8:], version)
	binary.LittleEndian.PutUint32(b[12:], crc32.Checksum(b[headerSize:], castagnoli))
	binary.LittleEndian.PutUint64(b[16:], uint64(len(b)-headerSize))
	return b
}

func TestUnknownVersionRefused(t *testing.T) {
	b, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint32{0, Version + 1, 0xFFFFFFFF} {
		_, err := Decode(reheader(b, v))
		if !errors.Is(err, ErrUnknownVersion) {
			t.Fatalf("version %d: %v, want ErrUnknownVersion", v, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "reads only version 1") {
			t.Errorf("version %d: message %q does not say which version this binary reads", v, msg)
		}
	}
}

func TestCorruptRefused(t *testing.T) {
	good, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	body := func(f func(s *State)) []byte {
		s := sampleTwo()
		f(s)
		// Encode would refuse it: build the bytes by hand.
		b, err := Encode(&State{})
		if err != nil {
			t.Fatal(err)
		}
		j, _ := jsonOf(s)
		return reheader(append(b[:headerSize], j...), Version)
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short header", good[:10]},
		{"wrong magic", append([]byte("XPMICUSE"), good[8:]...)},
		{"truncated body", good[:len(good)-1]},
		{"extra byte", append(bytes.Clone(good), ' ')},
		{"flipped body bit", func() []byte { b := bytes.Clone(good); b[len(b)-3] ^= 1; return b }()},
		{"not json", reheader(append(bytes.Clone(good[:headerSize]), "nope"...), Version)},
		{"unknown field", reheader(append(bytes.Clone(good[:headerSize]), `{"devices":[],"future":1}`...), Version)},
		{"two values", reheader(append(bytes.Clone(good[:headerSize]), `{} {}`...), Version)},
		{"duplicate device", body(func(s *State) { s.Devices[1].Name = "ipmi0" })},
		{"unknown kind", body(func(s *State) { s.Devices[0].Kind = "bt" })},
		{"fh zero", body(func(s *State) { s.Devices[0].Files[0].Fh = 0 })},
		{"fh above last", body(func(s *State) { s.Devices[0].LastFh = 5 })},
		{"duplicate fh", body(func(s *State) { s.Devices[0].Files[1].Fh = s.Devices[0].Files[0].Fh })},
		{"ipmi file without state", body(func(s *State) { s.Devices[0].Files[0].IPMI = nil })},
		{"watchdog file with ipmi state", body(func(s *State) { s.Devices[1].Files[0].IPMI = &ioctl.FileState{} })},
		{"ipmi device without interface", body(func(s *State) { s.IPMI = nil })},
		{"watchdog device without watchdog", body(func(s *State) { s.Watchdog = nil })},
		{"watchdog open mismatch", body(func(s *State) { s.Watchdog.FileOpen = false })},
		{"empty carried request", body(func(s *State) { s.Devices[1].Requests = [][]byte{{}} })},
		{"huge carried request", body(func(s *State) { s.Devices[1].Requests = [][]byte{make([]byte, MaxRequest+1)} })},
		{"further interface without device", body(func(s *State) { s.More[0].Device = "ipmi7" })},
		{"further interface unnamed", body(func(s *State) { s.More[0].Device = "" })},
		{"further interface twice", body(func(s *State) { s.More = append(s.More, s.More[0]) })},
		{"further interface on the watchdog", body(func(s *State) { s.More[0].Device = "watchdog" })},
		{"two ipmi devices, one interface state", body(func(s *State) { s.More = nil })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.b); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Decode = %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("encode refuses", func(t *testing.T) {
		s := sample()
		s.Devices[0].Kind = ""
		if _, err := Encode(s); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Encode of an inconsistent state = %v, want ErrCorrupt", err)
		}
	})
}
