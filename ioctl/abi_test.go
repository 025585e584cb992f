package ioctl

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"unsafe"
)

// TestIoctlNumbers checks every command number against the value printed by
// a C program compiled with <linux/ipmi.h> on x86-64 (spec §1.1 and §1.3),
// and that IOC rebuilds it from its parts.
func TestIoctlNumbers(t *testing.T) {
	tests := []struct {
		name          string
		got           uint32
		want          uint32
		dir, nr, size uint32
	}{
		{"RECEIVE_MSG_TRUNC", IoctlReceiveMsgTrunc, 0xC030690B, 3, 11, 48},
		{"RECEIVE_MSG", IoctlReceiveMsg, 0xC030690C, 3, 12, 48},
		{"SEND_COMMAND", IoctlSendCommand, 0x8028690D, 2, 13, 40},
		{"REGISTER_FOR_CMD", IoctlRegisterForCmd, 0x8002690E, 2, 14, 2},
		{"UNREGISTER_FOR_CMD", IoctlUnregisterForCmd, 0x8002690F, 2, 15, 2},
		{"SET_GETS_EVENTS_CMD", IoctlSetGetsEvents, 0x80046910, 2, 16, 4},
		{"SET_MY_ADDRESS_CMD", IoctlSetMyAddress, 0x80046911, 2, 17, 4},
		{"GET_MY_ADDRESS_CMD", IoctlGetMyAddress, 0x80046912, 2, 18, 4},
		{"SET_MY_LUN_CMD", IoctlSetMyLUN, 0x80046913, 2, 19, 4},
		{"GET_MY_LUN_CMD", IoctlGetMyLUN, 0x80046914, 2, 20, 4},
		{"SEND_COMMAND_SETTIME", IoctlSendCommandSettime, 0x80306915, 2, 21, 48},
		{"SET_TIMING_PARMS_CMD", IoctlSetTimingParms, 0x80086916, 2, 22, 8},
		{"GET_TIMING_PARMS_CMD", IoctlGetTimingParms, 0x80086917, 2, 23, 8},
		{"SET_MY_CHANNEL_ADDRESS_CMD", IoctlSetMyChannelAddress, 0x80046918, 2, 24, 4},
		{"GET_MY_CHANNEL_ADDRESS_CMD", IoctlGetMyChannelAddress, 0x80046919, 2, 25, 4},
		{"SET_MY_CHANNEL_LUN_CMD", IoctlSetMyChannelLUN, 0x8004691A, 2, 26, 4},
		{"GET_MY_CHANNEL_LUN_CMD", IoctlGetMyChannelLUN, 0x8004691B, 2, 27, 4},
		{"REGISTER_FOR_CMD_CHANS", IoctlRegisterForCmdChans, 0x800C691C, 2, 28, 12},
		{"UNREGISTER_FOR_CMD_CHANS", IoctlUnregisterForCmdChans, 0x800C691D, 2, 29, 12},
		{"GET_MAINTENANCE_MODE_CMD", IoctlGetMaintenanceMode, 0x8004691E, 2, 30, 4},
		{"SET_MAINTENANCE_MODE_CMD", IoctlSetMaintenanceMode, 0x4004691F, 1, 31, 4},
		{"COMPAT_SEND_COMMAND", IoctlCompatSendCommand, 0x8014690D, 2, 13, 20},
		{"COMPAT_SEND_COMMAND_SETTIME", IoctlCompatSendCommandSettime, 0x801C6915, 2, 21, 28},
		{"COMPAT_RECEIVE_MSG", IoctlCompatReceiveMsg, 0xC018690C, 3, 12, 24},
		{"COMPAT_RECEIVE_MSG_TRUNC", IoctlCompatReceiveMsgTrunc, 0xC018690B, 3, 11, 24},
	}
	seen := map[uint32]string{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %#08x, want %#08x", tt.got, tt.want)
			}
			if b := IOC(tt.dir, IOCMagic, tt.nr, tt.size); b != tt.want {
				t.Errorf("IOC(%d, 'i', %d, %d) = %#08x, want %#08x", tt.dir, tt.nr, tt.size, b, tt.want)
			}
			if prev, dup := seen[tt.got]; dup {
				t.Errorf("same number as %s", prev)
			}
			seen[tt.got] = tt.name
		})
	}
}

// C-layout mirrors of the x86-64 structs, with the padding the C compiler
// inserts made explicit by Go's identical alignment rules. They pin the size
// constants: a wrong constant fails here, not in a user's ioctl.
type (
	cMsg struct {
		Netfn, Cmd uint8
		DataLen    uint16
		Data       uintptr
	}
	cReq struct {
		Addr    uintptr
		AddrLen uint32
		Msgid   int64
		Msg     cMsg
	}
	cReqSettime struct {
		Req         cReq
		Retries     int32
		RetryTimeMs uint32
	}
	cRecv struct {
		RecvType int32
		Addr     uintptr
		AddrLen  uint32
		Msgid    int64
		Msg      cMsg
	}
	cAddr struct {
		AddrType int32
		Channel  int16
		Data     [MaxAddrSize]byte
	}
	cSysAddr struct {
		AddrType int32
		Channel  int16
		Lun      uint8
	}
	cIPMBAddr struct {
		AddrType       int32
		Channel        int16
		SlaveAddr, Lun uint8
	}
	cIPMBDirectAddr struct {
		AddrType                int32
		Channel                 int16
		SlaveAddr, RsLUN, RqLUN uint8
	}
	cLANAddr struct {
		AddrType                                        int32
		Channel                                         int16
		Privilege, SessionHandle, RemoteSWID, LocalSWID uint8
		Lun                                             uint8
	}
	cCmdSpec      struct{ Netfn, Cmd uint8 }
	cCmdSpecChans struct{ Netfn, Cmd, Chans uint32 }
	cChanSet      struct {
		Channel uint16
		Value   uint8
	}
	cTiming struct {
		Retries     int32
		RetryTimeMs uint32
	}
	cCompatMsg struct {
		Netfn, Cmd uint8
		DataLen    uint16
		Data       uint32
	}
	cCompatReq struct {
		Addr, AddrLen uint32
		Msgid         int32
		Msg           cCompatMsg
	}
	cCompatReqSettime struct {
		Req                  cCompatReq
		Retries, RetryTimeMs uint32
	}
	cCompatRecv struct {
		RecvType, Addr, AddrLen uint32
		Msgid                   int32
		Msg                     cCompatMsg
	}
)

func TestStructSizes(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("layout mirrors assume a 64-bit Go build")
	}
	tests := []struct {
		name string
		got  uintptr
		want int
	}{
		{"ipmi_msg", unsafe.Sizeof(cMsg{}), SizeofMsg},
		{"ipmi_req", unsafe.Sizeof(cReq{}), SizeofReq},
		{"ipmi_req_settime", unsafe.Sizeof(cReqSettime{}), SizeofReqSettime},
		{"ipmi_recv", unsafe.Sizeof(cRecv{}), SizeofRecv},
		{"ipmi_addr", unsafe.Sizeof(cAddr{}), SizeofAddr},
		{"ipmi_system_interface_addr", unsafe.Sizeof(cSysAddr{}), SizeofSystemInterface},
		{"ipmi_ipmb_addr", unsafe.Sizeof(cIPMBAddr{}), SizeofIPMBAddr},
		{"ipmi_ipmb_direct_addr", unsafe.Sizeof(cIPMBDirectAddr{}), SizeofIPMBDirectAddr},
		{"ipmi_lan_addr", unsafe.Sizeof(cLANAddr{}), SizeofLANAddr},
		{"ipmi_cmdspec", unsafe.Sizeof(cCmdSpec{}), SizeofCmdSpec},
		{"ipmi_cmdspec_chans", unsafe.Sizeof(cCmdSpecChans{}), SizeofCmdSpecChans},
		{"ipmi_channel_lun_address_set", unsafe.Sizeof(cChanSet{}), SizeofChannelLUNAddrSet},
		{"ipmi_timing_parms", unsafe.Sizeof(cTiming{}), SizeofTimingParms},
		{"compat_ipmi_msg", unsafe.Sizeof(cCompatMsg{}), SizeofCompatMsg},
		{"compat_ipmi_req", unsafe.Sizeof(cCompatReq{}), SizeofCompatReq},
		{"compat_ipmi_req_settime", unsafe.Sizeof(cCompatReqSettime{}), SizeofCompatReqSettime},
		{"compat_ipmi_recv", unsafe.Sizeof(cCompatRecv{}), SizeofCompatRecv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if int(tt.got) != tt.want {
				t.Errorf("sizeof = %d, constant says %d", tt.got, tt.want)
			}
		})
	}
	// The offsets the codecs use (spec §1.2).
	offsets := []struct {
		name      string
		got, want uintptr
	}{
		{"ipmi_req.msgid", unsafe.Offsetof(cReq{}.Msgid), 16},
		{"ipmi_req.msg", unsafe.Offsetof(cReq{}.Msg), 24},
		{"ipmi_msg.data", unsafe.Offsetof(cMsg{}.Data), 8},
		{"ipmi_recv.addr", unsafe.Offsetof(cRecv{}.Addr), 8},
		{"ipmi_recv.addr_len", unsafe.Offsetof(cRecv{}.AddrLen), 16},
		{"ipmi_recv.msgid", unsafe.Offsetof(cRecv{}.Msgid), 24},
		{"ipmi_recv.msg", unsafe.Offsetof(cRecv{}.Msg), 32},
		{"ipmi_req_settime.retries", unsafe.Offsetof(cReqSettime{}.Retries), 40},
		{"ipmi_lan_addr.lun", unsafe.Offsetof(cLANAddr{}.Lun), 10},
		{"compat_ipmi_recv.msg", unsafe.Offsetof(cCompatRecv{}.Msg), 16},
		{"compat_ipmi_req.msg", unsafe.Offsetof(cCompatReq{}.Msg), 12},
	}
	for _, o := range offsets {
		if o.got != o.want {
			t.Errorf("offsetof(%s) = %d, want %d", o.name, o.got, o.want)
		}
	}
}

// patch builds a byte slice from (offset, bytes...) patches on n zeros.
func patch(n int, patches map[int][]byte) []byte {
	b := make([]byte, n)
	for off, p := range patches {
		copy(b[off:], p)
	}
	return b
}

func TestGoldenEncodings(t *testing.T) {
	req := Req{Addr: 0x1122334455667788, AddrLen: 8, MsgID: -2, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 0x0102, Data: 0xA0A1A2A3A4A5A6A7}}
	reqBytes := patch(SizeofReq, map[int][]byte{
		0:  {0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11},
		8:  {8, 0, 0, 0},
		16: {0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
		24: {6, 1, 0x02, 0x01},
		32: {0xA7, 0xA6, 0xA5, 0xA4, 0xA3, 0xA2, 0xA1, 0xA0},
	})
	recv := Recv{RecvType: 1, Addr: 0x1000, AddrLen: 40, MsgID: 0x0102030405060708, Msg: Msg{NetFn: 7, Cmd: 1, DataLen: 16, Data: 0x2000}}
	recvBytes := patch(SizeofRecv, map[int][]byte{
		0:  {1, 0, 0, 0},
		8:  {0x00, 0x10},
		16: {40},
		24: {8, 7, 6, 5, 4, 3, 2, 1},
		32: {7, 1, 16, 0},
		40: {0x00, 0x20},
	})
	compatRecv := patch(SizeofCompatRecv, map[int][]byte{
		0: {1}, 4: {0x00, 0x10}, 8: {40}, 12: {8, 7, 6, 5}, 16: {7, 1, 16, 0}, 20: {0x00, 0x20},
	})
	settime := ReqSettime{Req: req, Retries: -1, RetryTimeMs: 2000}
	tests := []struct {
		name      string
		got, want []byte
	}{
		{"ipmi_req", req.Encode(), reqBytes},
		{"ipmi_req_settime", settime.Encode(), append(append([]byte(nil), reqBytes...), 0xFF, 0xFF, 0xFF, 0xFF, 0xD0, 0x07, 0, 0)},
		{"ipmi_recv", recv.Encode(), recvBytes},
		{"compat_ipmi_recv", func() []byte { b := make([]byte, SizeofCompatRecv); recv.EncodeCompatInto(b); return b }(), compatRecv},
		{"system_interface_addr", SystemInterfaceAddr{AddrType: 0x0C, Channel: 0x0F, LUN: 2}.Encode(), []byte{0x0C, 0, 0, 0, 0x0F, 0, 2, 0}},
		{"ipmb_addr", IPMBAddr{AddrType: 1, Channel: 0, SlaveAddr: 0x82, LUN: 1}.Encode(), []byte{1, 0, 0, 0, 0, 0, 0x82, 1}},
		{"lan_addr", LANAddr{AddrType: 4, Channel: 1, Privilege: 4, SessionHandle: 5, RemoteSWID: 0x81, LocalSWID: 0x20, LUN: 2}.Encode(),
			[]byte{4, 0, 0, 0, 1, 0, 4, 5, 0x81, 0x20, 2, 0}},
		{"cmdspec", CmdSpec{NetFn: 0x30, Cmd: 0x01}.Encode(), []byte{0x30, 0x01}},
		{"cmdspec_chans", CmdSpecChans{NetFn: 0x30, Cmd: 1, Chans: 0x8001}.Encode(), []byte{0x30, 0, 0, 0, 1, 0, 0, 0, 0x01, 0x80, 0, 0}},
		{"channel_lun_address_set", ChannelLUNAddrSet{Channel: 3, Value: 0x22}.Encode(), []byte{3, 0, 0x22, 0}},
		{"timing_parms", TimingParms{Retries: -1, RetryTimeMs: 0}.Encode(), []byte{0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0}},
		{"int", EncodeInt(0x20), []byte{0x20, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Equal(tt.got, tt.want) {
				t.Errorf("encoded\n got % x\nwant % x", tt.got, tt.want)
			}
		})
	}

	t.Run("decode", func(t *testing.T) {
		if got, err := DecodeReq(reqBytes); err != nil || got != req {
			t.Errorf("DecodeReq = %+v, %v; want %+v", got, err, req)
		}
		if got, err := DecodeRecv(recvBytes); err != nil || got != recv {
			t.Errorf("DecodeRecv = %+v, %v; want %+v", got, err, recv)
		}
		wantCompat := recv
		wantCompat.MsgID = 0x05060708
		if got, err := DecodeCompatRecv(compatRecv); err != nil || got != wantCompat {
			t.Errorf("DecodeCompatRecv = %+v, %v; want %+v", got, err, wantCompat)
		}
		creq := patch(SizeofCompatReqSettime, map[int][]byte{0: {0x10}, 4: {8}, 8: {0xFE, 0xFF, 0xFF, 0xFF}, 12: {6, 1, 3, 0}, 16: {0x20}, 20: {3}, 24: {0x10, 0x27}})
		wantReq := ReqSettime{Req: Req{Addr: 0x10, AddrLen: 8, MsgID: -2, Msg: Msg{NetFn: 6, Cmd: 1, DataLen: 3, Data: 0x20}}, Retries: 3, RetryTimeMs: 10000}
		if got, err := DecodeCompatReqSettime(creq); err != nil || got != wantReq {
			t.Errorf("DecodeCompatReqSettime = %+v, %v; want %+v", got, err, wantReq)
		}
	})
}

func TestEncodeIntoKeepsPadding(t *testing.T) {
	b := bytes.Repeat([]byte{0xEE}, SizeofRecv)
	Recv{RecvType: 1}.EncodeInto(b)
	for _, off := range []int{4, 5, 6, 7, 20, 21, 22, 23, 36, 37, 38, 39} {
		if b[off] != 0xEE {
			t.Errorf("padding byte %d overwritten: %#x", off, b[off])
		}
	}
	c := []byte{0, 0, 0, 0xEE}
	ChannelLUNAddrSet{Channel: 1, Value: 2}.EncodeInto(c)
	if !bytes.Equal(c, []byte{1, 0, 2, 0xEE}) {
		t.Errorf("ChannelLUNAddrSet.EncodeInto = % x", c)
	}
}

func TestDecodersRejectShortInput(t *testing.T) {
	decoders := []struct {
		name string
		n    int
		fn   func([]byte) error
	}{
		{"Req", SizeofReq, func(b []byte) error { _, err := DecodeReq(b); return err }},
		{"CompatReq", SizeofCompatReq, func(b []byte) error { _, err := DecodeCompatReq(b); return err }},
		{"ReqSettime", SizeofReqSettime, func(b []byte) error { _, err := DecodeReqSettime(b); return err }},
		{"CompatReqSettime", SizeofCompatReqSettime, func(b []byte) error { _, err := DecodeCompatReqSettime(b); return err }},
		{"Recv", SizeofRecv, func(b []byte) error { _, err := DecodeRecv(b); return err }},
		{"CompatRecv", SizeofCompatRecv, func(b []byte) error { _, err := DecodeCompatRecv(b); return err }},
		{"Addr", 6, func(b []byte) error { _, err := DecodeAddr(b); return err }},
		{"CmdSpec", SizeofCmdSpec, func(b []byte) error { _, err := DecodeCmdSpec(b); return err }},
		{"CmdSpecChans", SizeofCmdSpecChans, func(b []byte) error { _, err := DecodeCmdSpecChans(b); return err }},
		{"ChannelLUNAddrSet", SizeofChannelLUNAddrSet, func(b []byte) error { _, err := DecodeChannelLUNAddrSet(b); return err }},
		{"TimingParms", SizeofTimingParms, func(b []byte) error { _, err := DecodeTimingParms(b); return err }},
		{"Int", SizeofInt, func(b []byte) error { _, err := DecodeInt(b); return err }},
	}
	for _, d := range decoders {
		t.Run(d.name, func(t *testing.T) {
			if err := d.fn(make([]byte, d.n-1)); !errors.Is(err, ErrShort) {
				t.Errorf("%d bytes: err = %v, want ErrShort", d.n-1, err)
			}
			if err := d.fn(make([]byte, d.n)); err != nil {
				t.Errorf("%d bytes: err = %v", d.n, err)
			}
		})
	}
}

func TestAddrLength(t *testing.T) {
	for _, tt := range []struct {
		typ  int32
		want uint32
	}{{0x0C, 8}, {0x01, 8}, {0x41, 8}, {0x04, 12}, {0x81, 12}, {0x02, 0}} {
		t.Run(fmt.Sprintf("%#x", tt.typ), func(t *testing.T) {
			if got := AddrLength(tt.typ); got != tt.want {
				t.Errorf("AddrLength = %d, want %d", got, tt.want)
			}
		})
	}
}
