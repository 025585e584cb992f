package msghandler

import (
	"bytes"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/ioctl/iotest"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

func event(i byte) []byte {
	ev := make([]byte, 16)
	ev[0], ev[2], ev[15] = i, 0x02, 0xEE
	return ev
}

// addEvent puts an event in the BMC's one-entry event buffer, waiting for
// the previous one to be read.
func (s *stack) addEvent(ev []byte) {
	s.t.Helper()
	waitFor(s.t, "the event buffer to empty", func() bool {
		err := s.bmc.AddEvent(ev)
		if err != nil && !errors.Is(err, bmcsim.ErrQueueFull) {
			s.t.Fatal(err)
		}
		return err == nil
	})
}

// TestEventsOnAttention: an event in the BMC's buffer raises SMS_ATN; the
// flag chain reads it and every gets_events file gets it as recv_type 2,
// other files nothing.
func TestEventsOnAttention(t *testing.T) {
	s := newStack(t, stackOpts{})
	a, b, c := s.open(), s.open(), s.open()
	a.SetGetsEvents(true)
	c.SetGetsEvents(true)
	s.addEvent(event(1))
	for _, cl := range []*iotest.Client{a, c} {
		got := receive(t, cl)
		if got.RecvType != ioctl.AsyncEventRecvType || got.MsgID != 0 || got.NetFn != 0x07 || got.Cmd != 0x35 ||
			!bytes.Equal(got.Data, event(1)) || !bytes.Equal(got.Addr, sysAddr(0)) {
			t.Fatalf("event %+v", got)
		}
	}
	s.settle()
	if _, errno := b.Receive(); errno != syscall.EAGAIN {
		t.Fatalf("file without gets_events got a message: %v", errno)
	}
}

// TestEventPolling: without ATN, the 1 s tick polls the event buffer, but
// only while some file has gets_events and maintenance mode is not in
// effect (forced on, or auto after a firmware command).
func TestEventPolling(t *testing.T) {
	s := newStack(t, stackOpts{noAttention: true})
	a := s.open()
	reads := func() int { return len(s.rec.sent(netFnApp, cmdReadEventBuf)) }
	s.addEvent(event(7))
	s.h.tick()
	s.settle()
	if n := reads(); n != 0 {
		t.Fatalf("%d event reads with no listener", n)
	}

	a.SetGetsEvents(true)
	if errno := a.SetMaintenanceMode(ioctl.MaintenanceModeOn); errno != 0 {
		t.Fatal(errno)
	}
	s.h.tick()
	s.settle()
	if n := reads(); n != 0 {
		t.Fatalf("%d event reads in maintenance mode", n)
	}

	a.SetMaintenanceMode(ioctl.MaintenanceModeAuto)
	si := ioctl.SystemInterfaceAddr{AddrType: ioctl.SystemInterfaceAddrType, Channel: ioctl.BMCChannel}.Encode()
	if errno := a.Send(si, 1, ioctl.NetFnFirmware, 0x01, nil); errno != 0 {
		t.Fatal(errno)
	}
	receive(t, a) // the firmware command's reply
	s.h.tick()
	s.settle()
	if n := reads(); n != 0 {
		t.Fatalf("%d event reads in auto maintenance", n)
	}

	a.SetMaintenanceMode(ioctl.MaintenanceModeOff)
	s.h.tick()
	got := receive(t, a)
	if got.RecvType != ioctl.AsyncEventRecvType || !bytes.Equal(got.Data, event(7)) {
		t.Fatalf("polled event %+v", got)
	}
	if n := reads(); n < 2 { // the event, then 0x80 "empty"
		t.Fatalf("%d event reads, want the event and the empty read", n)
	}
}

// TestEventCap: events read while nobody listens are kept up to 25; the
// rest are dropped with one warning; the first file that turns on
// gets_events receives the 25 in order.
func TestEventCap(t *testing.T) {
	s := newStack(t, stackOpts{})
	const total = MaxWaitingEvents + 3
	for i := range total {
		s.addEvent(event(byte(i)))
	}
	waitFor(t, "all events read", func() bool { return s.h.Stats().Events == total })
	if n := s.h.WaitingEvents(); n != MaxWaitingEvents {
		t.Fatalf("%d waiting events", n)
	}
	if st := s.h.Stats(); st.EventsDropped != 3 {
		t.Fatalf("dropped %d", st.EventsDropped)
	}
	if n := s.warns.n.Load(); n != 1 {
		t.Fatalf("%d warnings, want one", n)
	}
	a, b := s.open(), s.open()
	a.SetGetsEvents(true)
	for i := range MaxWaitingEvents {
		got, errno := a.Receive()
		if errno != 0 || !bytes.Equal(got.Data, event(byte(i))) {
			t.Fatalf("waiting event %d: %v %+v", i, errno, got)
		}
	}
	if _, errno := a.Receive(); errno != syscall.EAGAIN {
		t.Fatalf("more than %d events: %v", MaxWaitingEvents, errno)
	}
	b.SetGetsEvents(true)
	if _, errno := b.Receive(); errno != syscall.EAGAIN {
		t.Fatal("waiting events delivered twice")
	}
}

// TestIncomingCommand: a command from the satellite reaches the file
// registered for it as recv_type 3 (requester address, rqSeq as msgid);
// the file's response goes out as Send Message and comes back as
// recv_type 4; unregistered commands get an automatic 0xC1 answer.
func TestIncomingCommand(t *testing.T) {
	s := newStack(t, stackOpts{})
	a, b := s.open(), s.open()
	if errno := a.Register(0x30, 0x05); errno != 0 {
		t.Fatal(errno)
	}
	if errno := b.Register(0x30, 0x05); errno != syscall.EBUSY {
		t.Fatalf("second registration: %v, want EBUSY", errno)
	}
	if err := s.bmc.InjectIPMBRequest(0x72, 0x30, 0x05, 9, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	got := receive(t, a)
	if got.RecvType != ioctl.CmdRecvType || got.MsgID != 9 || got.NetFn != 0x30 || got.Cmd != 0x05 ||
		!bytes.Equal(got.Data, []byte{1, 2, 3}) || !bytes.Equal(got.Addr, ipmbAddr(0, 0x72, 0)) {
		t.Fatalf("incoming %+v", got)
	}
	if errno := a.Send(got.Addr, got.MsgID, 0x31, 0x05, []byte{0x00, 0x42}); errno != 0 {
		t.Fatal(errno)
	}
	conf := receive(t, a)
	if conf.RecvType != ioctl.ResponseResponseRecvType || conf.MsgID != 9 || conf.NetFn != 0x31 || conf.Cmd != 0x05 ||
		!bytes.Equal(conf.Data, []byte{0x00}) || !bytes.Equal(conf.Addr, ipmbAddr(0, 0x72, 0)) {
		t.Fatalf("confirmation %+v", conf)
	}
	sms := s.rec.sent(netFnApp, cmdSendMsg)
	sm, err := ParseSendMessage(sms[len(sms)-1], false)
	if err != nil || sm.RsSA != 0x72 || sm.NetFn != 0x31 || sm.RsLUN != 0 || sm.RqSA != 0x20 || sm.Seq != 9 || sm.RqLUN != 2 ||
		sm.Cmd != 0x05 || !bytes.Equal(sm.Data, []byte{0x00, 0x42}) {
		t.Fatalf("response frame %+v %v", sm, err)
	}

	autoReply := func(t *testing.T, cmd, seq byte) {
		t.Helper()
		before := s.h.Stats().AutoReplies
		if err := s.bmc.InjectIPMBRequest(0x72, 0x30, cmd, seq, nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the automatic reply", func() bool { return s.h.Stats().AutoReplies == before+1 })
		s.settle()
		sms := s.rec.sent(netFnApp, cmdSendMsg)
		sm, err := ParseSendMessage(sms[len(sms)-1], false)
		if err != nil || sm.RsSA != 0x72 || sm.NetFn != 0x31 || sm.RsLUN != 0 || sm.RqSA != 0x20 || sm.Seq != seq ||
			sm.RqLUN != 2 || sm.Cmd != cmd || !bytes.Equal(sm.Data, []byte{ccInvalidCommand}) {
			t.Fatalf("automatic reply %+v %v", sm, err)
		}
	}
	t.Run("unregistered", func(t *testing.T) { autoReply(t, 0x06, 11) })
	t.Run("other channel", func(t *testing.T) {
		if errno := b.RegisterChans(0x30, 0x07, 1<<1); errno != 0 {
			t.Fatal(errno)
		}
		autoReply(t, 0x07, 12)
		if _, errno := b.Receive(); errno != syscall.EAGAIN {
			t.Fatal("command for channel 0 delivered to a channel-1 registration")
		}
	})
	t.Run("after close", func(t *testing.T) {
		a.F.Release()
		autoReply(t, 0x05, 13)
	})
}

// TestPretimeout: a watchdog pre-timeout flag makes the chain clear it
// and call OnPretimeout.
func TestPretimeout(t *testing.T) {
	var calls atomic.Int64
	s := newStack(t, stackOpts{onPretime: func() { calls.Add(1) }})
	si := ioctl.SystemInterfaceAddr{AddrType: ioctl.SystemInterfaceAddrType, Channel: ioctl.BMCChannel}.Encode()
	c := s.open()
	// SMS/OS timer, no action, messaging pretimeout 1 s before a 1.5 s expiry.
	if errno := c.Send(si, 1, 0x06, 0x24, []byte{0x04, 0x30, 1, 0, 15, 0}); errno != 0 {
		t.Fatal(errno)
	}
	if errno := c.Send(si, 2, 0x06, 0x22, nil); errno != 0 {
		t.Fatal(errno)
	}
	waitFor(t, "OnPretimeout", func() bool { return calls.Load() == 1 })
	s.settle()
	if st := s.h.Stats(); st.Pretimeouts != 1 {
		t.Fatalf("stats %+v", st)
	}
	clears := s.rec.sent(netFnApp, cmdClearMsgFlags)
	if len(clears) != 2 || clears[1][2] != flagPretimeout {
		t.Fatalf("Clear Message Flags: % x", clears)
	}
}

// TestAttentionDoesNotStarve: a BMC that keeps SMS_ATN asserted with an
// endless receive queue starves neither the priority lane nor files.
func TestAttentionDoesNotStarve(t *testing.T) {
	s := newStack(t, stackOpts{
		attention: func() bool { return true },
		override: func(msg, resp []byte) ([]byte, bool) {
			switch {
			case msg[0]>>2 == netFnApp && msg[1] == cmdGetMsgFlags:
				return append(resp[:0], 0x1C, cmdGetMsgFlags, 0, flagRecvMsg), true
			case msg[0]>>2 == netFnApp && msg[1] == cmdGetMsg:
				// An IPMB command on channel 9 (no such channel): dropped.
				return append(resp[:0], 0x1C, cmdGetMsg, 0, 0x09, 0x18, 0xC8, 0x72, 0x00, 0x01, 0x00), true
			}
			return nil, false
		},
	})
	waitFor(t, "attention work", func() bool { return s.h.Stats().DroppedMsgs > 10 })
	c := s.open()
	si := ioctl.SystemInterfaceAddr{AddrType: ioctl.SystemInterfaceAddrType, Channel: ioctl.BMCChannel}.Encode()
	prio := make(chan *sched.Request, 20)
	for i := range 20 {
		r := &sched.Request{Owner: 3, Lane: sched.LanePriority, Deadline: time.Now().Add(waitLong),
			Msg: []byte{0x06 << 2, 0x01}, Resp: make([]byte, 0, 32), Done: func(r *sched.Request) { prio <- r }}
		if err := s.eng.Submit(r); err != nil {
			t.Fatal(err)
		}
		if errno := c.Send(si, int64(i), 0x06, 0x01, nil); errno != 0 {
			t.Fatal(errno)
		}
	}
	for range 20 {
		select {
		case r := <-prio:
			if r.Err != nil {
				t.Fatalf("priority request: %v", r.Err)
			}
		case <-time.After(waitLong):
			t.Fatal("priority lane starved by attention work")
		}
	}
	for i := range 20 {
		got := receive(t, c)
		if got.MsgID != int64(i) || got.Data[0] != 0 {
			t.Fatalf("file reply %d: %+v", i, got)
		}
	}
	if st := s.eng.Stats(); st.AttentionYields == 0 {
		t.Fatalf("attention never yielded: %+v", st)
	}
}
