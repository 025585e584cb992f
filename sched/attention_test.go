package sched_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

const cmdGetFlags = 0x31 // the attention hooks' marker transaction

// TestAttentionBeforeNormal: attention seen after a transaction is handled
// before the next normal-lane request (the kernel's "prefer attn over new
// messages"), and one turn runs at most AttentionBudget transactions.
func TestAttentionBeforeNormal(t *testing.T) {
	g := newGate()
	ft := &fakeTransport{hook: g.hook}
	var atn atomic.Bool
	var yields atomic.Int64
	e := sched.New(ft, sched.Config{Logger: quietLogger(), AttentionBudget: 2,
		Attention: atn.Load,
		OnAttention: func(tx sched.TxFunc) bool {
			for {
				_, err := tx([]byte{0x06 << 2, cmdGetFlags}, nil, time.Now().Add(time.Second))
				if errors.Is(err, sched.ErrYield) {
					yields.Add(1)
					atn.Store(false)
					return false
				}
				if err != nil {
					t.Errorf("attention tx: %v", err)
					return false
				}
			}
		}})
	defer e.Close()
	rc := newRecorder()
	if err := rc.submit(e, rc.request(1, sched.LaneNormal, 0, far())); err != nil {
		t.Fatal(err)
	}
	<-g.entered
	for i := 1; i <= 2; i++ {
		if err := rc.submit(e, rc.request(1, sched.LaneNormal, i, far())); err != nil {
			t.Fatal(err)
		}
	}
	atn.Store(true)
	close(g.release)
	if !rc.waitAll(waitLong) {
		t.Fatal("requests did not complete")
	}
	ft.mu.Lock()
	defer ft.mu.Unlock()
	var order []byte
	for _, m := range ft.seen {
		if m[1] == cmdGetFlags {
			order = append(order, 'A')
		} else {
			order = append(order, 'R')
		}
	}
	if string(order) != "RAARR" {
		t.Fatalf("transport order %q, want RAARR (budget 2 of attention between the first and second request)", order)
	}
	if yields.Load() != 1 {
		t.Errorf("yields = %d, want 1", yields.Load())
	}
}

// TestAttentionNoStarvation: a BMC that keeps SMS_ATN asserted forever
// (the hook always has more to do) starves neither the priority lane nor
// the normal lane, and attention keeps running between them.
func TestAttentionNoStarvation(t *testing.T) {
	ft := &fakeTransport{hook: func(int, []byte) error { time.Sleep(100 * time.Microsecond); return nil }}
	var preempted atomic.Int64
	e := sched.New(ft, sched.Config{Logger: quietLogger(),
		Attention: func() bool { return true },
		OnAttention: func(tx sched.TxFunc) bool {
			for {
				if _, err := tx([]byte{0x06 << 2, cmdGetFlags}, nil, time.Now().Add(time.Second)); err != nil {
					if errors.Is(err, sched.ErrYield) {
						preempted.Add(1)
					}
					return true
				}
			}
		}})
	defer e.Close()
	rc := newRecorder()
	for i := range 50 {
		if err := rc.submit(e, rc.request(sched.Owner(1+i%3), sched.LaneNormal, i, far())); err != nil {
			t.Fatal(err)
		}
		if i%5 == 0 {
			if err := rc.submit(e, rc.request(9, sched.LanePriority, i, far())); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	if !rc.waitAll(waitLong) {
		t.Fatal("requests starved by attention work that never ends")
	}
	st := e.Stats()
	if st.AttentionTurns == 0 || st.AttentionTx == 0 || preempted.Load() == 0 {
		t.Fatalf("attention turns %d tx %d yields %d; want all > 0", st.AttentionTurns, st.AttentionTx, preempted.Load())
	}
	if st.CompletedPriority != 10 || st.CompletedNormal != 50 {
		t.Fatalf("completed priority %d normal %d", st.CompletedPriority, st.CompletedNormal)
	}
}

// TestAttentionPriorityPreempts: a priority request submitted while an
// attention turn is running makes the hook's next tx yield.
func TestAttentionPriorityPreempts(t *testing.T) {
	ft := &fakeTransport{}
	rc := newRecorder()
	var eng atomic.Pointer[sched.Engine]
	submitted := make(chan struct{})
	var sawYield atomic.Bool
	var once atomic.Bool
	var started atomic.Bool
	e := sched.New(ft, sched.Config{Logger: quietLogger(), AttentionBudget: 100,
		Attention: func() bool { return started.Load() && !sawYield.Load() },
		OnAttention: func(tx sched.TxFunc) bool {
			if once.CompareAndSwap(false, true) {
				if err := rc.submit(eng.Load(), rc.request(9, sched.LanePriority, 1, far())); err != nil {
					t.Error(err)
				}
				close(submitted)
			}
			if _, err := tx([]byte{0x06 << 2, cmdGetFlags}, nil, time.Now().Add(time.Second)); errors.Is(err, sched.ErrYield) {
				sawYield.Store(true)
				return false
			}
			return true
		}})
	defer e.Close()
	eng.Store(e)
	started.Store(true)
	select {
	case <-submitted:
	case <-time.After(waitLong):
		t.Fatal("attention never polled while idle")
	}
	if !rc.waitAll(waitLong) {
		t.Fatal("priority request not served")
	}
	if !sawYield.Load() {
		t.Fatal("attention tx did not yield to the waiting priority request")
	}
}
