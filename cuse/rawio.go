package cuse

import (
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The channel's reads and writes are raw system calls inside the file's
// RawConn: the runtime's netpoller still parks the reader while nothing is
// queued (and deadlines still stop it), but the calls themselves do not go
// through the runtime's system call path. A read of a non-blocking channel
// and a write of one reply never block; they return as soon as the kernel
// has taken or handed over the message. But a write wakes the client, and on
// a single CPU the client runs before the write returns: through the
// ordinary path (entersyscall) the runtime's sysmon then sees the P in a
// system call for longer than its 20 µs tick, takes it back and hands it to
// another thread, which costs thread switches on every request. Measured in
// the VM (issue 11), that was most of ipmi-cuse's context switches per round
// trip. A raw call never blocks the garbage collector's stop-the-world for
// longer than the call itself, since none of these calls can block.

// chanReader reads requests from the channel with raw read(2) calls,
// without allocating per read.
type chanReader struct {
	rc   syscall.RawConn
	buf  []byte
	n    int
	err  error
	read func(fd uintptr) bool // r.readOnce, bound once
}

func newChanReader(f *os.File, buf []byte) (*chanReader, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &chanReader{rc: rc, buf: buf}
	r.read = r.readOnce
	return r, nil
}

// readOnce is one raw read; false asks the netpoller to wait (EAGAIN).
//
// An empty queue is read once more after sched_yield(2) before the reader
// parks: the reply just written has usually woken the client, and where
// the client shares the CPU (one vCPU, a busy host) it then sends its next
// request at once, which the second read takes without the netpoller's
// park and wake-up (an epoll_wait and two trips through the Go
// scheduler). Where the client runs on another CPU and nothing else
// waits for this one, the yield returns at once and costs a system call;
// where other tasks wait for this CPU, they run first, and the reader
// reads again at its next turn (a time slice at most, which also bounds
// how long it can hold up the garbage collector's stop-the-world).
func (r *chanReader) readOnce(fd uintptr) bool {
	n, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)))
	if errno == unix.EAGAIN {
		unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
		n, _, errno = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)))
	}
	if errno == unix.EAGAIN {
		return false
	}
	r.n, r.err = int(n), nil
	if errno != 0 {
		r.n, r.err = 0, errno
	}
	return true
}

// next reads one request into the buffer and returns its length. Errors
// are those of os.File.Read: io.EOF for a closed peer, the deadline and
// close errors, and the read's errno.
func (r *chanReader) next() (int, error) {
	if err := r.rc.Read(r.read); err != nil {
		return 0, err
	}
	if r.err == nil && r.n == 0 {
		return 0, io.EOF
	}
	return r.n, r.err
}

// chanConn is a channel file with its RawConn, made once per channel.
type chanConn struct {
	f  *os.File
	rc syscall.RawConn
}

// conn returns the RawConn of the current channel, without allocating once
// it has been made.
func (s *Server) conn() (syscall.RawConn, error) {
	f := s.ch
	if c := s.rconn.Load(); c != nil && c.f == f {
		return c.rc, nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	s.rconn.Store(&chanConn{f: f, rc: rc})
	return rc, nil
}

// chanWriter is one raw write(2) of a message, pooled with its bound
// function so a write allocates nothing.
type chanWriter struct {
	msg   []byte
	n     uintptr
	errno syscall.Errno
	fn    func(fd uintptr) bool // w.write, bound once
}

var writerPool = sync.Pool{New: func() any {
	w := &chanWriter{}
	w.fn = w.write
	return w
}}

func (w *chanWriter) write(fd uintptr) bool {
	w.n, _, w.errno = unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(&w.msg[0])), uintptr(len(w.msg)))
	return w.errno != unix.EAGAIN
}

// rawWrite writes one message to the channel with a raw write(2).
func (s *Server) rawWrite(msg []byte) (int, error) {
	rc, err := s.conn()
	if err != nil {
		return 0, err
	}
	w := s.wslot.Swap(nil)
	if w == nil {
		w = writerPool.Get().(*chanWriter)
	}
	w.msg = msg
	err = rc.Write(w.fn)
	n, errno := int(w.n), w.errno
	w.msg = nil
	if !s.wslot.CompareAndSwap(nil, w) {
		writerPool.Put(w)
	}
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}

// msgPool holds reply buffers: a reply is built, written and done with
// before send returns.
var msgPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 512)
	return &b
}}

// maxPooledMsg is the largest buffer kept for reuse; bigger ones (large
// ioctl outputs) go to the garbage collector.
const maxPooledMsg = 16 << 10

// getMsg returns a reply buffer: the server's own one-slot cache if it is
// free (the reader, which writes nearly every reply, then touches only
// the server), else one from msgPool.
func (s *Server) getMsg() *[]byte {
	if b := s.mslot.Swap(nil); b != nil {
		return b
	}
	return msgPool.Get().(*[]byte)
}

// putMsg gives b back, with used (what b's storage became) as its
// contents' capacity.
func (s *Server) putMsg(b *[]byte, used []byte) {
	if cap(used) > maxPooledMsg {
		return
	}
	*b = used[:0]
	if !s.mslot.CompareAndSwap(nil, b) {
		msgPool.Put(b)
	}
}
