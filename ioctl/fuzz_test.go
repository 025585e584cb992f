package ioctl

import (
	"bytes"
	"context"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// zeroPad clears the padding bytes at the given offsets of a copy of b.
func zeroPad(b []byte, n int, pads ...[2]int) []byte {
	c := append([]byte(nil), b[:n]...)
	for _, p := range pads {
		clear(c[p[0]:p[1]])
	}
	return c
}

func FuzzDecodeReq(f *testing.F) {
	f.Add(Req{Addr: 1, AddrLen: 8, MsgID: -1, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 272, Data: 9}}.Encode())
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReq(b)
		if err != nil {
			if len(b) >= SizeofReq {
				t.Fatalf("error on %d bytes: %v", len(b), err)
			}
			return
		}
		if got, want := r.Encode(), zeroPad(b, SizeofReq, [2]int{12, 16}, [2]int{28, 32}); !bytes.Equal(got, want) {
			t.Fatalf("round trip\n got % x\nwant % x", got, want)
		}
	})
}

func FuzzDecodeReqSettime(f *testing.F) {
	f.Add(ReqSettime{Retries: -1, RetryTimeMs: 5}.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReqSettime(b)
		if err != nil {
			return
		}
		if got, want := r.Encode(), zeroPad(b, SizeofReqSettime, [2]int{12, 16}, [2]int{28, 32}); !bytes.Equal(got, want) {
			t.Fatalf("round trip\n got % x\nwant % x", got, want)
		}
	})
}

func FuzzDecodeCompatReq(f *testing.F) {
	f.Add(make([]byte, SizeofCompatReqSettime))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeCompatReq(b)
		if err == nil && (r.Addr>>32 != 0 || r.Msg.Data>>32 != 0) {
			t.Fatalf("compat pointers wider than 32 bits: %+v", r)
		}
		s, err := DecodeCompatReqSettime(b)
		if err == nil && s.Req != r {
			t.Fatalf("settime embeds a different req: %+v vs %+v", s.Req, r)
		}
	})
}

func FuzzDecodeRecv(f *testing.F) {
	f.Add(Recv{RecvType: 1, Addr: 1, AddrLen: 40, Msg: Msg{DataLen: 300, Data: 2}}.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecv(b)
		if err != nil {
			return
		}
		got := append([]byte(nil), b[:SizeofRecv]...)
		r.EncodeInto(got) // padding kept, so this must be the identity
		if !bytes.Equal(got, b[:SizeofRecv]) {
			t.Fatalf("round trip\n got % x\nwant % x", got, b[:SizeofRecv])
		}
	})
}

func FuzzDecodeCompatRecv(f *testing.F) {
	f.Add(make([]byte, SizeofCompatRecv))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeCompatRecv(b)
		if err != nil {
			return
		}
		got := make([]byte, SizeofCompatRecv)
		r.EncodeCompatInto(got) // the compat struct has no padding
		if !bytes.Equal(got, b[:SizeofCompatRecv]) {
			t.Fatalf("round trip\n got % x\nwant % x", got, b[:SizeofCompatRecv])
		}
	})
}

func FuzzDecodeAddr(f *testing.F) {
	f.Add(SystemInterfaceAddr{AddrType: 0x0C, Channel: 0x0F}.Encode())
	f.Add(LANAddr{AddrType: 4, Channel: 2}.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := DecodeAddr(b)
		if err != nil {
			return
		}
		enc := a.Encode()
		n := min(len(b), 6+MaxAddrSize) // bytes 38-39 are tail padding
		if !bytes.Equal(enc[:n], b[:n]) {
			t.Fatalf("round trip\n got % x\nwant % x", enc[:n], b[:n])
		}
		_, _ = validateAddr(b[:min(len(b), SizeofAddr)]) // must not panic on any input
	})
}

func FuzzDecodeSmallStructs(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := DecodeCmdSpec(b); err == nil && !bytes.Equal(c.Encode(), b[:SizeofCmdSpec]) {
			t.Fatalf("cmdspec round trip")
		}
		if c, err := DecodeCmdSpecChans(b); err == nil && !bytes.Equal(c.Encode(), b[:SizeofCmdSpecChans]) {
			t.Fatalf("cmdspec_chans round trip")
		}
		if c, err := DecodeChannelLUNAddrSet(b); err == nil && !bytes.Equal(c.Encode(), zeroPad(b, 4, [2]int{3, 4})) {
			t.Fatalf("channel_lun_address_set round trip")
		}
		if c, err := DecodeTimingParms(b); err == nil && !bytes.Equal(c.Encode(), b[:SizeofTimingParms]) {
			t.Fatalf("timing_parms round trip")
		}
		if v, err := DecodeInt(b); err == nil && !bytes.Equal(EncodeInt(v), b[:SizeofInt]) {
			t.Fatalf("int round trip")
		}
	})
}

// FuzzFileIoctl drives one ioctl round with arbitrary input on a file that
// has a message queued: no input may panic, and retries must ask for
// bounded, valid ranges.
func FuzzFileIoctl(f *testing.F) {
	f.Add(uint32(IoctlSendCommand), uint32(0), Req{AddrLen: 8, Msg: Msg{NetFn: 6, Cmd: 1}}.Encode(), uint32(0))
	f.Add(uint32(IoctlReceiveMsgTrunc), uint32(0), Recv{AddrLen: 40, Msg: Msg{DataLen: 1}}.Encode(), uint32(0))
	f.Add(uint32(IoctlCompatReceiveMsg), uint32(1), make([]byte, 24), uint32(24+8))
	f.Add(uint32(IoctlGetMyChannelLUN), uint32(0), []byte{1, 0, 0, 0}, uint32(4))
	f.Fuzz(func(t *testing.T, cmd, flags uint32, in []byte, outSize uint32) {
		d := NewDevice(Config{Submit: func(r *sched.Request) error {
			r.Resp = append(r.Resp[:0], r.Msg[0]|4, r.Msg[1], 0)
			r.Done(r)
			return nil
		}})
		fl, _ := d.open()
		fl.deliver(&recvMsg{recvType: 1, addr: SystemInterfaceAddr{AddrType: 0x0C, Channel: 0x0F}.Encode(), data: []byte{0, 1, 2}})
		out := fl.Ioctl(context.Background(), &cuse.IoctlIn{Cmd: cmd, Flags: flags, Arg: 0x1000, In: in, OutSize: outSize})
		if out.Retry {
			if len(out.InIovs)+len(out.OutIovs) > 256 {
				t.Fatalf("too many iovecs: %d", len(out.InIovs)+len(out.OutIovs))
			}
			var inTotal uint64
			for _, v := range out.InIovs {
				inTotal += v.Len
			}
			if inTotal > 131072 {
				t.Fatalf("in iovecs total %d", inTotal)
			}
			return
		}
		if out.Errno == 0 && uint32(len(out.Out)) > outSize {
			t.Fatalf("%d output bytes for out_size %d", len(out.Out), outSize)
		}
	})
}
