package kcs_test

import (
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/internal/hosttest"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
)

// BenchmarkTransactZeroLatency measures the engine-side cost of one Get
// Device ID against a BMC that answers at once: the state machine plus the
// simulated registers (mutex and clock per access).
func BenchmarkTransactZeroLatency(b *testing.B) {
	h, _, _ := newPair(b, kcs.Config{})
	resp := make([]byte, 0, kcs.MaxResponse)
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		var err error
		if resp, err = h.Transact(getDeviceID, resp, time.Time{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tx/s")
	st := h.Stats()
	b.ReportMetric(float64(st.StatusReads)/float64(b.N), "statusreads/tx")
}

// BenchmarkPollCPU measures CPU and wall time per transaction against a
// fast BMC and a slow one (2 ms per message, 20µs per byte), so the cost of
// the spin-then-sleep strategy is visible: on the slow BMC the CPU per
// transaction should stay far below its wall time.
func BenchmarkPollCPU(b *testing.B) {
	for _, tc := range []struct {
		name      string
		perByte   time.Duration
		perMsg    time.Duration
		spin, max time.Duration
	}{
		{name: "fast"},
		{name: "slow-2ms", perByte: 20 * time.Microsecond, perMsg: 2 * time.Millisecond},
		{name: "slow-2ms-nospin", perByte: 20 * time.Microsecond, perMsg: 2 * time.Millisecond, spin: time.Nanosecond},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, bmc, _ := newPair(b, kcs.Config{SpinFor: tc.spin})
			bmc.SetByteLatency(tc.perByte)
			bmc.SetMessageLatency(tc.perMsg)
			resp := make([]byte, 0, kcs.MaxResponse)
			hosttest.PollCPU(b, func() (err error) {
				resp, err = h.Transact(getDeviceID, resp, time.Time{})
				return err
			})
			st := h.Stats()
			b.ReportMetric(float64(st.Sleeps)/float64(b.N), "sleeps/tx")
			b.ReportMetric(float64(st.StatusReads)/float64(b.N), "statusreads/tx")
		})
	}
}
