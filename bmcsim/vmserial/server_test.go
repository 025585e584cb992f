package vmserial

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
)

var quiet = slog.New(slog.DiscardHandler)

// client is a fake QEMU: it writes raw frames and collects what the
// server sends, messages and commands apart.
type client struct {
	t    *testing.T
	c    net.Conn
	msgs chan Frame
	cmds chan Frame
	raw  chan []byte
}

func newClient(t *testing.T, c net.Conn) *client {
	cl := &client{t: t, c: c, msgs: make(chan Frame, 64), cmds: make(chan Frame, 64), raw: make(chan []byte, 64)}
	go func() {
		rd := NewReader(&tee{c, cl.raw})
		for {
			f, err := rd.Next()
			if err != nil {
				if errors.Is(err, ErrBadFrame) {
					continue
				}
				close(cl.msgs)
				close(cl.cmds)
				return
			}
			if f.Kind == KindMessage {
				cl.msgs <- f
			} else {
				cl.cmds <- f
			}
		}
	}()
	// What QEMU sends on connect.
	cl.write(Encode(nil, Frame{Kind: KindCommand, Data: []byte{OpVersion, 1}}))
	cl.write(Encode(nil, Frame{Kind: KindCommand, Data: []byte{OpCapabilities, CapIRQ | CapAttn}}))
	return cl
}

// tee copies what is read into a channel of raw chunks.
type tee struct {
	c   net.Conn
	out chan []byte
}

func (t *tee) Read(p []byte) (int, error) {
	n, err := t.c.Read(p)
	if n > 0 {
		select {
		case t.out <- append([]byte(nil), p[:n]...):
		default:
		}
	}
	return n, err
}

func (cl *client) write(p []byte) {
	cl.t.Helper()
	if _, err := cl.c.Write(p); err != nil {
		cl.t.Fatalf("client write: %v", err)
	}
}

func (cl *client) send(seq byte, req ...byte) {
	cl.t.Helper()
	cl.write(Encode(nil, Frame{Kind: KindMessage, Seq: seq, Data: req}))
}

func (cl *client) recv() Frame {
	cl.t.Helper()
	select {
	case f, ok := <-cl.msgs:
		if !ok {
			cl.t.Fatal("connection closed")
		}
		return f
	case <-time.After(10 * time.Second):
		cl.t.Fatal("no response within 10 s")
	}
	return Frame{}
}

// waitCmd waits for the control command op, skipping others.
func (cl *client) waitCmd(op byte) {
	cl.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case f := <-cl.cmds:
			if f.Data[0] == op {
				return
			}
		case <-deadline:
			cl.t.Fatalf("no command %#x within 10 s", op)
		}
	}
}

func start(t *testing.T, r bmcsim.Responder) (*Server, *client) {
	t.Helper()
	return startOpts(t, r, Options{Logger: quiet, AttentionInterval: 10 * time.Millisecond})
}

func startOpts(t *testing.T, r bmcsim.Responder, opts Options) (*Server, *client) {
	t.Helper()
	srv := NewServer(r, opts)
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(ctx, a) }()
	t.Cleanup(func() {
		cancel()
		b.Close()
		if err := <-done; err != nil {
			t.Errorf("ServeConn: %v", err)
		}
	})
	return srv, newClient(t, b)
}

func TestRoundTrip(t *testing.T) {
	b := bmcsim.New(bmcsim.Config{Logger: quiet})
	srv, cl := start(t, b)
	cl.send(7, bmcsim.NetFnApp<<2, bmcsim.CmdGetDeviceID)
	f := cl.recv()
	if f.Seq != 7 || len(f.Data) != 18 || f.Data[0] != 0x1C || f.Data[1] != 0x01 || f.Data[2] != 0 || f.Data[3] != 0x20 {
		t.Fatalf("response %+v", f)
	}
	st := srv.Stats()
	if st.Version != 1 || st.Capabilities != CapIRQ|CapAttn || st.Answered != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEscapingOnTheWire(t *testing.T) {
	b := bmcsim.New(bmcsim.Config{Logger: quiet})
	_, cl := start(t, b)
	// Write FRU bytes that must be escaped, with an escaped sequence number.
	cl.send(0xAA, bmcsim.NetFnStorage<<2, bmcsim.CmdWriteFRUData, 0, 0xA0, 0, 0xA0, 0xA1, 0xAA)
	if f := cl.recv(); f.Seq != 0xAA || f.Data[2] != 0 || f.Data[3] != 3 {
		t.Fatalf("write response %+v", f)
	}
	for len(cl.raw) > 0 {
		<-cl.raw
	}
	cl.send(0xA1, bmcsim.NetFnStorage<<2, bmcsim.CmdReadFRUData, 0, 0xA0, 0, 3)
	f := cl.recv()
	if f.Seq != 0xA1 || !bytes.Equal(f.Data, []byte{0x2C, 0x11, 0x00, 3, 0xA0, 0xA1, 0xAA}) {
		t.Fatalf("read response %+v", f)
	}
	var wire []byte
	for len(cl.raw) > 0 {
		wire = append(wire, <-cl.raw...)
	}
	if !bytes.Contains(wire, []byte{0xAA, 0xB1, 0x2C, 0x11, 0x00, 0x03, 0xAA, 0xB0, 0xAA, 0xB1, 0xAA, 0xBA}) {
		t.Fatalf("wire bytes % x lack the escaped response", wire)
	}
}

func TestBadChecksumDropped(t *testing.T) {
	b := bmcsim.New(bmcsim.Config{Logger: quiet})
	srv, cl := start(t, b)
	bad := Encode(nil, Frame{Kind: KindMessage, Seq: 5, Data: []byte{bmcsim.NetFnApp << 2, bmcsim.CmdGetDeviceID}})
	bad[2]++ // corrupt the command byte; checksum no longer matches
	cl.write(bad)
	cl.send(6, bmcsim.NetFnApp<<2, bmcsim.CmdGetSelfTestResults)
	if f := cl.recv(); f.Seq != 6 {
		t.Fatalf("first response has seq %d, want 6 (5 must be dropped)", f.Seq)
	}
	if st := srv.Stats(); st.BadFrames != 1 || st.Answered != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDelayAndSilence(t *testing.T) {
	b := bmcsim.New(bmcsim.Config{Logger: quiet})
	srv, cl := start(t, b)
	b.SetDelay(100 * time.Millisecond)
	begin := time.Now()
	cl.send(1, bmcsim.NetFnApp<<2, bmcsim.CmdGetSelfTestResults)
	if f := cl.recv(); f.Seq != 1 {
		t.Fatalf("seq %d", f.Seq)
	}
	if el := time.Since(begin); el < 100*time.Millisecond {
		t.Fatalf("answered after %v, before the 100 ms delay", el)
	}
	b.SetDelay(0)
	b.SetSilent(true)
	cl.send(2, bmcsim.NetFnApp<<2, bmcsim.CmdGetSelfTestResults)
	cl.send(3, bmcsim.NetFnApp<<2, bmcsim.CmdGetSelfTestResults)
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().Silenced < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("requests not ignored: %+v", srv.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	b.SetSilent(false)
	cl.send(4, bmcsim.NetFnApp<<2, bmcsim.CmdGetSelfTestResults)
	if f := cl.recv(); f.Seq != 4 {
		t.Fatalf("first answer after silence has seq %d, want 4", f.Seq)
	}
	if st := srv.Stats(); st.Silenced != 2 || st.Messages != 4 || st.Answered != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAttentionOnPretimeout(t *testing.T) {
	clk := bmcsim.NewManualClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	b := bmcsim.New(bmcsim.Config{Clock: clk, Logger: quiet})
	_, cl := start(t, b)
	cl.waitCmd(OpNoAttn) // initial state
	// SMS/OS, messaging-interrupt pretimeout 1 s, no action, 3 s.
	cl.send(1, bmcsim.NetFnApp<<2, bmcsim.CmdSetWatchdogTimer, 0x84, 0x30, 1, 0, 30, 0)
	cl.send(2, bmcsim.NetFnApp<<2, bmcsim.CmdResetWatchdogTimer)
	for range 2 {
		if f := cl.recv(); f.Data[2] != 0 {
			t.Fatalf("response %+v", f)
		}
	}
	clk.Advance(2 * time.Second)
	cl.waitCmd(OpAttn)
	// With the receive-message interrupt enabled the next change is ATN+IRQ.
	cl.send(3, bmcsim.NetFnApp<<2, bmcsim.CmdSetBMCGlobalEnables, bmcsim.EnableReceiveIRQ|bmcsim.EnableSEL)
	cl.recv()
	cl.waitCmd(OpAttnIRQ)
	cl.send(4, bmcsim.NetFnApp<<2, bmcsim.CmdGetMessageFlags)
	if f := cl.recv(); f.Data[3] != bmcsim.FlagPretimeout {
		t.Fatalf("flags %+v", f)
	}
	cl.send(5, bmcsim.NetFnApp<<2, bmcsim.CmdClearMessageFlags, bmcsim.FlagPretimeout)
	cl.recv()
	cl.waitCmd(OpNoAttn)
}

func TestServeReaccepts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := bmcsim.New(bmcsim.Config{Logger: quiet})
	srv := NewServer(b, Options{Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	for i := range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		cl := newClient(t, c)
		cl.send(byte(i), bmcsim.NetFnApp<<2, bmcsim.CmdGetDeviceID)
		if f := cl.recv(); f.Seq != byte(i) || f.Data[2] != 0 {
			t.Fatalf("connection %d: %+v", i, f)
		}
		c.Close()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if st := srv.Stats(); st.Connections != 2 || st.Answered != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestForwardChassis(t *testing.T) {
	clk := bmcsim.NewManualClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	b := bmcsim.New(bmcsim.Config{Clock: clk, Logger: quiet})
	srv, cl := startOpts(t, b, Options{Logger: quiet, ForwardChassis: true})
	// newClient announced CapIRQ|CapAttn only: no power capability yet.
	cl.write(Encode(nil, Frame{Kind: KindCommand, Data: []byte{OpCapabilities, CapIRQ | CapAttn | CapPower | CapReset}}))
	cl.send(1, bmcsim.NetFnChassis<<2, bmcsim.CmdChassisControl, byte(bmcsim.ChassisPowerDown))
	cl.recv()
	cl.waitCmd(OpPowerOff)
	// A watchdog expiry with hard reset resets the VM.
	cl.send(2, bmcsim.NetFnApp<<2, bmcsim.CmdSetWatchdogTimer, 0x04, 0x01, 0, 0, 10, 0)
	cl.send(3, bmcsim.NetFnApp<<2, bmcsim.CmdResetWatchdogTimer)
	cl.recv()
	cl.recv()
	clk.Advance(2 * time.Second)
	cl.waitCmd(OpReset)
	if st := srv.Stats(); st.Forwarded != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestInterruptEnableFollowsGlobalEnables checks that QEMU is told to
// enable the interface interrupt when the host sets an interrupt bit of the
// BMC Global Enables, and to disable it when the host clears them, as
// QEMU's own simulated BMC does; otherwise QEMU never raises the KCS IRQ.
func TestInterruptEnableFollowsGlobalEnables(t *testing.T) {
	b := bmcsim.New(bmcsim.Config{Logger: quiet})
	_, cl := start(t, b)
	cl.waitCmd(OpDisableIRQ) // the default enables have no interrupt bit
	steps := []struct {
		enables byte
		want    byte
	}{
		{bmcsim.EnableReceiveIRQ | bmcsim.EnableEventBuffer | bmcsim.EnableSEL, OpEnableIRQ},
		{bmcsim.EnableEventBuffer | bmcsim.EnableSEL, OpDisableIRQ},
		{bmcsim.EnableEventIRQ, OpEnableIRQ},
	}
	for i, st := range steps {
		cl.send(byte(i+1), bmcsim.NetFnApp<<2, bmcsim.CmdSetBMCGlobalEnables, st.enables)
		if f := cl.recv(); f.Data[2] != 0 {
			t.Fatalf("step %d: Set BMC Global Enables: %+v", i, f)
		}
		cl.waitCmd(st.want)
	}
}
