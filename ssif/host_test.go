package ssif_test

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/ssifbmc"
	"github.com/ipmi-cuse/ipmi-cuse/ssif"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var getDeviceID = []byte{0x06 << 2, 0x01}

// fast are short delays so the retry rules run quickly in tests.
func fast(c ssif.Config) ssif.Config {
	if c.WriteRetryDelay == 0 {
		c.WriteRetryDelay = time.Millisecond
	}
	if c.ReadRetryDelay == 0 {
		c.ReadRetryDelay = time.Millisecond
	}
	if c.FirstReadDelay == 0 {
		c.FirstReadDelay = -1
	}
	c.Logger = quiet
	return c
}

func newPair(t *testing.T, cfg ssifbmc.Config, hc ssif.Config) (*ssif.Host, *ssifbmc.BMC) {
	t.Helper()
	b := ssifbmc.New(bmcsim.New(bmcsim.Config{Logger: quiet}), cfg)
	h := ssif.New(b, fast(hc))
	if _, err := h.Init(time.Now().Add(5 * time.Second)); err != nil && !cfg.NoCaps {
		t.Fatalf("Init: %v", err)
	}
	return h, b
}

// sdrReserve + Get SDR reads give long responses; Get Device ID a short one.
// A long request: Write FRU Data (netfn storage, 0x12) with 100 bytes.
func writeFRU(n int) []byte {
	m := []byte{0x0A << 2, 0x12, 0x00, 0x00, 0x00}
	for i := 0; i < n; i++ {
		m = append(m, byte(i))
	}
	return m
}

func TestCaps(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ssifbmc.Config
		want ssif.Caps
	}{
		{name: "qemu-like", cfg: ssifbmc.Config{}, want: ssif.Caps{Known: true, Multi: ssif.MultiMiddle, MaxWrite: 255, MaxRead: 255}},
		{name: "single-part", cfg: ssifbmc.Config{NoMulti: true}, want: ssif.Caps{Known: true, Multi: ssif.MultiNone, MaxWrite: 32, MaxRead: 32}},
		{name: "start-end", cfg: ssifbmc.Config{Multi: ssif.MultiStartEnd}, want: ssif.Caps{Known: true, Multi: ssif.MultiStartEnd, MaxWrite: 64, MaxRead: 64}},
		{name: "no caps", cfg: ssifbmc.Config{NoCaps: true}, want: ssif.Caps{MaxWrite: 32, MaxRead: 32}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := newPair(t, tc.cfg, ssif.Config{})
			if got := h.Caps(); got != tc.want {
				t.Errorf("Caps = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSingleAndMultiPart(t *testing.T) {
	h, b := newPair(t, ssifbmc.Config{}, ssif.Config{})
	resp, err := h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second))
	if err != nil || len(resp) < 3 || resp[0] != 0x07<<2 || resp[2] != 0 {
		t.Fatalf("Get Device ID: % x, %v", resp, err)
	}
	// Writes of 33..255 bytes go in parts; Write FRU Data answers with the
	// count written.
	for _, n := range []int{27, 28, 59, 60, 61, 91, 92, 250} {
		msg := writeFRU(n)
		resp, err := h.Transact(msg, nil, time.Now().Add(5*time.Second))
		if err != nil || len(resp) < 3 {
			t.Fatalf("%d-byte request: % x, %v", len(msg), resp, err)
		}
	}
	// Read FRU Data back (at most 64 bytes a read): multi-part reads.
	for _, n := range []byte{1, 27, 28, 29, 58, 59, 60, 64} {
		resp, err := h.Transact([]byte{0x0A << 2, 0x11, 0x00, 0x00, 0x00, n}, nil, time.Now().Add(5*time.Second))
		if err != nil {
			t.Fatalf("read %d: %v", n, err)
		}
		if resp[2] != 0 || len(resp) != 4+int(n) {
			t.Fatalf("read %d: %d bytes back: % x", n, len(resp), resp)
		}
		for i := 0; i < int(n); i++ {
			if resp[4+i] != byte(i) {
				t.Fatalf("read %d: byte %d = %#x, want %#x", n, i, resp[4+i], byte(i))
			}
		}
	}
	s, bs := h.Stats(), b.Stats()
	if s.WriteParts == 0 || s.ReadParts == 0 || bs.MultiReads == 0 || bs.BadWrites != 0 {
		t.Errorf("host %+v, BMC %+v: want multi-part writes and reads, no bad writes", s, bs)
	}
}

func TestRequestTooLong(t *testing.T) {
	h, b := newPair(t, ssifbmc.Config{NoMulti: true}, ssif.Config{})
	writes := b.Stats().Writes
	_, err := h.Transact(writeFRU(30), nil, time.Now().Add(time.Second))
	var cc interface{ CompletionCode() uint8 }
	if !errors.Is(err, ssif.ErrRequestTooLong) || !errors.As(err, &cc) || cc.CompletionCode() != 0xFF {
		t.Fatalf("35-byte request to a single-part BMC: %v, want ErrRequestTooLong with cc 0xFF", err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("a refused request counts as a timeout")
	}
	if b.Stats().Writes != writes {
		t.Error("the refused request reached the bus")
	}
}

// A BMC that NAKs while busy: reads retry until the response is ready.
func TestSlowBMCReadRetries(t *testing.T) {
	h, b := newPair(t, ssifbmc.Config{}, ssif.Config{ReadRetryDelay: 2 * time.Millisecond})
	b.SetLatency(30 * time.Millisecond)
	resp, err := h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second))
	if err != nil || resp[2] != 0 {
		t.Fatalf("% x, %v", resp, err)
	}
	if s := h.Stats(); s.ReadRetries == 0 {
		t.Errorf("no read retries against a BMC 30ms slow: %+v", s)
	}
}

func TestNAKStorms(t *testing.T) {
	t.Run("writes then recover", func(t *testing.T) {
		h, b := newPair(t, ssifbmc.Config{}, ssif.Config{WriteRetries: 5})
		b.NAKWrites(3)
		if resp, err := h.Transact(writeFRU(100), nil, time.Now().Add(5*time.Second)); err != nil || resp[2] != 0 {
			t.Fatalf("% x, %v", resp, err)
		}
		if s := h.Stats(); s.WriteRetries != 3 {
			t.Errorf("write retries %d, want 3", s.WriteRetries)
		}
	})
	t.Run("writes exhaust retries", func(t *testing.T) {
		h, b := newPair(t, ssifbmc.Config{}, ssif.Config{WriteRetries: 2})
		b.NAKWrites(10)
		_, err := h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second))
		if !errors.Is(err, ssif.ErrWriteNAK) || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%v, want ErrWriteNAK (a timeout)", err)
		}
		var op *ssif.OpError
		if !errors.As(err, &op) || op.Tries != 3 {
			t.Errorf("%v: want 3 tries", err)
		}
	})
	t.Run("reads exhaust retries", func(t *testing.T) {
		h, b := newPair(t, ssifbmc.Config{}, ssif.Config{ReadRetries: 4})
		b.NAKReads(100)
		_, err := h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second))
		if !errors.Is(err, ssif.ErrNoResponse) || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%v, want ErrNoResponse (a timeout)", err)
		}
		var cc interface{ CompletionCode() uint8 }
		if !errors.As(err, &cc) || cc.CompletionCode() != 0xFF {
			t.Errorf("%v: want completion code 0xFF, as ipmi_ssif's hosed message", err)
		}
	})
	t.Run("storm bounded by the deadline", func(t *testing.T) {
		h, b := newPair(t, ssifbmc.Config{}, ssif.Config{ReadRetryDelay: 5 * time.Millisecond, WriteRetryDelay: 5 * time.Millisecond})
		b.Silence()
		start := time.Now()
		_, err := h.Transact(getDeviceID, nil, time.Now().Add(60*time.Millisecond))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%v, want a timeout", err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("took %v with a 60ms deadline", el)
		}
		b.ClearFaults()
		if _, err := h.Transact(getDeviceID, nil, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("after the storm: %v", err)
		}
	})
}

func TestMalformedMultiPartReads(t *testing.T) {
	long := []byte{0x0A << 2, 0x11, 0x00, 0x00, 0x00, 64} // Read FRU Data, 64 bytes: a 68-byte response
	for _, tc := range []struct {
		name     string
		g        ssifbmc.Garbage
		wantErr  error
		restarts bool
	}{
		{name: "short middle block once", g: ssifbmc.Garbage{ShortMiddle: 1}, restarts: true},
		{name: "wrong block number once", g: ssifbmc.Garbage{WrongBlock: 1}, restarts: true},
		{name: "short middle block always", g: ssifbmc.Garbage{ShortMiddle: 1000}, wantErr: ssif.ErrProtocol},
		{name: "overlong", g: ssifbmc.Garbage{Overlong: 1}, wantErr: ssif.ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, b := newPair(t, ssifbmc.Config{}, ssif.Config{ReadRetries: 5})
			if _, err := h.Transact(writeFRU(100), nil, time.Now().Add(5*time.Second)); err != nil {
				t.Fatal(err)
			}
			b.SetGarbage(tc.g)
			resp, err := h.Transact(long, nil, time.Now().Add(5*time.Second))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr != nil) != (err != nil) {
				t.Fatalf("% x, %v; want %v", resp, err, tc.wantErr)
			}
			if tc.wantErr == nil && len(resp) != 68 {
				t.Errorf("%d bytes, want 68", len(resp))
			}
			if s := h.Stats(); tc.restarts && s.MultiRestarts == 0 {
				t.Errorf("no restart counted: %+v", s)
			}
			b.ClearFaults()
			if _, err := h.Transact(long, nil, time.Now().Add(5*time.Second)); err != nil {
				t.Errorf("after the fault: %v", err)
			}
		})
	}
}

func TestGarbageReads(t *testing.T) {
	h, b := newPair(t, ssifbmc.Config{}, ssif.Config{ReadRetries: 5})
	b.SetGarbage(ssifbmc.Garbage{Random: 50, Seed: 7})
	start := time.Now()
	for i := 0; i < 20; i++ {
		resp, err := h.Transact(getDeviceID, nil, time.Now().Add(time.Second))
		if err == nil && len(resp) < 3 {
			t.Fatalf("success with % x", resp)
		}
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("20 transactions against garbage took %v", el)
	}
	b.ClearFaults()
	if _, err := h.Transact(getDeviceID, nil, time.Now().Add(time.Second)); err != nil {
		t.Fatalf("after the garbage: %v", err)
	}
}

// failBus fails with an error that is not a NAK.
type failBus struct{}

var errGone = errors.New("adapter gone")

func (failBus) WriteBlock(uint8, []byte) error       { return errGone }
func (failBus) ReadBlock(uint8, []byte) (int, error) { return 0, errGone }

func TestBusFailureNotRetried(t *testing.T) {
	h := ssif.New(failBus{}, fast(ssif.Config{}))
	_, err := h.Transact(getDeviceID, nil, time.Now().Add(time.Second))
	var op *ssif.OpError
	if !errors.Is(err, errGone) || !errors.As(err, &op) || op.Tries != 1 {
		t.Fatalf("%v: want the bus error after one try", err)
	}
}

func TestAttentionPollsFlags(t *testing.T) {
	h := ssif.New(failBus{}, ssif.Config{FlagsInterval: time.Hour, Logger: quiet})
	if att, _ := h.Attention(); !att {
		t.Error("first Attention: want a flags poll")
	}
	if att, _ := h.Attention(); att {
		t.Error("second Attention within the interval: want none")
	}
}

func TestParseCaps(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want ssif.Caps
		err  bool
	}{
		{in: []byte{0x1C, 0x57, 0, 0, 0x80, 255, 255}, want: ssif.Caps{Known: true, Multi: 2, MaxWrite: 255, MaxRead: 255}},
		{in: []byte{0x1C, 0x57, 0, 0, 0x00, 255, 255}, want: ssif.Caps{Known: true, MaxWrite: 32, MaxRead: 32}},
		{in: []byte{0x1C, 0x57, 0, 0, 0x49, 100, 60}, want: ssif.Caps{Known: true, Version: 1, Multi: 1, PEC: true, MaxWrite: 64, MaxRead: 60}},
		{in: []byte{0x1C, 0x57, 0, 0, 0xC0, 0, 0}, want: ssif.Caps{Known: true, Multi: 2, MaxWrite: 272, MaxRead: 272}},
		{in: []byte{0x1C, 0x57, 0xC1}, want: ssif.Caps{MaxWrite: 32, MaxRead: 32}, err: true},
		{in: []byte{0x1C, 0x57, 0, 0}, want: ssif.Caps{MaxWrite: 32, MaxRead: 32}, err: true},
	} {
		got, err := ssif.ParseCaps(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseCaps(% x) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
