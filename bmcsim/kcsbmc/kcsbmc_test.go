package kcsbmc_test

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/kcsbmc"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
)

// echo answers every request with its netfn|1, cmd, CC 0 and its data.
type echo struct {
	atn     atomic.Bool
	handled atomic.Int64
}

func (e *echo) Handle(req, resp []byte) []byte {
	e.handled.Add(1)
	return append(append(resp, (req[0]>>2|1)<<2|req[0]&3, req[1], 0), req[2:]...)
}
func (e *echo) Attention() bool { return e.atn.Load() }

// regs drives a BMC at register level and fails the test on surprises.
type regs struct {
	t *testing.T
	b *kcsbmc.BMC
}

func (r regs) status() kcs.Status {
	v, err := r.b.ReadStatus()
	if err != nil {
		r.t.Fatal(err)
	}
	return kcs.Status(v)
}

func (r regs) expect(what string, want kcs.Status, mask kcs.Status) {
	r.t.Helper()
	if s := r.status(); s&mask != want {
		r.t.Fatalf("%s: status %v, want %v under mask %#x", what, s, want, uint8(mask))
	}
}

func (r regs) cmd(c uint8)  { r.b.WriteCommand(c) }
func (r regs) data(v uint8) { r.b.WriteData(v) }
func (r regs) read() uint8 {
	v, _ := r.b.ReadData()
	return v
}

const stateOBFIBF = kcs.StateMask | kcs.OBF | kcs.IBF

func state(st kcs.State) kcs.Status { return kcs.Status(st) << 6 }

// TestWriteReadSequence walks the IPMI v2.0 figure 9-6/9-7 flow by hand.
func TestWriteReadSequence(t *testing.T) {
	e := &echo{}
	r := regs{t, kcsbmc.New(e)}
	r.expect("reset", state(kcs.StateIdle), stateOBFIBF)
	r.cmd(kcs.CmdWriteStart)
	r.expect("after WRITE_START", state(kcs.StateWrite)|kcs.CD, stateOBFIBF|kcs.CD)
	req := []byte{0x30 << 2, 0x01, 0xAA, 0xBB}
	for _, v := range req[:len(req)-1] {
		r.data(v)
		r.expect("write", state(kcs.StateWrite), stateOBFIBF|kcs.CD)
	}
	r.cmd(kcs.CmdWriteEnd)
	r.expect("after WRITE_END", state(kcs.StateWrite)|kcs.CD, stateOBFIBF|kcs.CD)
	r.data(req[len(req)-1])
	var got []byte
	for range 10 {
		s := r.status()
		if s.State() == kcs.StateIdle {
			if s&kcs.OBF == 0 {
				t.Fatal("no dummy byte at the end of the read phase")
			}
			r.read()
			break
		}
		if s&^kcs.CD != state(kcs.StateRead)|kcs.OBF {
			t.Fatalf("read phase: status %v", s)
		}
		got = append(got, r.read())
		r.expect("after data read", state(kcs.StateRead), stateOBFIBF)
		r.data(kcs.CmdRead)
	}
	want := []byte{0x31 << 2, 0x01, 0x00, 0xAA, 0xBB}
	if !bytes.Equal(got, want) {
		t.Fatalf("response % x, want % x", got, want)
	}
	if st := r.b.Stats(); st.Handled != 1 || e.handled.Load() != 1 {
		t.Fatalf("handled %d/%d, want 1", st.Handled, e.handled.Load())
	}
}

// abort runs GET_STATUS/ABORT by hand and returns the error status code.
func abort(r regs) uint8 {
	r.t.Helper()
	r.cmd(kcs.CmdGetStatusAbort)
	if s := r.status(); s&kcs.OBF != 0 {
		r.read()
	}
	r.data(0x00)
	r.expect("abort: status byte", state(kcs.StateRead)|kcs.OBF, stateOBFIBF)
	code := r.read()
	r.data(kcs.CmdRead)
	r.expect("abort: end", state(kcs.StateIdle)|kcs.OBF, stateOBFIBF)
	r.read()
	return code
}

func TestErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		do     func(r regs)
		errSt  bool // ERROR state expected before the abort
		wantCd uint8
	}{
		{"idle", func(regs) {}, false, kcs.ErrCodeNone},
		{"abort mid-write", func(r regs) { r.cmd(kcs.CmdWriteStart); r.data(0x18) }, false, kcs.ErrCodeAborted},
		{"abort mid-read", func(r regs) {
			r.cmd(kcs.CmdWriteStart)
			r.data(0x18)
			r.cmd(kcs.CmdWriteEnd)
			r.data(0x01)
		}, false, kcs.ErrCodeAborted},
		{"illegal control code", func(r regs) { r.cmd(0x77) }, true, kcs.ErrCodeIllegalControl},
		{"WRITE_END when idle", func(r regs) { r.cmd(kcs.CmdWriteEnd) }, true, kcs.ErrCodeIllegalControl},
		{"data when idle", func(r regs) { r.data(0x18) }, true, kcs.ErrCodeUnspecified},
		{"not READ in read phase", func(r regs) {
			r.cmd(kcs.CmdWriteStart)
			r.data(0x18)
			r.cmd(kcs.CmdWriteEnd)
			r.data(0x01)
			r.read()
			r.data(0x42)
		}, true, kcs.ErrCodeIllegalControl},
		{"overrun", func(r regs) {
			r.cmd(kcs.CmdWriteStart)
			for range kcsbmc.MaxRequest + 1 {
				r.data(0)
			}
		}, true, kcs.ErrCodeLength},
		{"forced", func(r regs) { r.b.ForceError(0x33) }, true, 0x33},
		{"failed write start", func(r regs) { r.b.FailWrites(0x44, 1); r.cmd(kcs.CmdWriteStart) }, true, 0x44},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := regs{t, kcsbmc.New(&echo{})}
			tc.do(r)
			if got := r.status().State() == kcs.StateError; got != tc.errSt {
				t.Fatalf("ERROR state = %v, want %v (status %v)", got, tc.errSt, r.status())
			}
			if code := abort(r); code != tc.wantCd {
				t.Fatalf("error status code %#x, want %#x", code, tc.wantCd)
			}
			if code := abort(r); code != kcs.ErrCodeNone {
				t.Fatalf("second abort: code %#x, want 0", code)
			}
		})
	}
}

func TestAttentionMirrorsResponder(t *testing.T) {
	e := &echo{}
	r := regs{t, kcsbmc.New(e)}
	r.expect("no attention", 0, kcs.SMSAtn)
	e.atn.Store(true)
	r.expect("attention", kcs.SMSAtn, kcs.SMSAtn)
}

func TestLatencyAndSilenceHoldIBF(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(b *kcsbmc.BMC)
	}{
		{"byte latency", func(b *kcsbmc.BMC) { b.SetByteLatency(time.Hour) }},
		{"silence until cleared", func(b *kcsbmc.BMC) { b.Silence(time.Time{}) }},
		{"silence for an hour", func(b *kcsbmc.BMC) { b.Silence(time.Now().Add(time.Hour)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := regs{t, kcsbmc.New(&echo{})}
			tc.fault(r.b)
			r.cmd(kcs.CmdWriteStart)
			for range 3 {
				r.expect("held", state(kcs.StateIdle)|kcs.IBF, stateOBFIBF)
			}
			r.b.ClearFaults()
			r.expect("taken", state(kcs.StateWrite), stateOBFIBF)
		})
	}
}

func TestMessageLatencyHoldsOBF(t *testing.T) {
	r := regs{t, kcsbmc.New(&echo{})}
	r.b.SetMessageLatency(time.Hour)
	r.cmd(kcs.CmdWriteStart)
	r.data(0x18)
	r.cmd(kcs.CmdWriteEnd)
	r.data(0x01)
	r.expect("processing", state(kcs.StateRead), stateOBFIBF)
	r.b.ClearFaults()
	r.expect("answered", state(kcs.StateRead)|kcs.OBF, stateOBFIBF)
	if v := r.read(); v != 0x1c {
		t.Fatalf("first response byte %#x, want 0x1c", v)
	}
}

func TestGarbageCount(t *testing.T) {
	r := regs{t, kcsbmc.New(&echo{})}
	r.b.SetGarbage(kcsbmc.Garbage{Status: true, Count: 50, Seed: 7})
	var nonzero int
	for range 50 {
		if r.status() != 0 {
			nonzero++
		}
	}
	if nonzero < 40 {
		t.Fatalf("only %d of 50 garbled status reads were non-zero", nonzero)
	}
	for range 5 {
		r.expect("after the garbage", 0, 0xFF)
	}
}

func TestGarbageCountAndWindow(t *testing.T) {
	r := regs{t, kcsbmc.New(&echo{})}
	// Count ends the fault even though the window is still open.
	r.b.SetGarbage(kcsbmc.Garbage{Status: true, Count: 3, Until: time.Now().Add(time.Hour), Seed: 1})
	for range 3 {
		r.status()
	}
	r.expect("after 3 garbled reads", 0, 0xFF)
	// Data garbage leaves status reads alone.
	r.b.SetGarbage(kcsbmc.Garbage{Data: true, Seed: 1})
	r.expect("status during data garbage", 0, 0xFF)
}

func TestResetAfterWrites(t *testing.T) {
	r := regs{t, kcsbmc.New(&echo{})}
	r.b.ResetAfterWrites(3)
	r.cmd(kcs.CmdWriteStart)
	r.data(0x18)
	r.expect("before the reset", state(kcs.StateWrite), stateOBFIBF)
	r.data(0x01)
	r.expect("after the reset", state(kcs.StateIdle), stateOBFIBF)
	if st := r.b.Stats(); st.Resets != 1 || st.Writes != 3 {
		t.Fatalf("stats %+v, want 1 reset after 3 writes", st)
	}
}

// TestHostAgainstBMCConcurrentFaults drives the BMC with a kcs.Host while
// other goroutines inject faults, for the race detector.
func TestHostAgainstBMCConcurrentFaults(t *testing.T) {
	b := kcsbmc.New(&echo{})
	h := kcs.New(b, kcs.Config{WaitTimeout: 2 * time.Millisecond, TransactionTimeout: 20 * time.Millisecond,
		ErrorStatusWait: time.Millisecond})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				switch (i + g) % 5 {
				case 0:
					b.Reset()
				case 1:
					b.ForceError(0x01)
				case 2:
					b.SetGarbage(kcsbmc.Garbage{Status: true, Data: true, Count: 2, Seed: uint64(i)})
				case 3:
					b.Silence(time.Now().Add(100 * time.Microsecond))
				case 4:
					b.ClearFaults()
				}
				time.Sleep(200 * time.Microsecond)
			}
		})
	}
	for i := range 200 {
		req := []byte{0x18, byte(i)}
		if _, err := h.Transact(req, nil, time.Time{}); err != nil {
			var op *kcs.OpError
			if !isOp(err, &op) {
				t.Fatalf("untyped error %v", err)
			}
		}
	}
	close(stop)
	wg.Wait()
	b.ClearFaults()
	resp, err := h.Transact([]byte{0x18, 0x01, 0x42}, nil, time.Time{})
	if err != nil || fmt.Sprintf("% x", resp) != "1c 01 00 42" {
		t.Fatalf("after the faults: % x, %v", resp, err)
	}
}
