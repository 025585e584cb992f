package ioctl

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ipmi-cuse/ipmi-cuse/internal/ioc"
)

// ErrShort is returned by the decoders when the input is shorter than the
// struct being decoded.
var ErrShort = errors.New("ioctl: buffer shorter than struct")

// IOC builds an ioctl command number from its parts, like the C _IOC macro:
// dir<<30 | size<<16 | typ<<8 | nr. The encoding itself lives in
// internal/ioc, shared with the watchdog ABI.
func IOC(dir, typ, nr, size uint32) uint32 { return ioc.IOC(dir, typ, nr, size) }

// IOCMagic is IPMI_IOC_MAGIC, the ioctl type byte 'i' of every IPMICTL command.
const IOCMagic = 'i'

// Struct sizes on x86-64 (LP64), as printed by gcc against <linux/ipmi.h>.
const (
	SizeofMsg               = 16 // struct ipmi_msg
	SizeofReq               = 40 // struct ipmi_req
	SizeofReqSettime        = 48 // struct ipmi_req_settime
	SizeofRecv              = 48 // struct ipmi_recv
	SizeofAddr              = 40 // struct ipmi_addr
	SizeofSystemInterface   = 8  // struct ipmi_system_interface_addr
	SizeofIPMBAddr          = 8  // struct ipmi_ipmb_addr
	SizeofIPMBDirectAddr    = 12 // struct ipmi_ipmb_direct_addr
	SizeofLANAddr           = 12 // struct ipmi_lan_addr
	SizeofCmdSpec           = 2  // struct ipmi_cmdspec
	SizeofCmdSpecChans      = 12 // struct ipmi_cmdspec_chans
	SizeofChannelLUNAddrSet = 4  // struct ipmi_channel_lun_address_set
	SizeofTimingParms       = 8  // struct ipmi_timing_parms
	SizeofInt               = 4  // int / unsigned int arguments
)

// Struct sizes in the 32-bit compat layout (ipmi_devintf.c CONFIG_COMPAT).
const (
	SizeofCompatMsg        = 8  // struct compat_ipmi_msg
	SizeofCompatReq        = 20 // struct compat_ipmi_req
	SizeofCompatReqSettime = 28 // struct compat_ipmi_req_settime
	SizeofCompatRecv       = 24 // struct compat_ipmi_recv
)

// IPMICTL_* command numbers on x86-64. Note the inverted directions: most
// commands are declared _IOR although the kernel reads the argument.
const (
	IoctlReceiveMsgTrunc          = (ioc.Read|ioc.Write)<<ioc.DirShift | SizeofRecv<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 11       // IPMICTL_RECEIVE_MSG_TRUNC, _IOWR
	IoctlReceiveMsg               = (ioc.Read|ioc.Write)<<ioc.DirShift | SizeofRecv<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 12       // IPMICTL_RECEIVE_MSG, _IOWR
	IoctlSendCommand              = ioc.Read<<ioc.DirShift | SizeofReq<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 13                    // IPMICTL_SEND_COMMAND, _IOR
	IoctlRegisterForCmd           = ioc.Read<<ioc.DirShift | SizeofCmdSpec<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 14                // IPMICTL_REGISTER_FOR_CMD, _IOR
	IoctlUnregisterForCmd         = ioc.Read<<ioc.DirShift | SizeofCmdSpec<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 15                // IPMICTL_UNREGISTER_FOR_CMD, _IOR
	IoctlSetGetsEvents            = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 16                    // IPMICTL_SET_GETS_EVENTS_CMD, _IOR int
	IoctlSetMyAddress             = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 17                    // IPMICTL_SET_MY_ADDRESS_CMD, _IOR uint
	IoctlGetMyAddress             = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 18                    // IPMICTL_GET_MY_ADDRESS_CMD, _IOR uint
	IoctlSetMyLUN                 = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 19                    // IPMICTL_SET_MY_LUN_CMD, _IOR uint
	IoctlGetMyLUN                 = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 20                    // IPMICTL_GET_MY_LUN_CMD, _IOR uint
	IoctlSendCommandSettime       = ioc.Read<<ioc.DirShift | SizeofReqSettime<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 21             // IPMICTL_SEND_COMMAND_SETTIME, _IOR
	IoctlSetTimingParms           = ioc.Read<<ioc.DirShift | SizeofTimingParms<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 22            // IPMICTL_SET_TIMING_PARMS_CMD, _IOR
	IoctlGetTimingParms           = ioc.Read<<ioc.DirShift | SizeofTimingParms<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 23            // IPMICTL_GET_TIMING_PARMS_CMD, _IOR
	IoctlSetMyChannelAddress      = ioc.Read<<ioc.DirShift | SizeofChannelLUNAddrSet<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 24      // IPMICTL_SET_MY_CHANNEL_ADDRESS_CMD, _IOR
	IoctlGetMyChannelAddress      = ioc.Read<<ioc.DirShift | SizeofChannelLUNAddrSet<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 25      // IPMICTL_GET_MY_CHANNEL_ADDRESS_CMD, _IOR
	IoctlSetMyChannelLUN          = ioc.Read<<ioc.DirShift | SizeofChannelLUNAddrSet<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 26      // IPMICTL_SET_MY_CHANNEL_LUN_CMD, _IOR
	IoctlGetMyChannelLUN          = ioc.Read<<ioc.DirShift | SizeofChannelLUNAddrSet<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 27      // IPMICTL_GET_MY_CHANNEL_LUN_CMD, _IOR
	IoctlRegisterForCmdChans      = ioc.Read<<ioc.DirShift | SizeofCmdSpecChans<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 28           // IPMICTL_REGISTER_FOR_CMD_CHANS, _IOR
	IoctlUnregisterForCmdChans    = ioc.Read<<ioc.DirShift | SizeofCmdSpecChans<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 29           // IPMICTL_UNREGISTER_FOR_CMD_CHANS, _IOR
	IoctlGetMaintenanceMode       = ioc.Read<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 30                    // IPMICTL_GET_MAINTENANCE_MODE_CMD, _IOR int
	IoctlSetMaintenanceMode       = ioc.Write<<ioc.DirShift | SizeofInt<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 31                   // IPMICTL_SET_MAINTENANCE_MODE_CMD, _IOW int
	IoctlCompatSendCommand        = ioc.Read<<ioc.DirShift | SizeofCompatReq<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 13              // COMPAT_IPMICTL_SEND_COMMAND
	IoctlCompatSendCommandSettime = ioc.Read<<ioc.DirShift | SizeofCompatReqSettime<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 21       // COMPAT_IPMICTL_SEND_COMMAND_SETTIME
	IoctlCompatReceiveMsg         = (ioc.Read|ioc.Write)<<ioc.DirShift | SizeofCompatRecv<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 12 // COMPAT_IPMICTL_RECEIVE_MSG
	IoctlCompatReceiveMsgTrunc    = (ioc.Read|ioc.Write)<<ioc.DirShift | SizeofCompatRecv<<ioc.SizeShift | IOCMagic<<ioc.TypeShift | 11 // COMPAT_IPMICTL_RECEIVE_MSG_TRUNC
)

// Address types (ipmi_addr.addr_type).
const (
	SystemInterfaceAddrType = 0x0C // IPMI_SYSTEM_INTERFACE_ADDR_TYPE
	IPMBAddrType            = 0x01 // IPMI_IPMB_ADDR_TYPE
	LANAddrType             = 0x04 // IPMI_LAN_ADDR_TYPE
	IPMBBroadcastAddrType   = 0x41 // IPMI_IPMB_BROADCAST_ADDR_TYPE
	IPMBDirectAddrType      = 0x81 // IPMI_IPMB_DIRECT_ADDR_TYPE
)

// Receive types (ipmi_recv.recv_type).
const (
	ResponseRecvType         = 1 // IPMI_RESPONSE_RECV_TYPE: the reply to a command sent
	AsyncEventRecvType       = 2 // IPMI_ASYNC_EVENT_RECV_TYPE: an event, no completion code
	CmdRecvType              = 3 // IPMI_CMD_RECV_TYPE: an incoming command registered for
	ResponseResponseRecvType = 4 // IPMI_RESPONSE_RESPONSE_TYPE: result of sending a response
	OEMRecvType              = 5 // IPMI_OEM_RECV_TYPE: Get Message from an OEM channel
)

// Limits and well-known values.
const (
	BMCChannel      = 0x0F // IPMI_BMC_CHANNEL
	MaxChannels     = 16   // IPMI_MAX_CHANNELS / IPMI_NUM_CHANNELS
	MaxAddrSize     = 32   // IPMI_MAX_ADDR_SIZE (the data[] of struct ipmi_addr)
	MaxMsgLength    = 272  // IPMI_MAX_MSG_LENGTH
	BMCSlaveAddr    = 0x20 // IPMI_BMC_SLAVE_ADDR
	ChanAll         = ^uint32(0)
	DefaultLUN      = 2 // the default "my LUN" of every channel (the SMS LUN)
	MaxMaintenance  = 2 // the largest valid maintenance mode
	NetFnApp        = 0x06
	NetFnFirmware   = 0x08
	CmdColdReset    = 0x02
	CmdWarmReset    = 0x03
	CmdResetWDT     = 0x22
	CmdSetWDT       = 0x24
	CmdGetWDT       = 0x25
	CmdGetMsg       = 0x33
	CmdSendMsg      = 0x34
	CmdReadEventBuf = 0x35
)

// Maintenance modes (IPMICTL_SET/GET_MAINTENANCE_MODE_CMD).
const (
	MaintenanceModeAuto = 0 // IPMI_MAINTENANCE_MODE_AUTO
	MaintenanceModeOff  = 1 // IPMI_MAINTENANCE_MODE_OFF
	MaintenanceModeOn   = 2 // IPMI_MAINTENANCE_MODE_ON
)

// Completion codes the driver itself produces.
const (
	CCInvalidCmd  = 0xC1 // IPMI_INVALID_CMD_COMPLETION_CODE
	CCTimeout     = 0xC3 // IPMI_TIMEOUT_ERR
	CCTruncated   = 0xC6 // IPMI_ERR_MSG_TRUNCATED
	CCReqLenInval = 0xC7 // IPMI_REQ_LEN_INVALID_ERR
	CCReqLenExcd  = 0xC8 // IPMI_REQ_LEN_EXCEEDED_ERR
	CCNotInState  = 0xD5 // IPMI_NOT_IN_MY_STATE_ERR
	CCUnspecified = 0xFF // IPMI_ERR_UNSPECIFIED
)

// AddrLength is ipmi_addr_length: the size of the address struct for an
// address type, or 0 for an unknown type. It is what RECEIVE writes to the
// user's addr buffer and checks the buffer's capacity against.
func AddrLength(addrType int32) uint32 {
	switch addrType {
	case SystemInterfaceAddrType:
		return SizeofSystemInterface
	case IPMBAddrType, IPMBBroadcastAddrType:
		return SizeofIPMBAddr
	case LANAddrType:
		return SizeofLANAddr
	case IPMBDirectAddrType:
		return SizeofIPMBDirectAddr
	}
	return 0
}

var le = binary.LittleEndian

// Msg is struct ipmi_msg (and compat_ipmi_msg): a message with a user
// pointer to its data.
type Msg struct {
	NetFn   uint8
	Cmd     uint8
	DataLen uint16
	Data    uint64 // user pointer
}

// Req is struct ipmi_req, the argument of IPMICTL_SEND_COMMAND.
type Req struct {
	Addr    uint64 // user pointer to an ipmi_addr
	AddrLen uint32
	MsgID   int64
	Msg     Msg
}

// ReqSettime is struct ipmi_req_settime, the argument of
// IPMICTL_SEND_COMMAND_SETTIME.
type ReqSettime struct {
	Req         Req
	Retries     int32
	RetryTimeMs uint32
}

// Recv is struct ipmi_recv, the argument of IPMICTL_RECEIVE_MSG(_TRUNC).
type Recv struct {
	RecvType int32
	Addr     uint64 // user pointer to the address buffer
	AddrLen  uint32
	MsgID    int64
	Msg      Msg
}

// Addr is struct ipmi_addr, the generic address: a type, a channel and up
// to 32 bytes of type-specific data. Only the first AddrLen bytes a user
// supplies are meaningful; the rest is zero.
type Addr struct {
	AddrType int32
	Channel  int16
	Data     [MaxAddrSize]byte
}

// SystemInterfaceAddr is struct ipmi_system_interface_addr.
type SystemInterfaceAddr struct {
	AddrType int32
	Channel  int16
	LUN      uint8
	// Pad is the padding byte at offset 7. The kernel copies the user's
	// address into the reply verbatim, so it is echoed back unchanged.
	Pad uint8
}

// IPMBAddr is struct ipmi_ipmb_addr (also used for broadcast).
type IPMBAddr struct {
	AddrType  int32
	Channel   int16
	SlaveAddr uint8
	LUN       uint8
}

// IPMBDirectAddr is struct ipmi_ipmb_direct_addr.
type IPMBDirectAddr struct {
	AddrType  int32
	Channel   int16
	SlaveAddr uint8
	RsLUN     uint8
	RqLUN     uint8
}

// LANAddr is struct ipmi_lan_addr.
type LANAddr struct {
	AddrType      int32
	Channel       int16
	Privilege     uint8
	SessionHandle uint8
	RemoteSWID    uint8
	LocalSWID     uint8
	LUN           uint8
}

// CmdSpec is struct ipmi_cmdspec, the argument of (UN)REGISTER_FOR_CMD.
type CmdSpec struct {
	NetFn uint8
	Cmd   uint8
}

// CmdSpecChans is struct ipmi_cmdspec_chans, the argument of
// (UN)REGISTER_FOR_CMD_CHANS. Chans is a bitmask, bit n = channel n.
type CmdSpecChans struct {
	NetFn uint32
	Cmd   uint32
	Chans uint32
}

// ChannelLUNAddrSet is struct ipmi_channel_lun_address_set, the argument of
// the SET/GET_MY_CHANNEL_ADDRESS/LUN commands.
type ChannelLUNAddrSet struct {
	Channel uint16
	Value   uint8
}

// TimingParms is struct ipmi_timing_parms.
type TimingParms struct {
	Retries     int32
	RetryTimeMs uint32
}

func short(what string, b []byte, n int) error {
	return fmt.Errorf("decode %s: have %d bytes, need %d: %w", what, len(b), n, ErrShort)
}

func decodeMsg(b []byte) Msg {
	return Msg{NetFn: b[0], Cmd: b[1], DataLen: le.Uint16(b[2:]), Data: le.Uint64(b[8:])}
}

func decodeCompatMsg(b []byte) Msg {
	return Msg{NetFn: b[0], Cmd: b[1], DataLen: le.Uint16(b[2:]), Data: uint64(le.Uint32(b[4:]))}
}

// DecodeReq decodes a native struct ipmi_req from the first SizeofReq bytes of b.
func DecodeReq(b []byte) (Req, error) {
	if len(b) < SizeofReq {
		return Req{}, short("ipmi_req", b, SizeofReq)
	}
	return Req{
		Addr:    le.Uint64(b[0:]),
		AddrLen: le.Uint32(b[8:]),
		MsgID:   int64(le.Uint64(b[16:])),
		Msg:     decodeMsg(b[24:]),
	}, nil
}

// Encode returns the native layout of r, with zero padding.
func (r Req) Encode() []byte {
	b := make([]byte, SizeofReq)
	le.PutUint64(b[0:], r.Addr)
	le.PutUint32(b[8:], r.AddrLen)
	le.PutUint64(b[16:], uint64(r.MsgID))
	b[24], b[25] = r.Msg.NetFn, r.Msg.Cmd
	le.PutUint16(b[26:], r.Msg.DataLen)
	le.PutUint64(b[32:], r.Msg.Data)
	return b
}

// DecodeCompatReq decodes a struct compat_ipmi_req (32-bit caller); the
// 32-bit msgid is sign-extended as the kernel does.
func DecodeCompatReq(b []byte) (Req, error) {
	if len(b) < SizeofCompatReq {
		return Req{}, short("compat_ipmi_req", b, SizeofCompatReq)
	}
	return Req{
		Addr:    uint64(le.Uint32(b[0:])),
		AddrLen: le.Uint32(b[4:]),
		MsgID:   int64(int32(le.Uint32(b[8:]))),
		Msg:     decodeCompatMsg(b[12:]),
	}, nil
}

// DecodeReqSettime decodes a native struct ipmi_req_settime.
func DecodeReqSettime(b []byte) (ReqSettime, error) {
	if len(b) < SizeofReqSettime {
		return ReqSettime{}, short("ipmi_req_settime", b, SizeofReqSettime)
	}
	r, _ := DecodeReq(b)
	return ReqSettime{Req: r, Retries: int32(le.Uint32(b[40:])), RetryTimeMs: le.Uint32(b[44:])}, nil
}

// Encode returns the native layout of r, with zero padding.
func (r ReqSettime) Encode() []byte {
	b := make([]byte, SizeofReqSettime)
	copy(b, r.Req.Encode())
	le.PutUint32(b[40:], uint32(r.Retries))
	le.PutUint32(b[44:], r.RetryTimeMs)
	return b
}

// DecodeCompatReqSettime decodes a struct compat_ipmi_req_settime.
func DecodeCompatReqSettime(b []byte) (ReqSettime, error) {
	if len(b) < SizeofCompatReqSettime {
		return ReqSettime{}, short("compat_ipmi_req_settime", b, SizeofCompatReqSettime)
	}
	r, _ := DecodeCompatReq(b)
	return ReqSettime{Req: r, Retries: int32(le.Uint32(b[20:])), RetryTimeMs: le.Uint32(b[24:])}, nil
}

// DecodeRecv decodes a native struct ipmi_recv.
func DecodeRecv(b []byte) (Recv, error) {
	if len(b) < SizeofRecv {
		return Recv{}, short("ipmi_recv", b, SizeofRecv)
	}
	return Recv{
		RecvType: int32(le.Uint32(b[0:])),
		Addr:     le.Uint64(b[8:]),
		AddrLen:  le.Uint32(b[16:]),
		MsgID:    int64(le.Uint64(b[24:])),
		Msg:      decodeMsg(b[32:]),
	}, nil
}

// EncodeInto writes every field of r into the native layout in b (at least
// SizeofRecv bytes), leaving padding bytes as they are: the kernel writes
// back the struct it copied in, so the caller's padding survives.
func (r Recv) EncodeInto(b []byte) {
	_ = b[SizeofRecv-1]
	le.PutUint32(b[0:], uint32(r.RecvType))
	le.PutUint64(b[8:], r.Addr)
	le.PutUint32(b[16:], r.AddrLen)
	le.PutUint64(b[24:], uint64(r.MsgID))
	b[32], b[33] = r.Msg.NetFn, r.Msg.Cmd
	le.PutUint16(b[34:], r.Msg.DataLen)
	le.PutUint64(b[40:], r.Msg.Data)
}

// Encode returns the native layout of r, with zero padding.
func (r Recv) Encode() []byte {
	b := make([]byte, SizeofRecv)
	r.EncodeInto(b)
	return b
}

// DecodeCompatRecv decodes a struct compat_ipmi_recv.
func DecodeCompatRecv(b []byte) (Recv, error) {
	if len(b) < SizeofCompatRecv {
		return Recv{}, short("compat_ipmi_recv", b, SizeofCompatRecv)
	}
	return Recv{
		RecvType: int32(le.Uint32(b[0:])),
		Addr:     uint64(le.Uint32(b[4:])),
		AddrLen:  le.Uint32(b[8:]),
		MsgID:    int64(int32(le.Uint32(b[12:]))),
		Msg:      decodeCompatMsg(b[16:]),
	}, nil
}

// EncodeCompatInto writes r into the compat layout in b (at least
// SizeofCompatRecv bytes). Pointers and msgid are truncated to 32 bits, as
// put_compat_ipmi_recv does.
func (r Recv) EncodeCompatInto(b []byte) {
	_ = b[SizeofCompatRecv-1]
	le.PutUint32(b[0:], uint32(r.RecvType))
	le.PutUint32(b[4:], uint32(r.Addr))
	le.PutUint32(b[8:], r.AddrLen)
	le.PutUint32(b[12:], uint32(r.MsgID))
	b[16], b[17] = r.Msg.NetFn, r.Msg.Cmd
	le.PutUint16(b[18:], r.Msg.DataLen)
	le.PutUint32(b[20:], uint32(r.Msg.Data))
}

// DecodeAddr decodes a struct ipmi_addr from b, which may be shorter than
// SizeofAddr (the user passes addr_len bytes; missing bytes read as zero,
// like the kernel's uninitialised-but-unused tail). It fails only if b is too
// short to hold addr_type and channel.
func DecodeAddr(b []byte) (Addr, error) {
	if len(b) < 6 {
		return Addr{}, short("ipmi_addr", b, 6)
	}
	a := Addr{AddrType: int32(le.Uint32(b[0:])), Channel: int16(le.Uint16(b[4:]))}
	copy(a.Data[:], b[6:])
	return a, nil
}

// Encode returns the SizeofAddr-byte layout of a.
func (a Addr) Encode() []byte {
	b := make([]byte, SizeofAddr)
	le.PutUint32(b[0:], uint32(a.AddrType))
	le.PutUint16(b[4:], uint16(a.Channel))
	copy(b[6:], a.Data[:])
	return b
}

// SystemInterface views a as an ipmi_system_interface_addr.
func (a Addr) SystemInterface() SystemInterfaceAddr {
	return SystemInterfaceAddr{AddrType: a.AddrType, Channel: a.Channel, LUN: a.Data[0], Pad: a.Data[1]}
}

// IPMB views a as an ipmi_ipmb_addr.
func (a Addr) IPMB() IPMBAddr {
	return IPMBAddr{AddrType: a.AddrType, Channel: a.Channel, SlaveAddr: a.Data[0], LUN: a.Data[1]}
}

// IPMBDirect views a as an ipmi_ipmb_direct_addr.
func (a Addr) IPMBDirect() IPMBDirectAddr {
	return IPMBDirectAddr{AddrType: a.AddrType, Channel: a.Channel, SlaveAddr: a.Data[0], RsLUN: a.Data[1], RqLUN: a.Data[2]}
}

// LAN views a as an ipmi_lan_addr.
func (a Addr) LAN() LANAddr {
	return LANAddr{AddrType: a.AddrType, Channel: a.Channel, Privilege: a.Data[0], SessionHandle: a.Data[1],
		RemoteSWID: a.Data[2], LocalSWID: a.Data[3], LUN: a.Data[4]}
}

// Encode returns the SizeofSystemInterface-byte layout of a.
func (a SystemInterfaceAddr) Encode() []byte {
	b := make([]byte, SizeofSystemInterface)
	a.EncodeInto(b)
	return b
}

// EncodeInto writes the SizeofSystemInterface-byte layout of a to b, which
// must be at least that long.
func (a SystemInterfaceAddr) EncodeInto(b []byte) {
	le.PutUint32(b[0:], uint32(a.AddrType))
	le.PutUint16(b[4:], uint16(a.Channel))
	b[6], b[7] = a.LUN, a.Pad
}

// Encode returns the SizeofIPMBAddr-byte layout of a.
func (a IPMBAddr) Encode() []byte {
	b := make([]byte, SizeofIPMBAddr)
	le.PutUint32(b[0:], uint32(a.AddrType))
	le.PutUint16(b[4:], uint16(a.Channel))
	b[6], b[7] = a.SlaveAddr, a.LUN
	return b
}

// Encode returns the SizeofLANAddr-byte layout of a (two bytes of tail padding).
func (a LANAddr) Encode() []byte {
	b := make([]byte, SizeofLANAddr)
	le.PutUint32(b[0:], uint32(a.AddrType))
	le.PutUint16(b[4:], uint16(a.Channel))
	b[6], b[7], b[8], b[9], b[10] = a.Privilege, a.SessionHandle, a.RemoteSWID, a.LocalSWID, a.LUN
	return b
}

// DecodeCmdSpec decodes a struct ipmi_cmdspec.
func DecodeCmdSpec(b []byte) (CmdSpec, error) {
	if len(b) < SizeofCmdSpec {
		return CmdSpec{}, short("ipmi_cmdspec", b, SizeofCmdSpec)
	}
	return CmdSpec{NetFn: b[0], Cmd: b[1]}, nil
}

// Encode returns the layout of c.
func (c CmdSpec) Encode() []byte { return []byte{c.NetFn, c.Cmd} }

// DecodeCmdSpecChans decodes a struct ipmi_cmdspec_chans.
func DecodeCmdSpecChans(b []byte) (CmdSpecChans, error) {
	if len(b) < SizeofCmdSpecChans {
		return CmdSpecChans{}, short("ipmi_cmdspec_chans", b, SizeofCmdSpecChans)
	}
	return CmdSpecChans{NetFn: le.Uint32(b[0:]), Cmd: le.Uint32(b[4:]), Chans: le.Uint32(b[8:])}, nil
}

// Encode returns the layout of c.
func (c CmdSpecChans) Encode() []byte {
	b := make([]byte, SizeofCmdSpecChans)
	le.PutUint32(b[0:], c.NetFn)
	le.PutUint32(b[4:], c.Cmd)
	le.PutUint32(b[8:], c.Chans)
	return b
}

// DecodeChannelLUNAddrSet decodes a struct ipmi_channel_lun_address_set.
func DecodeChannelLUNAddrSet(b []byte) (ChannelLUNAddrSet, error) {
	if len(b) < SizeofChannelLUNAddrSet {
		return ChannelLUNAddrSet{}, short("ipmi_channel_lun_address_set", b, SizeofChannelLUNAddrSet)
	}
	return ChannelLUNAddrSet{Channel: le.Uint16(b[0:]), Value: b[2]}, nil
}

// EncodeInto writes c into b (at least SizeofChannelLUNAddrSet bytes),
// leaving the padding byte as it is, since the kernel writes back the struct
// it copied in.
func (c ChannelLUNAddrSet) EncodeInto(b []byte) {
	_ = b[SizeofChannelLUNAddrSet-1]
	le.PutUint16(b[0:], c.Channel)
	b[2] = c.Value
}

// Encode returns the layout of c, with zero padding.
func (c ChannelLUNAddrSet) Encode() []byte {
	b := make([]byte, SizeofChannelLUNAddrSet)
	c.EncodeInto(b)
	return b
}

// DecodeTimingParms decodes a struct ipmi_timing_parms.
func DecodeTimingParms(b []byte) (TimingParms, error) {
	if len(b) < SizeofTimingParms {
		return TimingParms{}, short("ipmi_timing_parms", b, SizeofTimingParms)
	}
	return TimingParms{Retries: int32(le.Uint32(b[0:])), RetryTimeMs: le.Uint32(b[4:])}, nil
}

// Encode returns the layout of t.
func (t TimingParms) Encode() []byte {
	b := make([]byte, SizeofTimingParms)
	le.PutUint32(b[0:], uint32(t.Retries))
	le.PutUint32(b[4:], t.RetryTimeMs)
	return b
}

// DecodeInt decodes an int or unsigned int argument (returned as uint32;
// convert to int32 for signed arguments).
func DecodeInt(b []byte) (uint32, error) {
	if len(b) < SizeofInt {
		return 0, short("int", b, SizeofInt)
	}
	return le.Uint32(b), nil
}

// EncodeInt returns the 4-byte layout of an int or unsigned int argument.
func EncodeInt(v uint32) []byte {
	b := make([]byte, SizeofInt)
	le.PutUint32(b, v)
	return b
}
