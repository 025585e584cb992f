package main

// The message-handler subcommands: what a client sees of events, bridged
// requests and incoming commands, printed field by field so the kernel
// driver and ipmi-cuse can be compared exactly.
//
//	ipmiprobe msghandler events -wait N -timeout S [-platform]
//	ipmiprobe msghandler regcmd -netfn F -cmd C -timeout S
//	ipmiprobe msghandler bridge -sa A -netfn F -cmd C [-retries R -retry-ms M]
//	ipmiprobe msghandler idle -for D
//
// None of them sends other requests while waiting: the driver must notice
// the BMC's attention (SMS_ATN) on an idle interface by itself, as the
// kernel's ipmi_si does through the KCS interrupt.
//
// Every stdout line is "case: result" and does not vary between boots
// (the only varying bytes, the BMC's timestamp in an event it generated
// itself, are masked and the masking is printed).

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
)

// runMsgHandler dispatches the msghandler subcommands.
func runMsgHandler(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("msghandler: want events|regcmd|bridge|idle")
	}
	switch args[0] {
	case "events":
		return runEvents(args[1:])
	case "regcmd":
		return runRegCmd(args[1:])
	case "bridge":
		return runBridge(args[1:])
	case "idle":
		return runIdle(args[1:])
	}
	return fmt.Errorf("msghandler: unknown mode %q", args[0])
}

// byteFlag is a flag holding one byte, written in any base Go accepts
// (0x30, 48).
type byteFlag uint8

func (b *byteFlag) String() string { return fmt.Sprintf("%#02x", uint8(*b)) }

func (b *byteFlag) Set(s string) error {
	v, err := strconv.ParseUint(s, 0, 8)
	if err != nil {
		return fmt.Errorf("byte flag: %w", err)
	}
	*b = byteFlag(v)
	return nil
}

// describe prints a received message with every field the ABI defines,
// masking data bytes [maskFrom, maskTo) as "TT".
func describe(r reply, maskFrom, maskTo int) string {
	if r.errno != 0 {
		return errName(r.errno)
	}
	data := make([]string, len(r.data))
	for i, b := range r.data {
		if i >= maskFrom && i < maskTo {
			data[i] = "TT"
			continue
		}
		data[i] = fmt.Sprintf("%02x", b)
	}
	return fmt.Sprintf("type=%d msgid=%d netfn=%#02x cmd=%#02x addr_len=%d addr=% x data_len=%d data=%s",
		r.recv.RecvType, r.recv.MsgID, r.recv.Msg.NetFn, r.recv.Msg.Cmd, r.recv.AddrLen,
		r.addr[:min(int(r.recv.AddrLen), len(r.addr))], r.recv.Msg.DataLen, strings.Join(data, " "))
}

// Event record bytes 3..6 are the timestamp the BMC stamps on an event it
// generates itself (SEL record format, IPMI v2.0 §32.1).
const evTimeFrom, evTimeTo = 3, 7

// runEvents turns gets_events on for a file and prints the recv_type 2
// messages it gets, up to -wait of them or until -timeout. With -platform
// it first has the BMC generate one event itself: a Platform Event
// (sensor netfn 04h, cmd 02h) sent from a second file, as another process
// would. Without it, the event comes from outside (the host test puts one
// into the simulated BMC's event buffer).
func runEvents(args []string) error {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	wait := fs.Int("wait", 1, "events to wait for")
	timeout := fs.Duration("timeout", 20*time.Second, "how long to wait for them")
	platform := fs.Bool("platform", false, "send a Platform Event from a second file first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := newDev()
	if err != nil {
		return err
	}
	defer d.Close()
	out("set_gets_events_1", errName(ioctlRaw(d.fd, ioctl.IoctlSetGetsEvents, d.a.put(offArg, ioctl.EncodeInt(1)))))
	mask := 0
	if *platform {
		// Generator 41h (system software ID 20h), EvM rev 04h,
		// temperature sensor 30h, threshold event, assertion of
		// "upper non-critical going high" with trigger reading 57h and
		// threshold 50h in bytes 2 and 3.
		d2, err := d.a.open()
		if err != nil {
			return err
		}
		e := d2.Send(0x04, 0x02, []byte{0x41, 0x04, 0x01, 0x30, 0x01, 0x57, 0x57, 0x50}, 9)
		if e != 0 {
			out("platform_event", errName(e))
		} else {
			out("platform_event", describe(d2.Await(), -1, -1))
		}
		d2.Close()
		mask = evTimeTo
		out("event_mask", "data bytes 3-6 (the BMC's timestamp) printed as TT")
	}
	deadline := time.Now().Add(*timeout)
	got := 0
	for got < *wait {
		r := d.Next(deadline)
		if r.errno == unix.ETIMEDOUT {
			out("events", fmt.Sprintf("timeout after %d of %d", got, *wait))
			return nil
		}
		if r.errno == 0 && r.recv.RecvType == ioctl.AsyncEventRecvType {
			got++
			out(fmt.Sprintf("event_%d", got), describe(r, evTimeFrom, mask))
			continue
		}
		out("unexpected", describe(r, -1, -1))
	}
	out("events", fmt.Sprintf("%d received", got))
	out("set_gets_events_0", errName(ioctlRaw(d.fd, ioctl.IoctlSetGetsEvents, d.a.put(offArg, ioctl.EncodeInt(0)))))
	return nil
}

// runRegCmd registers for netfn/cmd, waits for the first incoming command
// (recv_type 3), answers it with a response (netfn|1, the received address
// and msgid, data 00 5a a5) and prints the recv_type 4 confirmation. The
// host test injects the command repeatedly while this runs; commands after
// the first are only counted on stderr.
func runRegCmd(args []string) error {
	fs := flag.NewFlagSet("regcmd", flag.ContinueOnError)
	netfn, cmd := byteFlag(0x30), byteFlag(0x11)
	fs.Var(&netfn, "netfn", "request netfn to register")
	fs.Var(&cmd, "cmd", "command to register")
	timeout := fs.Duration("timeout", 20*time.Second, "how long to wait for the command")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := newDev()
	if err != nil {
		return err
	}
	defer d.Close()
	spec := ioctl.CmdSpec{NetFn: uint8(netfn), Cmd: uint8(cmd)}.Encode()
	out("register", errName(ioctlRaw(d.fd, ioctl.IoctlRegisterForCmd, d.a.put(offArg, spec))))
	deadline := time.Now().Add(*timeout)
	var in reply
	for {
		in = d.Next(deadline)
		if in.errno != 0 {
			out("command", errName(in.errno))
			return nil
		}
		if in.recv.RecvType == ioctl.CmdRecvType {
			break
		}
		out("unexpected", describe(in, -1, -1))
	}
	out("command", describe(in, -1, -1))

	// The response goes to the address the command came from, with its
	// msgid (the requester's rqSeq).
	addr := append([]byte(nil), in.addr[:in.recv.AddrLen]...)
	e := d.SendTo(addr, in.recv.Msg.NetFn|1, in.recv.Msg.Cmd, []byte{0x00, 0x5a, 0xa5}, in.recv.MsgID)
	out("respond", errName(e))
	if e == 0 {
		more := 0
		for {
			r := d.Next(deadline)
			if r.errno == 0 && r.recv.RecvType == ioctl.CmdRecvType {
				more++ // a later injection of the same command
				continue
			}
			out("response_result", describe(r, -1, -1))
			break
		}
		if more > 0 {
			info("%d more commands arrived before the confirmation", more)
		}
	}
	out("unregister", errName(ioctlRaw(d.fd, ioctl.IoctlUnregisterForCmd, d.a.put(offArg, spec))))
	return nil
}

// runBridge sends one request to an IPMB address on channel 0 (SEND_COMMAND,
// or SEND_COMMAND_SETTIME when -retries is given) and prints the reply
// with its address and msgid, which clients like ipmitool do not show.
func runBridge(args []string) error {
	fs := flag.NewFlagSet("bridge", flag.ContinueOnError)
	sa, netfn, cmd := byteFlag(0x72), byteFlag(0x06), byteFlag(0x01)
	fs.Var(&sa, "sa", "responder's slave address")
	fs.Var(&netfn, "netfn", "request netfn")
	fs.Var(&cmd, "cmd", "command")
	retries := fs.Int("retries", -2, "SEND_COMMAND_SETTIME retries (-2: plain SEND_COMMAND)")
	retryMs := fs.Uint("retry-ms", 0, "SEND_COMMAND_SETTIME retry time in ms")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := newDev()
	if err != nil {
		return err
	}
	defer d.Close()
	addr := ioctl.IPMBAddr{AddrType: ioctl.IPMBAddrType, Channel: 0, SlaveAddr: uint8(sa), LUN: 0}.Encode()
	var e = unix.Errno(0)
	if *retries == -2 {
		e = d.SendTo(addr, uint8(netfn), uint8(cmd), nil, 4242)
	} else {
		rs := ioctl.ReqSettime{Req: d.a.req(addr, uint8(netfn), uint8(cmd), nil, 4242), Retries: int32(*retries), RetryTimeMs: uint32(*retryMs)}
		e = ioctlRaw(d.fd, ioctl.IoctlSendCommandSettime, d.a.put(offReq, rs.Encode()))
	}
	out("send", errName(e))
	if e != 0 {
		return nil
	}
	// 5 transmissions 2 s apart at most with the defaults, plus slack.
	out("reply", describe(d.Next(time.Now().Add(30*time.Second)), -1, -1))
	return nil
}

// runIdle holds a file of /dev/ipmi0 open for -for without sending
// anything, as an idle client would, while the host makes the BMC raise
// attention (the autoreply case): whatever the driver does then, it does
// on its own. It prints "idle: ok" when the file opened and closed.
func runIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	d := fs.Duration("for", 3*time.Second, "how long to hold the file open")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fd, err := openDev()
	if err != nil {
		return err
	}
	time.Sleep(*d)
	if err := unix.Close(fd); err != nil {
		out("idle", "close: "+err.Error())
		return nil
	}
	out("idle", "ok")
	return nil
}
