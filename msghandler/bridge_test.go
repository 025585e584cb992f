package msghandler

import (
	"bytes"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
)

// TestStartup: the init sequence enables the event buffer, and the channel
// scan finds the simulated BMC's IPMB channel 0 and LAN channel 1.
func TestStartup(t *testing.T) {
	s := newStack(t, stackOpts{})
	chans, ready := s.h.Channels()
	if !ready || chans[0].Medium != mediumIPMB || chans[1].Medium != mediumLAN || chans[2].Medium != 0 {
		t.Fatalf("channels ready=%v %+v", ready, chans[:3])
	}
	if !s.h.hasEventBuf {
		t.Error("event buffer not enabled")
	}
	if n := len(s.rec.sent(netFnApp, cmdGetChannelInfo)); n != 16 {
		t.Errorf("Get Channel Info sent %d times, want 16", n)
	}
	if m := s.rec.sent(netFnApp, cmdClearMsgFlags); len(m) == 0 || m[0][2] != flagPretimeout {
		t.Errorf("Clear Message Flags 0x08 not sent: % x", m)
	}
}

// TestBridgedRoundTrip: Get Device ID bridged to the satellite at 0x72
// comes back as recv_type 1 from its IPMB address with the caller's msgid;
// a broadcast nobody answers times out with 0xC3 and a plain IPMB address.
func TestBridgedRoundTrip(t *testing.T) {
	s := newStack(t, stackOpts{})
	c := s.open()
	if errno := c.Send(ipmbAddr(0, 0x72, 0), 0x1234_5678_9abc, 0x06, 0x01, nil); errno != 0 {
		t.Fatalf("send: %v", errno)
	}
	got := receive(t, c)
	if got.RecvType != ioctl.ResponseRecvType || got.MsgID != 0x1234_5678_9abc || got.NetFn != 0x07 || got.Cmd != 0x01 ||
		!bytes.Equal(got.Addr, ipmbAddr(0, 0x72, 0)) || len(got.Data) != 12 || got.Data[0] != 0 {
		t.Fatalf("reply %+v", got)
	}
	m := s.rec.sent(netFnApp, cmdSendMsg)
	if len(m) != 1 {
		t.Fatalf("%d Send Messages", len(m))
	}
	sm, err := ParseSendMessage(m[0], false)
	if err != nil || sm.Channel != 0 || sm.RsSA != 0x72 || sm.NetFn != 6 || sm.Cmd != 1 || sm.RqSA != 0x20 || sm.RqLUN != 2 {
		t.Fatalf("Send Message %+v %v", sm, err)
	}
	if st := s.h.Stats(); st.Replies != 1 || st.Unmatched != 0 || s.h.Outstanding() != 0 {
		t.Fatalf("stats %+v outstanding %d", st, s.h.Outstanding())
	}

	t.Run("broadcast", func(t *testing.T) {
		b := ioctl.IPMBAddr{AddrType: ioctl.IPMBBroadcastAddrType, Channel: 0, SlaveAddr: 0x72}.Encode()
		if errno := c.Send(b, 9, 0x06, 0x01, nil); errno != 0 {
			t.Fatalf("send: %v", errno)
		}
		s.waitArmed(owner(c))
		s.h.tick()
		s.h.tick()
		got := receive(t, c)
		if got.RecvType != 1 || got.MsgID != 9 || !bytes.Equal(got.Data, []byte{ioctl.CCTimeout}) || !bytes.Equal(got.Addr, ipmbAddr(0, 0x72, 0)) {
			t.Fatalf("broadcast result %+v", got)
		}
		if st := s.h.Stats(); st.BroadcastTimeouts != 1 || st.Retransmits != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestSendChecks: the per-type checks of i_ipmi_req_ipmb/lan.
func TestSendChecks(t *testing.T) {
	s := newStack(t, stackOpts{})
	c := s.open()
	lan := func(ch int16, lun uint8) []byte {
		return ioctl.LANAddr{AddrType: ioctl.LANAddrType, Channel: ch, SessionHandle: 1, RemoteSWID: 0x81, LocalSWID: 0x41, LUN: lun}.Encode()
	}
	tests := []struct {
		name string
		addr []byte
		data []byte
		want syscall.Errno
	}{
		{"ipmb on lan channel", ipmbAddr(1, 0x72, 0), nil, syscall.EINVAL},
		{"ipmb on missing channel", ipmbAddr(5, 0x72, 0), nil, syscall.EINVAL},
		{"ipmb lun 4", ipmbAddr(0, 0x72, 4), nil, syscall.EINVAL},
		{"ipmb too long", ipmbAddr(0, 0x72, 0), make([]byte, 263), syscall.EMSGSIZE},
		{"lan on ipmb channel", lan(0, 0), nil, syscall.EINVAL},
		{"lan too long", lan(1, 0), make([]byte, 261), syscall.EMSGSIZE},
		{"lan lun 5", lan(1, 5), nil, syscall.EINVAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if errno := c.Send(tt.addr, 1, 6, 1, tt.data); errno != tt.want {
				t.Fatalf("errno %v, want %v", errno, tt.want)
			}
		})
	}
	t.Run("lan send message error", func(t *testing.T) {
		// The simulated BMC bridges only to IPMB: its Send Message to the
		// LAN channel fails with 0xCC, which comes back at once.
		if errno := c.Send(lan(1, 0), 77, 6, 1, nil); errno != 0 {
			t.Fatal(errno)
		}
		got := receive(t, c)
		if got.RecvType != 1 || got.MsgID != 77 || !bytes.Equal(got.Data, []byte{0xCC}) || !bytes.Equal(got.Addr, lan(1, 0)) {
			t.Fatalf("got %+v", got)
		}
		if st := s.h.Stats(); st.SendErrors != 1 || s.h.Outstanding() != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestSilentSatellite: a satellite that never answers gets the request
// retransmitted `retries` times, one retry interval apart, and then the
// caller gets 0xC3 with its msgid and the address it sent to.
func TestSilentSatellite(t *testing.T) {
	tests := []struct {
		name    string
		retries int32
		ms      uint32
		ticks   int // ticks per retry interval
	}{
		{"settime 2 retries 1 s", 2, 1000, 1},
		{"settime 1 retry 3 s", 1, 3000, 3},
		{"defaults", -1, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, stackOpts{})
			if err := s.bmc.SetSatelliteSilent(0x72, true); err != nil {
				t.Fatal(err)
			}
			c := s.open()
			if errno := c.SendSettime(ipmbAddr(0, 0x72, 0), -42, 0x06, 0x01, nil, tt.retries, tt.ms); errno != 0 {
				t.Fatal(errno)
			}
			retries := int(tt.retries)
			if retries < 0 {
				retries = DefaultRetries
			}
			for i := 0; i <= retries; i++ {
				s.waitArmed(owner(c))
				for range tt.ticks - 1 {
					s.h.tick()
				}
				if _, errno := c.Receive(); errno != syscall.EAGAIN {
					t.Fatalf("transmission %d: message before its retry interval ran out: %v", i, errno)
				}
				s.h.tick()
			}
			got := receive(t, c)
			if got.RecvType != 1 || got.MsgID != -42 || got.NetFn != 7 || got.Cmd != 1 ||
				!bytes.Equal(got.Data, []byte{ioctl.CCTimeout}) || !bytes.Equal(got.Addr, ipmbAddr(0, 0x72, 0)) {
				t.Fatalf("got %+v", got)
			}
			if st := s.h.Stats(); st.Retransmits != uint64(retries) || st.Timeouts != 1 {
				t.Fatalf("stats %+v", st)
			}
			if n := s.bmc.Stats().Bridged; n != uint64(retries+1) {
				t.Fatalf("BMC bridged %d frames, want %d", n, retries+1)
			}
			if s.h.Outstanding() != 0 {
				t.Fatal("slot not freed")
			}
		})
	}
}

// TestLateReply: a reply that arrives after its request timed out is
// dropped and counted; the caller saw exactly one 0xC3.
func TestLateReply(t *testing.T) {
	s := newStack(t, stackOpts{})
	if err := s.bmc.SetSatelliteDelay(0x72, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c := s.open()
	if errno := c.SendSettime(ipmbAddr(0, 0x72, 0), 5, 0x06, 0x01, nil, 0, 1000); errno != 0 {
		t.Fatal(errno)
	}
	s.waitArmed(owner(c))
	s.h.tick() // expires before the satellite's 300 ms are up
	got := receive(t, c)
	if !bytes.Equal(got.Data, []byte{ioctl.CCTimeout}) || got.MsgID != 5 {
		t.Fatalf("got %+v", got)
	}
	waitFor(t, "the late reply to be dropped", func() bool { return s.h.Stats().Unmatched == 1 })
	s.settle()
	if _, errno := c.Receive(); errno != syscall.EAGAIN {
		t.Fatalf("late reply delivered: %v", errno)
	}
	if st := s.h.Stats(); st.Replies != 0 || st.Timeouts != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMismatchedReply: responses on the receive queue that differ from the
// outstanding request in slave address, command, netfn or sequence are
// dropped and counted; the matching one is delivered.
func TestMismatchedReply(t *testing.T) {
	s := newStack(t, stackOpts{})
	if err := s.bmc.SetSatelliteSilent(0x72, true); err != nil {
		t.Fatal(err)
	}
	c := s.open()
	if errno := c.Send(ipmbAddr(0, 0x72, 0), 31, 0x06, 0x01, nil); errno != 0 {
		t.Fatal(errno)
	}
	s.waitArmed(owner(c))
	m := s.rec.sent(netFnApp, cmdSendMsg)
	sm, err := ParseSendMessage(m[len(m)-1], false)
	if err != nil {
		t.Fatal(err)
	}
	// A response is a "request" with an odd netfn as InjectIPMBRequest
	// frames it: the requester address is the responder's SA here.
	bad := []struct {
		name           string
		sa, netfn, cmd byte
		seq            byte
	}{
		{"wrong slave", 0x74, 0x07, 0x01, sm.Seq},
		{"wrong cmd", 0x72, 0x07, 0x02, sm.Seq},
		{"wrong netfn", 0x72, 0x0B, 0x01, sm.Seq},
		{"wrong seq", 0x72, 0x07, 0x01, (sm.Seq + 1) & 0x3F},
	}
	for i, b := range bad {
		if err := s.bmc.InjectIPMBRequest(b.sa, b.netfn, b.cmd, b.seq, []byte{0x00}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, b.name+" dropped", func() bool { return s.h.Stats().Unmatched == uint64(i+1) })
	}
	if _, errno := c.Receive(); errno != syscall.EAGAIN {
		t.Fatalf("mismatched reply delivered: %v", errno)
	}
	if err := s.bmc.InjectIPMBRequest(0x72, 0x07, 0x01, sm.Seq, []byte{0x00, 0xAB}); err != nil {
		t.Fatal(err)
	}
	got := receive(t, c)
	if got.RecvType != 1 || got.MsgID != 31 || !bytes.Equal(got.Data, []byte{0x00, 0xAB}) || !bytes.Equal(got.Addr, ipmbAddr(0, 0x72, 0)) {
		t.Fatalf("got %+v", got)
	}
}

// TestSequenceExhaustion: 64 outstanding bridged requests fill the table;
// the 65th SEND fails with EAGAIN, and a freed slot is usable again.
func TestSequenceExhaustion(t *testing.T) {
	s := newStack(t, stackOpts{})
	if err := s.bmc.SetSatelliteSilent(0x72, true); err != nil {
		t.Fatal(err)
	}
	a, b := s.open(), s.open()
	for i := range NumSeq {
		c := a
		if i%2 == 1 {
			c = b
		}
		if errno := c.Send(ipmbAddr(0, 0x72, 0), int64(i), 6, 1, nil); errno != 0 {
			t.Fatalf("send %d: %v", i, errno)
		}
	}
	if errno := a.Send(ipmbAddr(0, 0x72, 0), 64, 6, 1, nil); errno != syscall.EAGAIN {
		t.Fatalf("65th send: %v, want EAGAIN", errno)
	}
	b.F.Release()
	if n := s.h.Outstanding(); n != NumSeq/2 {
		t.Fatalf("outstanding after close: %d", n)
	}
	if errno := a.Send(ipmbAddr(0, 0x72, 0), 65, 6, 1, nil); errno != 0 {
		t.Fatalf("send after close freed slots: %v", errno)
	}
}

// TestCloseOutstanding: closing a file with bridged requests outstanding
// frees their slots silently; replies and timeouts that follow reach no
// one and nothing is retransmitted.
func TestCloseOutstanding(t *testing.T) {
	s := newStack(t, stackOpts{})
	if err := s.bmc.SetSatelliteDelay(0x72, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	c := s.open()
	o := owner(c)
	for i := range 3 {
		if errno := c.Send(ipmbAddr(0, 0x72, 0), int64(i), 6, 1, nil); errno != 0 {
			t.Fatal(errno)
		}
	}
	s.waitArmed(o)
	c.F.Release()
	if n := s.h.Outstanding(); n != 0 {
		t.Fatalf("%d slots still in use", n)
	}
	sends := len(s.rec.sent(netFnApp, cmdSendMsg))
	for range 5 {
		s.h.tick()
	}
	waitFor(t, "the three late replies", func() bool { return s.h.Stats().Unmatched == 3 })
	s.settle()
	if n := len(s.rec.sent(netFnApp, cmdSendMsg)); n != sends {
		t.Fatalf("%d Send Messages after close", n-sends)
	}
	if st := s.h.Stats(); st.Timeouts != 0 || st.Replies != 0 || st.Retransmits != 0 {
		t.Fatalf("stats %+v", st)
	}
	if s.dev.Deliver(o, ioctl.Message{RecvType: 1, Addr: ipmbAddr(0, 0x72, 0)}) {
		t.Fatal("closed file still takes messages")
	}
}

// TestMaintenanceRetryTime: within 30 ticks of an IPMB maintenance command
// (Cold Reset bridged to the satellite) the default retry time is 3 s.
func TestMaintenanceRetryTime(t *testing.T) {
	s := newStack(t, stackOpts{})
	if err := s.bmc.SetSatelliteSilent(0x72, true); err != nil {
		t.Fatal(err)
	}
	c := s.open()
	retryOf := func() int {
		s.h.mu.Lock()
		defer s.h.mu.Unlock()
		for i := range s.h.seq {
			if s.h.seq[i].inUse {
				return s.h.seq[i].retryMs
			}
		}
		return -1
	}
	if errno := c.SendSettime(ipmbAddr(0, 0x72, 0), 1, 6, 1, nil, 0, 0); errno != 0 {
		t.Fatal(errno)
	}
	if got := retryOf(); got != 2000 {
		t.Fatalf("retry time %d ms before maintenance, want 2000", got)
	}
	s.h.Release(owner(c))
	if errno := c.SendSettime(ipmbAddr(0, 0x72, 0), 2, 6, bmcsim.CmdColdReset, nil, 0, 0); errno != 0 {
		t.Fatal(errno)
	}
	if got := retryOf(); got != 3000 {
		t.Fatalf("retry time %d ms in IPMB maintenance, want 3000", got)
	}
	s.h.Release(owner(c))
	for range maintenanceTicks {
		s.h.tick()
	}
	if errno := c.SendSettime(ipmbAddr(0, 0x72, 0), 3, 6, 1, nil, 0, 0); errno != 0 {
		t.Fatal(errno)
	}
	if got := retryOf(); got != 2000 {
		t.Fatalf("retry time %d ms after maintenance ended, want 2000", got)
	}
}

// TestSendMessageReplyCC: the BMC's immediate reply to a bridged Send
// Message is judged as ipmi_msghandler judges it (ipmi_smi_msg_received):
// by its completion code byte alone, whatever netfn and command the reply
// carries, and a reply shorter than 3 bytes counts as sent. A code that
// means "try again" (or success) starts the retry timer and the request
// ends 0xC3 with no answer; any other code ends it at once with that code.
// A reply for another command is what an SSIF BMC like QEMU's smbus-ipmi
// hands out after an earlier request timed out (its responses then pair
// with the next request): it must not turn into 0xFF.
func TestSendMessageReplyCC(t *testing.T) {
	tests := []struct {
		name   string
		reply  []byte // the BMC's reply to Send Message; nil: the simulated BMC's own
		wantCC byte
		timer  bool // the retry timer ran (the request ended by timeout)
	}{
		{"absent address, NAK on write", nil, ioctl.CCTimeout, true},
		{"another command's reply, cc 0", []byte{0x07 << 2, 0x31, 0x00, 0x00}, ioctl.CCTimeout, true},
		{"another command's reply, cc 0xc1", []byte{0x07 << 2, 0x31, 0xC1}, 0xC1, false},
		{"short reply", []byte{0x07 << 2, cmdSendMsg}, ioctl.CCTimeout, true},
		{"node busy", []byte{0x07 << 2, cmdSendMsg, 0xC0}, ioctl.CCTimeout, true},
		{"invalid field", []byte{0x07 << 2, cmdSendMsg, 0xCC}, 0xCC, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var override func(msg, resp []byte) ([]byte, bool)
			if tt.reply != nil {
				override = func(msg, resp []byte) ([]byte, bool) {
					if msg[0]>>2 == netFnApp && msg[1] == cmdSendMsg {
						return append(resp[:0], tt.reply...), true
					}
					return nil, false
				}
			}
			s := newStack(t, stackOpts{override: override})
			c := s.open()
			// 0x74: no satellite there; the simulated BMC NAKs the write.
			if errno := c.SendSettime(ipmbAddr(0, 0x74, 0), 7, 0x06, 0x01, nil, 0, 1000); errno != 0 {
				t.Fatal(errno)
			}
			if tt.timer {
				s.waitArmed(owner(c))
				if _, errno := c.Receive(); errno != syscall.EAGAIN {
					t.Fatalf("a message before the retry interval ran out: %v", errno)
				}
				s.h.tick()
			}
			got := receive(t, c)
			if got.RecvType != 1 || got.MsgID != 7 || !bytes.Equal(got.Data, []byte{tt.wantCC}) {
				t.Fatalf("got %+v, want completion code %#x", got, tt.wantCC)
			}
			if s.h.Outstanding() != 0 {
				t.Fatal("slot not freed")
			}
		})
	}
}
