package watchdog

import (
	"context"
	"encoding/binary"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
)

// FuzzIoctl feeds arbitrary ioctl rounds (command, argument bytes, output
// size, BMC answers) to an open /dev/watchdog and checks the invariants of
// the retry protocol: a retry only asks for the one int or struct at Arg,
// a final reply never carries more than the kernel accepts, and the
// settings stay within what Set Watchdog Timer can carry.
func FuzzIoctl(f *testing.F) {
	cmds := []uint32{IoctlGetSupport, IoctlGetStatus, IoctlGetBootStatus, IoctlGetTemp, IoctlSetOptions,
		IoctlKeepalive, IoctlSetTimeout, IoctlGetTimeout, IoctlSetPretimeout, IoctlGetPretimeout, IoctlGetTimeLeft}
	for _, c := range cmds {
		f.Add(c, []byte{}, uint32(0), byte(0), []byte{})
		f.Add(c, []byte{30, 0, 0, 0}, uint32(4), byte(0), []byte{0x44, 0x31, 2, 0, 100, 0, 50, 0})
		f.Add(c, []byte{0xff, 0xff, 0xff, 0xff}, uint32(40), byte(0x80), []byte{1})
	}
	f.Fuzz(func(t *testing.T, cmd uint32, in []byte, outSize uint32, cc byte, getData []byte) {
		e := &fakeEngine{resetCCs: []byte{cc, cc, cc, cc, cc}, setCC: cc & 0x01, getData: getData}
		w, err := New(Config{Submit: e.Submit, Timeout: 10 * time.Second, Pretimeout: 2 * time.Second,
			Action: ActionReset, PreAction: PreMsgInt, Logger: discard()})
		if err != nil {
			t.Fatal(err)
		}
		file, errno := w.Open(context.Background(), 0)
		if errno != 0 {
			t.Fatal(errno)
		}
		defer file.Release()
		const arg = 0x1000
		out := file.Ioctl(context.Background(), &cuse.IoctlIn{Cmd: cmd, Arg: arg, Flags: 0x2, In: in, OutSize: outSize})
		if out.Retry {
			for _, iov := range append(append([]cuse.Iovec(nil), out.InIovs...), out.OutIovs...) {
				if iov.Base != arg || (iov.Len != SizeofInt && iov.Len != SizeofInfo) {
					t.Fatalf("cmd %#x: retry asks for %+v", cmd, iov)
				}
			}
			if len(out.InIovs)+len(out.OutIovs) == 0 {
				t.Fatalf("cmd %#x: retry asks for nothing", cmd)
			}
			return
		}
		if uint32(len(out.Out)) > outSize {
			t.Fatalf("cmd %#x: %d output bytes, kernel accepts %d", cmd, len(out.Out), outSize)
		}
		if out.Errno != 0 && len(out.Out) != 0 {
			t.Fatalf("cmd %#x: output with errno %v", cmd, out.Errno)
		}
		switch out.Errno {
		case 0, syscall.ENOTTY, syscall.EINVAL, syscall.EIO, syscall.EBUSY:
		default:
			t.Fatalf("cmd %#x: errno %v", cmd, out.Errno)
		}
		if err := checkTimes(w.st.timeout, w.st.pretimeout); err != nil {
			t.Fatalf("cmd %#x: settings left invalid: %v", cmd, err)
		}
		if cmd == IoctlSetTimeout && out.Errno == 0 && len(in) == 4 {
			if got := binary.LittleEndian.Uint32(out.Out); got != binary.LittleEndian.Uint32(in) {
				t.Fatalf("SETTIMEOUT wrote back %d for %d", got, binary.LittleEndian.Uint32(in))
			}
		}
		for _, r := range e.all() {
			if r.msg[1] == CmdSetWatchdog && len(r.msg) != 8 {
				t.Fatalf("Set % x", r.msg)
			}
		}
	})
}

// FuzzDecodeGetResponse checks that any response decodes or fails cleanly,
// and that a decoded one re-encodes to the same data bytes.
func FuzzDecodeGetResponse(f *testing.F) {
	f.Add([]byte{0x1C, 0x25, 0, 0x44, 0x31, 5, 0x10, 0xB8, 0x0B, 0x2C, 0x01})
	f.Add([]byte{0x1C, 0x25, 0xC1})
	f.Add([]byte{0x1C})
	f.Fuzz(func(t *testing.T, resp []byte) {
		ts, err := DecodeGetResponse(resp)
		if err != nil {
			return
		}
		d := resp[3:11]
		use := ts.Use
		if ts.Running {
			use |= 0x40
		}
		if ts.DontLog {
			use |= 0x80
		}
		if use != d[0]&0xC7 || byte(ts.Action) != d[1]&0x07 || byte(ts.PreAction) != d[1]>>4&0x07 ||
			ts.Pretimeout != time.Duration(d[2])*time.Second || ts.ExpirationFlags != d[3] ||
			ts.Initial != time.Duration(binary.LittleEndian.Uint16(d[4:]))*countdownUnit ||
			ts.Present != time.Duration(binary.LittleEndian.Uint16(d[6:]))*countdownUnit {
			t.Fatalf("% x decoded as %+v", resp, ts)
		}
	})
}
