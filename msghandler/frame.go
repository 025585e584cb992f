package msghandler

import (
	"errors"
	"fmt"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
)

// IPMI commands and values the message handler uses (IPMI v2.0 chapters
// 20-22; netfn App = 0x06).
const (
	netFnApp          = 0x06
	cmdGetDeviceID    = 0x01
	cmdSetGlobalEn    = 0x2E
	cmdGetGlobalEn    = 0x2F
	cmdClearMsgFlags  = 0x30
	cmdGetMsgFlags    = 0x31
	cmdGetMsg         = 0x33
	cmdSendMsg        = 0x34
	cmdReadEventBuf   = 0x35
	cmdGetChannelInfo = 0x42

	flagRecvMsg    = 0x01 // receive message available
	flagEventBuf   = 0x02 // event message buffer full
	flagPretimeout = 0x08 // watchdog pre-timeout

	enableEventBuffer = 0x04 // BMC Global Enables: event message buffer

	// Channel media (Get Channel Info byte 2, IPMI v2.0 table 6-3).
	mediumIPMB     = 0x01
	mediumLAN      = 0x04
	mediumAsync    = 0x05
	mediumOEMFirst = 0x60
	mediumOEMLast  = 0x7F

	ccOK             = 0x00
	ccNodeBusy       = 0xC0
	ccLostArbitrate  = 0x81
	ccBusError       = 0x82
	ccNAKOnWrite     = 0x83
	ccInvalidCommand = 0xC1
)

// ErrFrame is wrapped by the decoders for bytes that are not a well-formed
// message of the kind asked for.
var ErrFrame = errors.New("msghandler: malformed frame")

// checksum is the IPMB two's-complement checksum: the byte that makes the
// sum of p and itself zero.
func checksum(p []byte) byte {
	var s byte
	for _, b := range p {
		s += b
	}
	return -s
}

// retryableSendCC reports whether a Send Message completion code means
// "the frame may still get through; start the retry timer" (the kernel's
// list: success, node busy, lost arbitration, bus error, NAK on write).
func retryableSendCC(cc uint8) bool {
	switch cc {
	case ccOK, ccNodeBusy, ccLostArbitrate, ccBusError, ccNAKOnWrite:
		return true
	}
	return false
}

// formatIPMB builds the Send Message request (netfn 06 LUN 0, cmd 0x34)
// that bridges an IPMB message: channel, [0 if broadcast], rsSA,
// netfn<<2|rsLUN, chk1, rqSA, seq<<2|rqLUN, cmd, data..., chk2
// (format_ipmb_msg). For a response, seq is the rqSeq being answered.
func formatIPMB(channel uint8, broadcast bool, rsSA, rsLUN, netfn, cmd uint8, data []byte, rqSA, rqLUN, seq uint8) []byte {
	m := make([]byte, 0, 11+len(data))
	m = append(m, netFnApp<<2, cmdSendMsg, channel&0x0F)
	if broadcast {
		m = append(m, 0)
	}
	h := len(m)
	m = append(m, rsSA, netfn<<2|rsLUN&3)
	m = append(m, checksum(m[h:h+2]))
	b := len(m)
	m = append(m, rqSA, seq<<2|rqLUN&3, cmd)
	m = append(m, data...)
	return append(m, checksum(m[b:]))
}

// formatLAN builds the Send Message request that bridges a LAN message:
// channel, session handle, remote SWID, netfn<<2|lun, chk1, local SWID,
// seq<<2|source LUN, cmd, data..., chk2 (format_lan_msg).
func formatLAN(channel, session, remoteSWID, lun, netfn, cmd uint8, data []byte, localSWID, srcLUN, seq uint8) []byte {
	m := make([]byte, 0, 12+len(data))
	m = append(m, netFnApp<<2, cmdSendMsg, channel&0x0F, session)
	h := len(m)
	m = append(m, remoteSWID, netfn<<2|lun&3)
	m = append(m, checksum(m[h:h+2]))
	b := len(m)
	m = append(m, localSWID, seq<<2|srcLUN&3, cmd)
	m = append(m, data...)
	return append(m, checksum(m[b:]))
}

// SendMessage is a decoded IPMB Send Message request, what a BMC (or a
// test standing in for one) sees of a bridged message.
type SendMessage struct {
	Channel   uint8
	Broadcast bool
	RsSA      uint8
	NetFn     uint8
	RsLUN     uint8
	RqSA      uint8
	Seq       uint8
	RqLUN     uint8
	Cmd       uint8
	Data      []byte
}

// ParseSendMessage decodes a Send Message request to an IPMB channel as
// the engine carries it (netfn<<2|lun, 0x34, channel, frame...). broadcast
// says whether a 0x00 broadcast byte precedes the frame (the request
// itself cannot tell). Both checksums must be right.
func ParseSendMessage(msg []byte, broadcast bool) (SendMessage, error) {
	if len(msg) < 3 || msg[0]>>2 != netFnApp || msg[1] != cmdSendMsg {
		return SendMessage{}, fmt.Errorf("%w: not a Send Message request", ErrFrame)
	}
	s := SendMessage{Channel: msg[2] & 0x0F, Broadcast: broadcast}
	f := msg[3:]
	if broadcast {
		if len(f) < 1 || f[0] != 0 {
			return SendMessage{}, fmt.Errorf("%w: missing broadcast byte", ErrFrame)
		}
		f = f[1:]
	}
	if len(f) < 7 {
		return SendMessage{}, fmt.Errorf("%w: IPMB frame of %d bytes", ErrFrame, len(f))
	}
	if checksum(f[:2]) != f[2] || checksum(f[3:len(f)-1]) != f[len(f)-1] {
		return SendMessage{}, fmt.Errorf("%w: bad IPMB checksum", ErrFrame)
	}
	s.RsSA, s.NetFn, s.RsLUN = f[0], f[1]>>2, f[1]&3
	s.RqSA, s.Seq, s.RqLUN, s.Cmd = f[3], f[4]>>2, f[4]&3, f[5]
	s.Data = append([]byte(nil), f[6:len(f)-1]...)
	return s, nil
}

// inboundKind classifies a Get Message reply.
type inboundKind uint8

const (
	inboundDrop inboundKind = iota
	inboundIPMBResponse
	inboundIPMBCommand
	inboundLANResponse
	inboundLANCommand
	inboundOEM
)

// inbound is one message taken from the BMC's receive queue, decoded the
// way the kernel's handle_*_get_msg_* functions read it.
type inbound struct {
	kind    inboundKind
	channel uint8
	netfn   uint8 // of the inner message
	cmd     uint8
	seq     uint8 // rqSeq (IPMB/LAN)
	lun     uint8 // the peer's LUN
	// IPMB peer
	sa uint8
	// LAN peer
	privilege, session, remoteSWID, localSWID uint8
	// rsLUN is the LUN the incoming command was addressed to (for the
	// automatic reply).
	rsLUN uint8
	data  []byte // inner data (CC first for responses), no checksum
}

// parseGetMessage decodes a Get Message reply (rsp = netfn<<2|lun, 0x33,
// CC, channel, message...) given the medium of each channel. Replies that
// the kernel ignores (error CC, too short, unknown or unscanned channel)
// come back as inboundDrop with an error saying why.
func parseGetMessage(rsp []byte, medium func(ch uint8) uint8) (inbound, error) {
	if len(rsp) < 4 || rsp[1] != cmdGetMsg {
		return inbound{}, fmt.Errorf("%w: Get Message reply of %d bytes", ErrFrame, len(rsp))
	}
	if rsp[2] != ccOK {
		return inbound{}, fmt.Errorf("%w: Get Message completion code %#x", ErrFrame, rsp[2])
	}
	in := inbound{channel: rsp[3] & 0x0F}
	med := medium(in.channel)
	switch {
	case med == mediumIPMB:
		if len(rsp) < 5 {
			return inbound{}, fmt.Errorf("%w: short IPMB message", ErrFrame)
		}
		if rsp[4]&0x04 != 0 { // odd netfn: a response
			if len(rsp) < 11 {
				return inbound{}, fmt.Errorf("%w: IPMB response of %d bytes", ErrFrame, len(rsp))
			}
			in.kind = inboundIPMBResponse
		} else {
			if len(rsp) < 10 {
				return inbound{}, fmt.Errorf("%w: IPMB command of %d bytes", ErrFrame, len(rsp))
			}
			in.kind = inboundIPMBCommand
		}
		in.netfn, in.rsLUN = rsp[4]>>2, rsp[4]&3
		in.sa, in.seq, in.lun, in.cmd = rsp[6], rsp[7]>>2, rsp[7]&3, rsp[8]
		in.data = append([]byte(nil), rsp[9:len(rsp)-1]...)
	case med == mediumLAN || med == mediumAsync:
		if len(rsp) < 7 {
			return inbound{}, fmt.Errorf("%w: short LAN message", ErrFrame)
		}
		if rsp[6]&0x04 != 0 {
			if len(rsp) < 13 {
				return inbound{}, fmt.Errorf("%w: LAN response of %d bytes", ErrFrame, len(rsp))
			}
			in.kind = inboundLANResponse
		} else {
			if len(rsp) < 12 {
				return inbound{}, fmt.Errorf("%w: LAN command of %d bytes", ErrFrame, len(rsp))
			}
			in.kind = inboundLANCommand
		}
		in.privilege, in.session, in.localSWID = rsp[3]>>4, rsp[4], rsp[5]
		in.netfn, in.rsLUN = rsp[6]>>2, rsp[6]&3
		in.remoteSWID, in.seq, in.lun, in.cmd = rsp[8], rsp[9]>>2, rsp[9]&3, rsp[10]
		in.data = append([]byte(nil), rsp[11:len(rsp)-1]...)
	case med >= mediumOEMFirst && med <= mediumOEMLast:
		in.kind = inboundOEM
		in.netfn, in.cmd = rsp[0]>>2, rsp[1]
		in.data = append([]byte(nil), rsp[4:]...)
	default:
		return inbound{}, fmt.Errorf("%w: channel %d has medium %#x", ErrFrame, in.channel, med)
	}
	return in, nil
}

// addr returns the address delivered to a file for this message.
func (in *inbound) addr() []byte {
	switch in.kind {
	case inboundIPMBResponse, inboundIPMBCommand:
		return ioctl.IPMBAddr{AddrType: ioctl.IPMBAddrType, Channel: int16(in.channel), SlaveAddr: in.sa, LUN: in.lun}.Encode()
	case inboundLANResponse, inboundLANCommand:
		return ioctl.LANAddr{AddrType: ioctl.LANAddrType, Channel: int16(in.channel), Privilege: in.privilege,
			SessionHandle: in.session, RemoteSWID: in.remoteSWID, LocalSWID: in.localSWID, LUN: in.lun}.Encode()
	}
	return sysAddr(0)
}

// sysAddr is the system-interface address events and OEM messages carry.
func sysAddr(lun uint8) []byte {
	return ioctl.SystemInterfaceAddr{AddrType: ioctl.SystemInterfaceAddrType, Channel: ioctl.BMCChannel, LUN: lun}.Encode()
}

// autoReply builds the Send Message that answers an unregistered IPMB
// command with 0xC1, addressed back to the requester with our address and
// the requester's rqSeq and LUNs (the kernel's handle_ipmb_get_msg_cmd).
func (in *inbound) autoReply(mySA uint8) []byte {
	return formatIPMB(in.channel, false, in.sa, in.lun, in.netfn|1, in.cmd, []byte{ccInvalidCommand}, mySA, in.rsLUN, in.seq)
}
