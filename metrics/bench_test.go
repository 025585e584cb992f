package metrics_test

import (
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// roundTrip returns a function that runs one Get Device ID through the
// rig's engine (engine + KCS host + simulated BMC) with a preallocated
// request, the way ioctl files reuse theirs.
func roundTrip(tb testing.TB, r *rig) func() {
	done := make(chan struct{}, 1)
	req := &sched.Request{Owner: 10, Msg: []byte{0x06 << 2, 0x01}, Resp: make([]byte, 0, 300),
		Done: func(*sched.Request) { done <- struct{}{} }}
	return func() {
		req.Deadline = time.Now().Add(time.Hour)
		if err := r.engine.Submit(req); err != nil {
			tb.Fatal(err)
		}
		<-done
		if req.Err != nil {
			tb.Fatal(req.Err)
		}
	}
}

// TestHotPathAllocationFree: with the collector registered and scraped,
// a request through the engine and the KCS state machine allocates
// nothing (the counters and histograms are fixed arrays of atomics).
func TestHotPathAllocationFree(t *testing.T) {
	r := newRig(t)
	rt := roundTrip(t, r)
	rt()
	scrape(t, r.reg)
	if a := testing.AllocsPerRun(200, rt); a != 0 {
		t.Errorf("%v allocations per request with metrics on, want 0", a)
	}
}

// BenchmarkEngineWithMetrics is sched's BenchmarkEngineSimBMC with the
// metrics collector registered and scraped every 10000 requests (scrapes
// are counted in; the scraper's own allocations show as a fraction per
// request).
func BenchmarkEngineWithMetrics(b *testing.B) {
	r := newRig(b)
	rt := roundTrip(b, r)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		rt()
		if n++; n%10000 == 0 {
			if _, err := r.reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkScrape is the cost of one scrape of every family.
func BenchmarkScrape(b *testing.B) {
	r := newRig(b)
	roundTrip(b, r)()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
