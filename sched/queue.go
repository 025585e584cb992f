package sched

import "time"

// ring is a FIFO of requests in a slice used as a circular buffer. It grows
// by doubling up to a limit and keeps its storage when emptied, so a queue
// that has reached its working size never allocates again.
type ring struct {
	buf  []*Request
	head int
	n    int
}

// push appends r; it reports false when the ring holds limit requests.
func (q *ring) push(r *Request, limit int) bool {
	if q.n >= limit {
		return false
	}
	if q.n == len(q.buf) {
		size := 2 * len(q.buf)
		if size < 4 {
			size = 4
		}
		if size > limit {
			size = limit
		}
		buf := make([]*Request, size)
		for i := 0; i < q.n; i++ {
			buf[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = buf, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = r
	q.n++
	return true
}

// pop removes and returns the oldest request, or nil.
func (q *ring) pop() *Request {
	if q.n == 0 {
		return nil
	}
	r := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return r
}

// drain moves every request to out (in order) with err set, and returns out.
func (q *ring) drain(out []*Request, err error) []*Request {
	for r := q.pop(); r != nil; r = q.pop() {
		r.Err = err
		out = append(out, r)
	}
	return out
}

// expire moves every request whose deadline is not after now to out with
// err set, keeps the others in order, and returns out and the earliest
// deadline among those kept (zero if none).
func (q *ring) expire(now time.Time, out []*Request, err error) ([]*Request, time.Time) {
	var earliest time.Time
	kept := 0
	for i := 0; i < q.n; i++ {
		idx := (q.head + i) % len(q.buf)
		r := q.buf[idx]
		q.buf[idx] = nil
		if !r.Deadline.After(now) {
			r.Err = err
			out = append(out, r)
			continue
		}
		if earliest.IsZero() || r.Deadline.Before(earliest) {
			earliest = r.Deadline
		}
		q.buf[(q.head+kept)%len(q.buf)] = r
		kept++
	}
	q.n = kept
	return out, earliest
}

// ownerQueue is one owner's normal-lane FIFO and its place in the
// round-robin list of owners that have requests waiting.
type ownerQueue struct {
	owner      Owner
	q          ring
	prev, next *ownerQueue
}

// ownerList is an intrusive doubly linked list of owner queues: the
// round-robin order of the normal lane. Linking and unlinking never
// allocate.
type ownerList struct {
	head, tail *ownerQueue
	n          int
}

func (l *ownerList) pushBack(o *ownerQueue) {
	o.prev, o.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = o
	} else {
		l.head = o
	}
	l.tail = o
	l.n++
}

func (l *ownerList) remove(o *ownerQueue) {
	if o.prev != nil {
		o.prev.next = o.next
	} else {
		l.head = o.next
	}
	if o.next != nil {
		o.next.prev = o.prev
	} else {
		l.tail = o.prev
	}
	o.prev, o.next = nil, nil
	l.n--
}
