package kcs_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/kcsbmc"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
)

// Requests understood by fakeResponder.
var (
	getDeviceID = []byte{0x06 << 2, 0x01}
	deviceID    = []byte{0x07 << 2, 0x01, 0x00, 0x20, 0x81, 0x03, 0x02, 0x02, 0xbf, 0x57, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}
)

const (
	netfnOEM = 0x30
	cmdEcho  = 0x01 // response data = request data
	cmdLong  = 0x02 // response is data[0]<<8|data[1] bytes long in total
)

// fakeResponder echoes, answers Get Device ID, and makes long responses.
type fakeResponder struct {
	atn atomic.Bool
}

func (f *fakeResponder) Handle(req, resp []byte) []byte {
	netfn, cmd := req[0]>>2, req[1]
	resp = append(resp, (netfn|1)<<2|req[0]&3, cmd)
	switch {
	case netfn == 0x06 && cmd == 0x01:
		return append(resp[:0], deviceID...)
	case netfn == netfnOEM && cmd == cmdEcho:
		return append(append(resp, 0x00), req[2:]...)
	case netfn == netfnOEM && cmd == cmdLong && len(req) >= 4:
		n := int(req[2])<<8 | int(req[3])
		resp = append(resp, 0x00)
		for len(resp) < n {
			resp = append(resp, byte(len(resp)))
		}
		return resp[:n]
	}
	return append(resp, 0xC1) // invalid command
}

func (f *fakeResponder) Attention() bool { return f.atn.Load() }

func echoReq(n int) (req, want []byte) {
	req = []byte{netfnOEM << 2, cmdEcho}
	want = []byte{(netfnOEM | 1) << 2, cmdEcho, 0}
	for i := range n {
		req = append(req, byte(i*7+1))
		want = append(want, byte(i*7+1))
	}
	return req, want
}

func newPair(t testing.TB, cfg kcs.Config) (*kcs.Host, *kcsbmc.BMC, *fakeResponder) {
	t.Helper()
	r := &fakeResponder{}
	b := kcsbmc.New(r)
	return kcs.New(b, cfg), b, r
}

// fastCfg keeps fault tests short: small waits, short transactions.
func fastCfg() kcs.Config {
	return kcs.Config{
		WaitTimeout:        30 * time.Millisecond,
		TransactionTimeout: 400 * time.Millisecond,
		ErrorStatusWait:    20 * time.Millisecond,
	}
}

// typed reports whether err is one of the kinds Transact documents.
func typed(err error) bool {
	var be *kcs.BMCError
	var op *kcs.OpError
	if !errors.As(err, &op) {
		return false
	}
	return errors.Is(err, kcs.ErrTimeout) || errors.Is(err, kcs.ErrProtocol) ||
		errors.Is(err, kcs.ErrNoInterface) || errors.Is(err, kcs.ErrResponseTooLong) ||
		errors.Is(err, kcs.ErrRequestTooShort) || errors.Is(err, kcs.ErrRequestTooLong) ||
		errors.As(err, &be)
}

// timedTransact runs Transact and returns its result and duration.
func timedTransact(h *kcs.Host, req []byte, dl time.Time) (resp []byte, d time.Duration, err error) {
	start := time.Now()
	resp, err = h.Transact(req, make([]byte, 0, kcs.MaxResponse), dl)
	return resp, time.Since(start), err
}

// mustWork checks the pair answers a normal request (after a fault cleared).
func mustWork(t *testing.T, h *kcs.Host) {
	t.Helper()
	req, want := echoReq(5)
	resp, err := h.Transact(req, nil, time.Time{})
	if err != nil || string(resp) != string(want) {
		t.Fatalf("request after the fault: got % x, %v; want % x", resp, err, want)
	}
}
