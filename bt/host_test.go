package bt_test

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/btbmc"
	"github.com/ipmi-cuse/ipmi-cuse/bt"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var getDeviceID = []byte{0x06 << 2, 0x01}

func newPair(t testing.TB, cfg btbmc.Config, hc bt.Config) (*bt.Host, *btbmc.BMC, *bmcsim.BMC) {
	t.Helper()
	sim := bmcsim.New(bmcsim.Config{Logger: quiet})
	b := btbmc.New(sim, cfg)
	if hc.Logger == nil {
		hc.Logger = quiet
	}
	h := bt.New(b, hc)
	if _, err := h.Init(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return h, b, sim
}

func TestTransactGetDeviceID(t *testing.T) {
	h, b, _ := newPair(t, btbmc.Config{InputSize: 64, OutputSize: 100, ResponseTime: 3 * time.Second, Retries: 1}, bt.Config{})
	caps := h.Caps()
	want := bt.Caps{Known: true, Outstanding: 1, InputSize: 64, OutputSize: 100, ResponseTime: 3 * time.Second, Retries: 1}
	if caps != want {
		t.Errorf("Caps = %+v, want %+v", caps, want)
	}
	for i := 0; i < 300; i++ { // the sequence number wraps
		resp, err := h.Transact(getDeviceID, make([]byte, 0, 300), time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if len(resp) < 3 || resp[0] != 0x07<<2 || resp[1] != 0x01 || resp[2] != 0 {
			t.Fatalf("request %d: response % x", i, resp)
		}
	}
	if s := b.Stats(); s.Handled != 300 || s.Caps != 1 || s.Ignored != 0 {
		t.Errorf("BMC stats %+v", s)
	}
	if s := h.Stats(); s.Transactions != 301 || s.Failures != 0 || s.Retries != 0 {
		t.Errorf("host stats %+v", s)
	}
}

func TestRequestLength(t *testing.T) {
	h, b, _ := newPair(t, btbmc.Config{InputSize: 40}, bt.Config{})
	for _, tc := range []struct {
		n    int
		want error
		cc   uint8
	}{
		{n: 1, want: bt.ErrRequestTooShort, cc: 0xC7},
		{n: 38}, // + length byte + seq = 40
		{n: 39, want: bt.ErrRequestTooLong, cc: 0xC8},
		{n: 272, want: bt.ErrRequestTooLong, cc: 0xC8},
	} {
		msg := make([]byte, tc.n)
		msg[0] = 0x06 << 2
		if tc.n > 1 {
			msg[1] = 0x01
		}
		before := b.Stats().Writes
		resp, err := h.Transact(msg, nil, time.Now().Add(5*time.Second))
		if !errors.Is(err, tc.want) {
			t.Errorf("%d bytes: err %v, want %v", tc.n, err, tc.want)
			continue
		}
		if tc.want == nil {
			if len(resp) < 3 || resp[2] != 0xC7 { // Get Device ID with data: bad length
				t.Errorf("%d bytes: response % x", tc.n, resp)
			}
			continue
		}
		var cc interface{ CompletionCode() uint8 }
		if !errors.As(err, &cc) || cc.CompletionCode() != tc.cc {
			t.Errorf("%d bytes: completion code of %v, want %#x", tc.n, err, tc.cc)
		}
		if b.Stats().Writes != before {
			t.Errorf("%d bytes: the refused request touched the BMC", tc.n)
		}
	}
}

func TestStaleResponseDiscarded(t *testing.T) {
	h, b, _ := newPair(t, btbmc.Config{}, bt.Config{})
	b.StaleResponses(2)
	for i := 0; i < 3; i++ {
		resp, err := h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second))
		if err != nil || len(resp) < 3 || resp[2] != 0 {
			t.Fatalf("request %d: % x, %v", i, resp, err)
		}
	}
	if s := h.Stats(); s.Stale != 2 || s.Failures != 0 {
		t.Errorf("stats %+v, want 2 stale responses discarded and no failure", s)
	}
}

func TestBadLengthRetried(t *testing.T) {
	h, b, _ := newPair(t, btbmc.Config{Retries: 2}, bt.Config{})
	b.BadLength(1)
	resp, err := h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second))
	if err != nil || len(resp) < 3 || resp[2] != 0 {
		t.Fatalf("% x, %v", resp, err)
	}
	if s := h.Stats(); s.Retries != 1 {
		t.Errorf("retries %d, want 1", s.Retries)
	}
	b.BadLength(10)
	_, err = h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second))
	if !errors.Is(err, bt.ErrProtocol) {
		t.Fatalf("with every response malformed: %v, want ErrProtocol", err)
	}
	var op *bt.OpError
	if !errors.As(err, &op) || op.Attempts != 3 {
		t.Errorf("error %v: want 3 attempts", err)
	}
}

// A BMC that takes a request and never answers keeps B_BUSY: the host
// gives up after the response time with ErrBusy (also a timeout), then
// refuses at once without writing until B_BUSY clears, as the kernel's
// LONG_BUSY state does.
func TestSilentBMCLongBusy(t *testing.T) {
	h, b, _ := newPair(t, btbmc.Config{Retries: 1}, bt.Config{ResponseTimeout: 30 * time.Millisecond})
	b.Silence()
	start := time.Now()
	_, err := h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second))
	el := time.Since(start)
	if !errors.Is(err, bt.ErrBusy) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err %v, want ErrBusy and a timeout", err)
	}
	if el < 60*time.Millisecond {
		t.Errorf("gave up after %v, before two attempts of 30ms", el)
	}
	var op *bt.OpError
	if !errors.As(err, &op) || op.Attempts != 2 || op.Ctrl&bt.BBusy == 0 {
		t.Errorf("error %+v: want 2 attempts and B_BUSY seen", op)
	}
	writes := b.Stats().Writes
	_, err = h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second))
	if !errors.Is(err, bt.ErrBusy) || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("while busy: %v, want ErrBusy and no timeout", err)
	}
	if b.Stats().Writes != writes || h.Stats().BusyRefused != 1 {
		t.Errorf("the refusal wrote to the BMC or was not counted: %+v", h.Stats())
	}
	b.ClearFaults()
	resp, err := h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second))
	if err != nil || resp[2] != 0 {
		t.Fatalf("after B_BUSY cleared: % x, %v", resp, err)
	}
}

// A slow BMC within the response time is just slow; past the deadline the
// transaction ends with a timeout, bounded by the deadline.
func TestLatencyAndDeadline(t *testing.T) {
	// The response time is far beyond the deadline, so the bound below
	// tells the two apart however slowly a loaded machine runs the test.
	h, b, _ := newPair(t, btbmc.Config{}, bt.Config{ResponseTimeout: time.Minute, Retries: -1})
	b.SetLatency(20 * time.Millisecond)
	if _, err := h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	b.SetLatency(time.Hour)
	start := time.Now()
	_, err := h.Transact(getDeviceID, nil, time.Now().Add(50*time.Millisecond))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err %v, want a timeout", err)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Errorf("took %v: the 50ms deadline did not end it before the 1 min response time", el)
	}
}

func TestGarbageBounded(t *testing.T) {
	for _, g := range []btbmc.Garbage{{Ctrl: true, Seed: 1}, {Buf: true, Seed: 2}, {Ctrl: true, Buf: true, Seed: 3}, {Ctrl: true, Count: 5, Seed: 4}} {
		h, b, _ := newPair(t, btbmc.Config{}, bt.Config{ResponseTimeout: 20 * time.Millisecond, TransactionTimeout: 200 * time.Millisecond})
		b.SetGarbage(g)
		start := time.Now()
		for i := 0; i < 5; i++ {
			resp, err := h.Transact(getDeviceID, nil, time.Time{})
			if err == nil && len(resp) < 3 {
				t.Errorf("%+v: success with % x", g, resp)
			}
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("%+v: 5 transactions took %v, past 5 transaction timeouts of 200ms", g, el)
		}
		b.ClearFaults()
		// The interface recovers once the garbage stops (a stale
		// response may be drained first).
		var err error
		for i := 0; i < 3; i++ {
			if _, err = h.Transact(getDeviceID, nil, time.Now().Add(time.Second)); err == nil {
				break
			}
		}
		if err != nil {
			t.Errorf("%+v: after the garbage stopped: %v", g, err)
		}
	}
}

func TestAttention(t *testing.T) {
	h, _, sim := newPair(t, btbmc.Config{}, bt.Config{})
	if att, err := h.Attention(); err != nil || att {
		t.Fatalf("idle: %v, %v", att, err)
	}
	// Add an event to the BMC's event buffer: Platform Event with
	// Global Enables' event buffer on.
	for _, m := range [][]byte{{0x06 << 2, 0x2E, 0x0F}, {0x04 << 2, 0x02, 0x04, 0x20, 0x00, 0x01, 0x6F, 0x00, 0xFF, 0xFF}} {
		if resp, err := h.Transact(m, nil, time.Now().Add(time.Second)); err != nil || resp[2] != 0 {
			t.Fatalf("% x: % x, %v", m, resp, err)
		}
	}
	if !sim.Attention() {
		t.Skip("the simulated BMC raises no attention for a platform event with these enables")
	}
	if att, err := h.Attention(); err != nil || !att {
		t.Fatalf("after an event: %v, %v; want attention", att, err)
	}
	if att, _ := h.Attention(); att {
		t.Error("SMS_ATN not cleared by the host")
	}
}

// deadPort reads 0xFF everywhere: nothing at the address.
type deadPort struct{ writes int }

func (p *deadPort) ReadCtrl() (uint8, error)    { return 0xFF, nil }
func (p *deadPort) WriteCtrl(uint8) error       { p.writes++; return nil }
func (p *deadPort) ReadBuf() (uint8, error)     { return 0xFF, nil }
func (p *deadPort) WriteBuf(uint8) error        { p.writes++; return nil }
func (p *deadPort) ReadIntMask() (uint8, error) { return 0xFF, nil }
func (p *deadPort) WriteIntMask(uint8) error    { p.writes++; return nil }

func TestNoInterface(t *testing.T) {
	h := bt.New(&deadPort{}, bt.Config{Logger: quiet})
	start := time.Now()
	if _, err := h.Init(time.Now().Add(5 * time.Second)); !errors.Is(err, bt.ErrNoInterface) {
		t.Fatalf("Init: %v, want ErrNoInterface", err)
	}
	if _, err := h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second)); !errors.Is(err, bt.ErrNoInterface) {
		t.Fatalf("Transact: %v, want ErrNoInterface", err)
	}
	if _, err := h.Attention(); !errors.Is(err, bt.ErrNoInterface) {
		t.Fatalf("Attention: %v, want ErrNoInterface", err)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Errorf("took %v: a missing interface must not cost the deadline", el)
	}
}

// errPort fails every access.
type errPort struct{ deadPort }

var errIO = errors.New("I/O error")

func (errPort) ReadCtrl() (uint8, error) { return 0, errIO }

func TestPortError(t *testing.T) {
	h := bt.New(&errPort{}, bt.Config{Logger: quiet})
	if _, err := h.Transact(getDeviceID, nil, time.Now().Add(time.Second)); !errors.Is(err, errIO) {
		t.Fatalf("err %v, want the port's error", err)
	}
}

func TestCtrlString(t *testing.T) {
	for v, want := range map[uint8]string{0: "[]", bt.BBusy | bt.B2HAtn: "[B2H_ATN B_BUSY]", 0xFF: "[CLR_WR CLR_RD H2B_ATN B2H_ATN SMS_ATN OEM0 H_BUSY B_BUSY]"} {
		if got := bt.CtrlString(v); got != want {
			t.Errorf("CtrlString(%#x) = %q, want %q", v, got, want)
		}
	}
}

func TestParseCaps(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want bt.Caps
		err  bool
	}{
		{in: []byte{0x1C, 0x36, 0, 1, 64, 64, 5, 2}, want: bt.Caps{Known: true, Outstanding: 1, InputSize: 64, OutputSize: 64, ResponseTime: 5 * time.Second, Retries: 2}},
		{in: []byte{0x1C, 0x36, 0xC1}, err: true},
		{in: []byte{0x1C, 0x36, 0, 1}, err: true},
		{in: nil, err: true},
	} {
		got, err := bt.ParseCaps(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseCaps(% x) = %+v, %v", tc.in, got, err)
		}
	}
}

var _ = bytes.Equal
