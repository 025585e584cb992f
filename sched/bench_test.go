package sched_test

import (
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/kcsbmc"
	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// nopTransport answers at once without allocating: it measures the engine's
// own cost per request.
type nopTransport struct{}

func (nopTransport) Transact(msg, resp []byte, _ time.Time) ([]byte, error) {
	return append(resp[:0], msg[0]|1<<2, msg[1], 0), nil
}

// BenchmarkEngineRoundTrip is one client doing Submit and waiting for Done,
// one request at a time: the latency the engine adds to every IPMI request.
func BenchmarkEngineRoundTrip(b *testing.B) {
	e := sched.New(nopTransport{}, sched.Config{Logger: quietLogger()})
	defer e.Close()
	done := make(chan struct{}, 1)
	r := &sched.Request{
		Owner:    1,
		Msg:      []byte{0x06 << 2, 0x01},
		Resp:     make([]byte, 0, 64),
		Deadline: time.Now().Add(time.Hour),
		Done:     func(*sched.Request) { done <- struct{}{} },
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if err := e.Submit(r); err != nil {
			b.Fatal(err)
		}
		<-done
		if r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
}

// BenchmarkEngineThroughput keeps 8 owners with 16 requests each in flight:
// queueing, round-robin and completion cost under load.
func BenchmarkEngineThroughput(b *testing.B) {
	e := sched.New(nopTransport{}, sched.Config{Logger: quietLogger()})
	defer e.Close()
	const owners, depth = 8, 16
	done := make(chan *sched.Request, owners*depth)
	reqs := make([]*sched.Request, 0, owners*depth)
	for o := range owners {
		for range depth {
			reqs = append(reqs, &sched.Request{
				Owner:    sched.Owner(o),
				Msg:      []byte{0x06 << 2, 0x01},
				Resp:     make([]byte, 0, 64),
				Deadline: time.Now().Add(time.Hour),
				Done:     func(r *sched.Request) { done <- r },
			})
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	inflight := 0
	for _, r := range reqs {
		if err := e.Submit(r); err != nil {
			b.Fatal(err)
		}
		inflight++
	}
	for i := 0; i < b.N; i++ {
		r := <-done
		inflight--
		if err := e.Submit(r); err != nil {
			b.Fatal(err)
		}
		inflight++
	}
	for ; inflight > 0; inflight-- {
		<-done
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
}

// BenchmarkEngineSimBMC is the whole in-process stack for one request at a
// time: engine, KCS host state machine, and the simulated BMC's KCS side and
// message core answering Get Device ID with zero latency. The engine's share
// is the difference to BenchmarkTransactZeroLatency in kcs/.
func BenchmarkEngineSimBMC(b *testing.B) {
	bmc := bmcsim.New(bmcsim.Config{Logger: quietLogger()})
	host := kcs.New(kcsbmc.New(bmc), kcs.Config{Logger: quietLogger()})
	e := sched.New(host, sched.Config{Logger: quietLogger()})
	defer e.Close()
	done := make(chan struct{}, 1)
	r := &sched.Request{
		Owner:    1,
		Msg:      []byte{0x06 << 2, 0x01},
		Resp:     make([]byte, 0, 300),
		Deadline: time.Now().Add(time.Hour),
		Done:     func(*sched.Request) { done <- struct{}{} },
	}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if err := e.Submit(r); err != nil {
			b.Fatal(err)
		}
		<-done
		if r.Err != nil || len(r.Resp) < 3 || r.Resp[2] != 0 {
			b.Fatalf("Get Device ID: %x, %v", r.Resp, r.Err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
}
