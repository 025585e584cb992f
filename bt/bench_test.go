package bt_test

import (
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/btbmc"
	"github.com/ipmi-cuse/ipmi-cuse/bt"
	"github.com/ipmi-cuse/ipmi-cuse/internal/hosttest"
)

// BenchmarkPollCPU measures CPU and wall time per transaction against a
// BMC that answers at once and one that takes 2 ms per response, so the
// cost of the spin-then-sleep wait is visible: on the slow BMC the CPU per
// transaction should stay far below its wall time.
func BenchmarkPollCPU(b *testing.B) {
	for _, tc := range []struct {
		name    string
		latency time.Duration
		spin    time.Duration
	}{
		{name: "fast"},
		{name: "slow-2ms", latency: 2 * time.Millisecond},
		{name: "slow-2ms-nospin", latency: 2 * time.Millisecond, spin: time.Nanosecond},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h, bmc, _ := newPair(b, btbmc.Config{}, bt.Config{SpinFor: tc.spin})
			bmc.SetLatency(tc.latency)
			resp := make([]byte, 0, bt.MaxFrame)
			hosttest.PollCPU(b, func() (err error) {
				resp, err = h.Transact(getDeviceID, resp, time.Time{})
				return err
			})
			st := h.Stats()
			b.ReportMetric(float64(st.Sleeps)/float64(b.N), "sleeps/tx")
			b.ReportMetric(float64(st.CtrlReads)/float64(b.N), "ctrlreads/tx")
		})
	}
}
