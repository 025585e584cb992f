package kcs_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/kcsbmc"
	"github.com/ipmi-cuse/ipmi-cuse/internal/hosttest"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
)

// slack is added to every duration bound: generous, for a loaded machine.
const slack = 3 * time.Second

func TestStatusString(t *testing.T) {
	for _, tc := range []struct {
		s    kcs.Status
		want string
	}{
		{0x00, "0x00 (IDLE)"},
		{0x83, "0x83 (WRITE|IBF|OBF)"},
		{0x41, "0x41 (READ|OBF)"},
		{0xCC, "0xcc (ERROR|SMS_ATN|C/D)"},
		{0xFF, "0xff (ERROR|IBF|OBF|SMS_ATN|C/D|OEM1|OEM2)"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.s.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestTimeoutIsDeadlineExceeded(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &kcs.OpError{Phase: kcs.PhaseRead, Err: kcs.ErrTimeout})
	if !errors.Is(err, kcs.ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("errors.Is(%v, ErrTimeout/os.ErrDeadlineExceeded) false", err)
	}
	if errors.Is(kcs.ErrProtocol, os.ErrDeadlineExceeded) {
		t.Fatal("ErrProtocol matches os.ErrDeadlineExceeded")
	}
}

func TestTransactSizes(t *testing.T) {
	h, b, _ := newPair(t, kcs.Config{})
	for _, n := range []int{0, 1, 2, 3, 7, 16, 31, 64, 100, 200, 268, 269} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			req, want := echoReq(n)
			resp, err := h.Transact(req, make([]byte, 0, kcs.MaxResponse), time.Time{})
			if err != nil {
				t.Fatalf("Transact: %v", err)
			}
			if !bytes.Equal(resp, want) {
				t.Fatalf("response\n% x\nwant\n% x", resp, want)
			}
		})
	}
	resp, err := h.Transact(getDeviceID, nil, time.Now().Add(time.Minute))
	if err != nil || !bytes.Equal(resp, deviceID) {
		t.Fatalf("Get Device ID: % x, %v", resp, err)
	}
	if st := h.Stats(); st.Recoveries != 0 || st.Failures != 0 {
		t.Errorf("stats after clean transactions: %+v", st)
	}
	if got := b.Stats().Handled; got != 13 {
		t.Errorf("BMC handled %d messages, want 13", got)
	}
}

func TestRequestSize(t *testing.T) {
	h, b, _ := newPair(t, kcs.Config{})
	for _, tc := range []struct {
		n    int
		want error
	}{
		{0, kcs.ErrRequestTooShort},
		{1, kcs.ErrRequestTooShort},
		{273, kcs.ErrRequestTooLong},
		{1000, kcs.ErrRequestTooLong},
	} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			_, err := h.Transact(make([]byte, tc.n), nil, time.Time{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Transact(%d bytes) = %v, want %v", tc.n, err, tc.want)
			}
		})
	}
	if b.Stats().Writes != 0 {
		t.Error("invalid requests touched the ports")
	}
	// The longest valid request works.
	req := make([]byte, kcs.MaxRequest)
	req[0], req[1] = 0x06<<2, 0x55
	resp, err := h.Transact(req, nil, time.Time{})
	if err != nil || !bytes.Equal(resp, []byte{0x07 << 2, 0x55, 0xC1}) {
		t.Fatalf("272-byte request: % x, %v", resp, err)
	}
}

func TestResponseLength(t *testing.T) {
	for _, tc := range []struct {
		total   int
		wantLen int
		wantErr error
	}{
		{272, 272, nil},
		{273, 272, kcs.ErrResponseTooLong},
		{300, 272, kcs.ErrResponseTooLong},
		{1000, 272, kcs.ErrResponseTooLong},
		{2, 2, kcs.ErrResponseTooShort},
		{1, 1, kcs.ErrResponseTooShort},
		{0, 0, kcs.ErrProtocol}, // IDLE without a byte: retried, then given up
	} {
		t.Run(fmt.Sprint(tc.total), func(t *testing.T) {
			h, _, _ := newPair(t, kcs.Config{})
			req := []byte{netfnOEM << 2, cmdLong, byte(tc.total >> 8), byte(tc.total)}
			resp, err := h.Transact(req, make([]byte, 0, kcs.MaxResponse), time.Time{})
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if len(resp) != tc.wantLen {
				t.Fatalf("len(resp) = %d, want %d", len(resp), tc.wantLen)
			}
			for i := 3; i < len(resp); i++ {
				if resp[i] != byte(i) {
					t.Fatalf("resp[%d] = %#x, want %#x", i, resp[i], byte(i))
				}
			}
			if tc.wantErr == kcs.ErrResponseTooShort && !errors.Is(err, kcs.ErrProtocol) {
				t.Error("ErrResponseTooShort does not match ErrProtocol")
			}
			mustWork(t, h)
		})
	}
}

func TestAttention(t *testing.T) {
	h, _, r := newPair(t, kcs.Config{})
	for _, want := range []bool{false, true, false} {
		r.atn.Store(want)
		got, err := h.Attention()
		if err != nil || got != want {
			t.Fatalf("Attention() = %v, %v; want %v", got, err, want)
		}
	}
	// SMS_ATN does not disturb a transaction.
	r.atn.Store(true)
	mustWork(t, h)
}

// fixedPort answers every status read with status and counts accesses.
type fixedPort struct {
	status   uint8
	err      error
	accesses int
}

func (p *fixedPort) ReadStatus() (uint8, error) { p.accesses++; return p.status, p.err }
func (p *fixedPort) ReadData() (uint8, error)   { p.accesses++; return 0, p.err }
func (p *fixedPort) WriteCommand(uint8) error   { p.accesses++; return p.err }
func (p *fixedPort) WriteData(b uint8) error    { p.accesses++; return p.err }

func TestNoInterfaceAndPortErrors(t *testing.T) {
	eio := errors.New("inb: I/O error")
	for _, tc := range []struct {
		name string
		port *fixedPort
		want error
	}{
		{"floating bus", &fixedPort{status: 0xFF}, kcs.ErrNoInterface},
		{"port error", &fixedPort{status: 0x00, err: eio}, eio},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := kcs.New(tc.port, kcs.Config{})
			_, d, err := timedTransact(h, getDeviceID, time.Time{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Transact = %v, want %v", err, tc.want)
			}
			if d > slack {
				t.Errorf("took %v", d)
			}
			if tc.port.accesses > 5 {
				t.Errorf("%d port accesses, want a prompt failure without retries", tc.port.accesses)
			}
			// The next call starts with recovery; it must fail as promptly.
			tc.port.accesses = 0
			if _, err := h.Transact(getDeviceID, nil, time.Time{}); !errors.Is(err, tc.want) {
				t.Fatalf("second Transact = %v, want %v", err, tc.want)
			}
			if tc.port.accesses > 5 {
				t.Errorf("second call: %d port accesses, want a prompt failure", tc.port.accesses)
			}
			if _, err := h.Attention(); !errors.Is(err, tc.want) {
				t.Errorf("Attention = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDeadlinePassed(t *testing.T) {
	h, b, _ := newPair(t, kcs.Config{})
	_, err := h.Transact(getDeviceID, nil, time.Now().Add(-time.Second))
	if !errors.Is(err, kcs.ErrTimeout) {
		t.Fatalf("Transact with a past deadline = %v, want ErrTimeout", err)
	}
	if b.Stats().Writes != 0 {
		t.Error("a transaction past its deadline touched the ports")
	}
	mustWork(t, h)
}

// outcome is what a fault case expects from the Transact under the fault.
type outcome int

const (
	wantOK        outcome = iota // the right response, no error
	wantTimeout                  // ErrTimeout
	wantBMCError                 // *BMCError with the code
	wantOKOrTyped                // the right response or a typed error
	wantAnything                 // any response (garbage data) or a typed error
)

func TestFaults(t *testing.T) {
	cfg := fastCfg()
	// patient is for a BMC that is slow but within the timeouts: its
	// latencies are wall-clock time, so fastCfg's 30 ms waits would turn a
	// test goroutine descheduled on a loaded machine into a timeout.
	patient := kcs.Config{WaitTimeout: 5 * time.Second, TransactionTimeout: 20 * time.Second, ErrorStatusWait: 20 * time.Millisecond}
	for _, tc := range []struct {
		name       string
		cfg        kcs.Config
		fault      func(b *kcsbmc.BMC)
		during     func(h *kcs.Host, b *kcsbmc.BMC) // runs alongside Transact, if set
		deadline   time.Duration                    // caller deadline from now; 0 = none
		want       outcome
		code       uint8
		recoveries bool // at least one recovery expected
	}{
		{name: "byte latency", cfg: patient, fault: func(b *kcsbmc.BMC) { b.SetByteLatency(100 * time.Microsecond) }, want: wantOK},
		{name: "message latency", cfg: patient, fault: func(b *kcsbmc.BMC) { b.SetMessageLatency(10 * time.Millisecond) }, want: wantOK},
		{name: "message latency beyond wait timeout", fault: func(b *kcsbmc.BMC) { b.SetMessageLatency(time.Hour) },
			want: wantTimeout, recoveries: true},
		{name: "message latency beyond caller deadline", fault: func(b *kcsbmc.BMC) { b.SetMessageLatency(time.Hour) },
			deadline: 20 * time.Millisecond, want: wantTimeout},
		{name: "silence until cleared", fault: func(b *kcsbmc.BMC) { b.Silence(time.Time{}) }, want: wantTimeout},
		// The silence ends once the host has started error recovery, not
		// at a wall-clock time a descheduled test could sleep through.
		{name: "short silence", cfg: kcs.Config{WaitTimeout: 20 * time.Millisecond, TransactionTimeout: 10 * time.Second,
			MaxErrorRetries: 1000},
			fault: func(b *kcsbmc.BMC) { b.Silence(time.Time{}) },
			during: func(h *kcs.Host, b *kcsbmc.BMC) {
				for end := time.Now().Add(10 * time.Second); h.Stats().Recoveries == 0 && time.Now().Before(end); {
					time.Sleep(time.Millisecond)
				}
				b.Unsilence()
			}, want: wantOK, recoveries: true},
		{name: "forced error", fault: func(b *kcsbmc.BMC) { b.ForceError(kcs.ErrCodeUnspecified) }, want: wantOK, recoveries: true},
		{name: "two failed writes", fault: func(b *kcsbmc.BMC) { b.FailWrites(kcs.ErrCodeIllegalControl, 2) }, want: wantOK, recoveries: true},
		{name: "failing writes", fault: func(b *kcsbmc.BMC) { b.FailWrites(kcs.ErrCodeLength, -1) },
			want: wantBMCError, code: kcs.ErrCodeLength, recoveries: true},
		{name: "garbage status 5 reads", fault: func(b *kcsbmc.BMC) {
			b.SetGarbage(kcsbmc.Garbage{Status: true, Count: 5, Seed: 1})
		}, want: wantOKOrTyped},
		{name: "garbage status window", fault: func(b *kcsbmc.BMC) {
			b.SetGarbage(kcsbmc.Garbage{Status: true, Until: time.Now().Add(50 * time.Millisecond), Seed: 2})
		}, want: wantOKOrTyped},
		{name: "garbage data", fault: func(b *kcsbmc.BMC) {
			b.SetGarbage(kcsbmc.Garbage{Data: true, Count: 3, Seed: 3})
		}, want: wantAnything},
		{name: "garbage both until cleared", fault: func(b *kcsbmc.BMC) {
			b.SetGarbage(kcsbmc.Garbage{Status: true, Data: true, Seed: 4})
		}, want: wantAnything},
		{name: "reset before request", fault: func(b *kcsbmc.BMC) { b.Reset() }, want: wantOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.cfg != (kcs.Config{}) {
				c = tc.cfg
			}
			h, b, _ := newPair(t, c)
			tc.fault(b)
			var dl time.Time
			bound := h.Config().TransactionTimeout
			if tc.deadline > 0 {
				dl = time.Now().Add(tc.deadline)
				bound = tc.deadline
			}
			req, want := echoReq(10)
			var during sync.WaitGroup
			if tc.during != nil {
				during.Go(func() { tc.during(h, b) })
			}
			resp, d, err := timedTransact(h, req, dl)
			during.Wait()
			if d > bound+slack {
				t.Errorf("Transact took %v, bound %v", d, bound)
			}
			if len(resp) > kcs.MaxResponse {
				t.Errorf("response of %d bytes", len(resp))
			}
			switch tc.want {
			case wantOK:
				if err != nil || !bytes.Equal(resp, want) {
					t.Errorf("got % x, %v; want % x", resp, err, want)
				}
			case wantTimeout:
				if !errors.Is(err, kcs.ErrTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("err = %v, want ErrTimeout", err)
				}
			case wantBMCError:
				var be *kcs.BMCError
				if !errors.As(err, &be) || be.Code != tc.code {
					t.Errorf("err = %v, want BMCError code %#x", err, tc.code)
				}
			case wantOKOrTyped:
				if err == nil && !bytes.Equal(resp, want) {
					t.Errorf("wrong response without error: % x", resp)
				}
				if err != nil && !typed(err) {
					t.Errorf("untyped error %v", err)
				}
			case wantAnything:
				if err != nil && !typed(err) {
					t.Errorf("untyped error %v", err)
				}
			}
			if st := h.Stats(); tc.recoveries && st.Recoveries == 0 {
				t.Errorf("no recovery recorded: %+v", st)
			}
			t.Logf("err=%v host=%+v bmc=%+v", err, h.Stats(), b.Stats())
			b.ClearFaults()
			mustWork(t, h)
		})
	}
}

// TestResetMidTransaction resets the BMC right after each host register
// write of a transaction. A reset in the write phase is recovered and the
// request retried; a reset in the read phase leaves the BMC idle, which
// KCS (like Linux) takes as the end of the response: the host returns a
// prefix of it (or ErrResponseTooShort), never a wrong byte.
func TestResetMidTransaction(t *testing.T) {
	req, want := echoReq(4)
	writePhase := 1 + len(req) + 1 // WRITE_START, bytes, WRITE_END
	readPhase := len(want)         // one READ per response byte
	for k := 1; k <= writePhase+readPhase; k++ {
		t.Run(fmt.Sprint("write", k), func(t *testing.T) {
			h, b, _ := newPair(t, fastCfg())
			b.ResetAfterWrites(k)
			resp, d, err := timedTransact(h, req, time.Time{})
			if d > h.Config().TransactionTimeout+slack {
				t.Errorf("took %v", d)
			}
			if b.Stats().Resets != 1 {
				t.Fatalf("%d resets, want 1", b.Stats().Resets)
			}
			if k <= writePhase {
				if err != nil || !bytes.Equal(resp, want) {
					t.Fatalf("reset in write phase: % x, %v; want % x", resp, err, want)
				}
				if h.Stats().Recoveries == 0 {
					t.Error("no recovery after a reset in the write phase")
				}
			} else {
				if err != nil && !errors.Is(err, kcs.ErrResponseTooShort) {
					t.Fatalf("reset in read phase: %v", err)
				}
				if !bytes.HasPrefix(want, resp) {
					t.Fatalf("reset in read phase: % x is not a prefix of % x", resp, want)
				}
			}
			mustWork(t, h)
		})
	}
}

// TestConcurrentFaults injects faults from another goroutine while the
// host transacts: every Transact returns once, within its bound, with the
// right response or a typed error (data garbage excluded here so the
// response can be checked).
func TestConcurrentFaults(t *testing.T) {
	h, b, _ := newPair(t, kcs.Config{WaitTimeout: 5 * time.Millisecond, TransactionTimeout: 50 * time.Millisecond,
		ErrorStatusWait: 5 * time.Millisecond})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		faults := []func(){
			func() { b.SetByteLatency(50 * time.Microsecond) },
			func() { b.SetMessageLatency(2 * time.Millisecond) },
			func() { b.Silence(time.Now().Add(3 * time.Millisecond)) },
			func() { b.ForceError(kcs.ErrCodeUnspecified) },
			func() { b.SetGarbage(kcsbmc.Garbage{Status: true, Count: 3, Seed: 9}) },
			func() { b.Reset() },
			func() { b.FailWrites(kcs.ErrCodeAborted, 1) },
			b.ClearFaults,
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			faults[i%len(faults)]()
		}
	})
	var ok, failed int
	for i := range 300 {
		req, want := echoReq(i % 20)
		resp, d, err := timedTransact(h, req, time.Time{})
		if d > 50*time.Millisecond+slack {
			t.Errorf("transaction %d took %v", i, d)
		}
		switch {
		case err == nil && bytes.Equal(resp, want):
			ok++
		case err == nil && bytes.HasPrefix(want, resp):
			ok++ // a reset in the read phase (see TestResetMidTransaction)
		case err == nil:
			t.Errorf("transaction %d: wrong response % x, want % x", i, resp, want)
		case !typed(err):
			t.Errorf("transaction %d: untyped error %v", i, err)
		default:
			failed++
		}
	}
	close(stop)
	wg.Wait()
	b.ClearFaults()
	mustWork(t, h)
	t.Logf("%d ok, %d typed errors; host %+v; bmc %+v", ok, failed, h.Stats(), b.Stats())
	if ok == 0 {
		t.Error("no transaction succeeded under intermittent faults")
	}
}

func TestZeroAllocs(t *testing.T) {
	h, _, _ := newPair(t, kcs.Config{})
	resp := make([]byte, 0, kcs.MaxResponse)
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if resp, err = h.Transact(getDeviceID, resp, time.Time{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per Transact, want 0", allocs)
	}
}

// threadCheckPort is a simulated BMC port whose access right belongs to the
// OS thread it was bound on, like in/out after iopl (hosttest.ThreadCheck).
type threadCheckPort struct {
	*kcsbmc.BMC
	hosttest.ThreadCheck
}

func (p *threadCheckPort) ReadStatus() (uint8, error) { p.Check(); return p.BMC.ReadStatus() }
func (p *threadCheckPort) ReadData() (uint8, error)   { p.Check(); return p.BMC.ReadData() }
func (p *threadCheckPort) WriteData(b uint8) error    { p.Check(); return p.BMC.WriteData(b) }
func (p *threadCheckPort) WriteCommand(c uint8) error { p.Check(); return p.BMC.WriteCommand(c) }

// TestHostBindsThread checks that a port needing a per-thread access right
// (kcs.ThreadBinder) is bound once and then used only from that thread, even
// while the runtime is busy moving goroutines between threads.
func TestHostBindsThread(t *testing.T) {
	port := &threadCheckPort{BMC: kcsbmc.New(&fakeResponder{})}
	host := kcs.New(port, kcs.Config{})
	hosttest.Churn(t, 8) // so an unlocked goroutine would change threads
	// The Host locks the calling goroutine to its thread for good.
	resp := make([]byte, 0, kcs.MaxResponse)
	err := hosttest.OnOneGoroutine(200, func() error {
		var err error
		if resp, err = host.Transact([]byte{0x06 << 2, 0x01}, resp, time.Now().Add(5*time.Second)); err != nil {
			return err
		}
		_, err = host.Attention()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := port.Binds(); n != 1 {
		t.Errorf("BindThread called %d times, want 1", n)
	}
	if n := port.WrongThread(); n != 0 {
		t.Errorf("%d port accesses from a thread other than the bound one", n)
	}
}
