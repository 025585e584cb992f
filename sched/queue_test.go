package sched

import (
	"testing"
	"time"
)

// FuzzQueues decodes a byte string into a sequence of queue operations
// (submit on an owner and lane, dequeue, sweep at a time, fail the normal
// lane) and checks the engine's queues against a plain-slice model: the
// same requests come out, in priority-then-round-robin order, each once.
func FuzzQueues(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0x02, 0x40, 0x80, 0x81, 0xc0})
	f.Add([]byte{0x10, 0x10, 0x10, 0x11, 0x80, 0x80, 0x80, 0x80})
	f.Add([]byte{0x20, 0x21, 0x22, 0xa3, 0x80, 0xe0, 0x80})
	f.Fuzz(func(t *testing.T, ops []byte) {
		e := &Engine{cfg: Config{MaxQueuePerOwner: 3, MaxPriorityQueue: 2}, byOwner: map[Owner]*ownerQueue{}, maxFree: 2, ownerLimit: 3, healthy: true}
		base := time.Unix(1000, 0)
		type modelOwner struct {
			owner Owner
			q     []*Request
		}
		var (
			prio   []*Request
			rr     []*modelOwner // round-robin order of owners with requests
			seq    int
			served = map[*Request]bool{}
		)
		find := func(o Owner) *modelOwner {
			for _, m := range rr {
				if m.owner == o {
					return m
				}
			}
			return nil
		}
		take := func(r *Request) {
			if served[r] {
				t.Fatalf("request %v came out twice", r.Msg)
			}
			served[r] = true
		}
		for _, op := range ops {
			switch op >> 6 {
			case 0, 1: // submit: bits 0-2 owner, bit 3 priority, bits 4-5 deadline
				seq++
				r := &Request{Owner: Owner(op & 7), Msg: []byte{byte(seq), byte(seq >> 8)},
					Deadline: base.Add(time.Duration(op>>4&3+1) * time.Second), Done: func(*Request) {}}
				if op&8 != 0 {
					r.Lane = LanePriority
				}
				// Mirror Submit without the goroutine.
				var ok bool
				if r.Lane == LanePriority {
					ok = e.prio.push(r, e.cfg.MaxPriorityQueue)
					if ok {
						prio = append(prio, r)
					}
				} else {
					o := e.byOwner[r.Owner]
					if o == nil {
						o = e.newOwnerQueue(r.Owner)
					}
					ok = o.q.push(r, e.ownerLimit)
					if ok {
						if o.q.n == 1 {
							e.active.pushBack(o)
						}
						e.nNormal++
						m := find(r.Owner)
						if m == nil {
							m = &modelOwner{owner: r.Owner}
							rr = append(rr, m)
						}
						m.q = append(m.q, r)
					} else if o.q.n == 0 {
						e.releaseOwner(o)
					}
				}
				if ok && (e.earliest.IsZero() || r.Deadline.Before(e.earliest)) {
					e.earliest = r.Deadline
				}
			case 2: // dequeue
				got := e.next()
				var want *Request
				switch {
				case len(prio) > 0:
					want, prio = prio[0], prio[1:]
				case len(rr) > 0:
					m := rr[0]
					want, m.q = m.q[0], m.q[1:]
					rr = rr[1:]
					if len(m.q) > 0 {
						rr = append(rr, m)
					}
				}
				if got != want {
					t.Fatalf("next() = %v, want %v", msgOf(got), msgOf(want))
				}
				if got != nil {
					take(got)
				}
			case 3: // bit 5: fail normal lane; else sweep at base + (op&3) s
				var out []*Request
				if op&0x20 != 0 {
					out = e.failNormal(nil)
					var want []*Request
					for _, m := range rr {
						want = append(want, m.q...)
					}
					rr = nil
					if len(out) != len(want) {
						t.Fatalf("failNormal returned %d, want %d", len(out), len(want))
					}
				} else {
					now := base.Add(time.Duration(op&3) * time.Second)
					out = e.sweep(now, nil)
					expired := func(r *Request) bool { return !r.Deadline.After(now) }
					var n int
					keep := prio[:0:0]
					for _, r := range prio {
						if expired(r) {
							n++
						} else {
							keep = append(keep, r)
						}
					}
					prio = keep
					var rr2 []*modelOwner
					for _, m := range rr {
						k := m.q[:0:0]
						for _, r := range m.q {
							if expired(r) {
								n++
							} else {
								k = append(k, r)
							}
						}
						m.q = k
						if len(k) > 0 {
							rr2 = append(rr2, m)
						}
					}
					rr = rr2
					if len(out) != n {
						t.Fatalf("sweep returned %d, want %d", len(out), n)
					}
					for _, r := range out {
						if r.Err != ErrDeadline || !expired(r) {
							t.Fatalf("sweep returned %v with err %v", msgOf(r), r.Err)
						}
					}
				}
				for _, r := range out {
					take(r)
				}
			}
			var queued int
			for _, m := range rr {
				queued += len(m.q)
			}
			if e.nNormal != queued || e.prio.n != len(prio) || e.active.n != len(rr) || len(e.byOwner) != len(rr) {
				t.Fatalf("engine normal %d prio %d owners %d/%d; model %d %d %d",
					e.nNormal, e.prio.n, e.active.n, len(e.byOwner), queued, len(prio), len(rr))
			}
		}
	})
}

func msgOf(r *Request) any {
	if r == nil {
		return nil
	}
	return r.Msg
}
