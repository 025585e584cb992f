package bt_test

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/btbmc"
	"github.com/ipmi-cuse/ipmi-cuse/bt"
)

// threadCheckPort records which OS threads were granted access (as iopl
// grants it) and counts accesses from any other.
type threadCheckPort struct {
	*btbmc.BMC
	mu       sync.Mutex
	bound    map[int]bool
	binds    atomic.Int64
	wrongTID atomic.Int64
}

func (p *threadCheckPort) BindThread() error {
	p.binds.Add(1)
	p.mu.Lock()
	p.bound[unix.Gettid()] = true
	p.mu.Unlock()
	return nil
}

func (p *threadCheckPort) check() {
	p.mu.Lock()
	ok := p.bound[unix.Gettid()]
	p.mu.Unlock()
	if !ok {
		p.wrongTID.Add(1)
	}
}

func (p *threadCheckPort) ReadCtrl() (uint8, error)    { p.check(); return p.BMC.ReadCtrl() }
func (p *threadCheckPort) WriteCtrl(v uint8) error     { p.check(); return p.BMC.WriteCtrl(v) }
func (p *threadCheckPort) ReadBuf() (uint8, error)     { p.check(); return p.BMC.ReadBuf() }
func (p *threadCheckPort) WriteBuf(v uint8) error      { p.check(); return p.BMC.WriteBuf(v) }
func (p *threadCheckPort) ReadIntMask() (uint8, error) { p.check(); return p.BMC.ReadIntMask() }
func (p *threadCheckPort) WriteIntMask(v uint8) error  { p.check(); return p.BMC.WriteIntMask(v) }

// TestHostBindsThread: Init binds the calling thread for its own accesses
// only, the goroutine that transacts binds its thread once and keeps it,
// and no access happens from a thread that was not bound (with iopl, such
// an access would fault).
func TestHostBindsThread(t *testing.T) {
	port := &threadCheckPort{BMC: btbmc.New(bmcsim.New(bmcsim.Config{Logger: quiet}), btbmc.Config{}), bound: map[int]bool{}}
	host := bt.New(port, bt.Config{Logger: quiet})
	if _, err := host.Init(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	for range 8 { // churn so an unlocked goroutine would change threads
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
					_ = unix.Nanosleep(&unix.Timespec{Nsec: 50_000}, nil)
					runtime.Gosched()
				}
			}
		}()
	}
	errc := make(chan error, 1)
	go func() {
		resp := make([]byte, 0, 300)
		for i := 0; i < 200; i++ {
			var err error
			if resp, err = host.Transact(getDeviceID, resp, time.Now().Add(5*time.Second)); err != nil {
				errc <- err
				return
			}
			if _, err := host.Attention(); err != nil {
				errc <- err
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if n := port.binds.Load(); n != 2 {
		t.Errorf("BindThread called %d times, want 2 (Init's thread, then the transacting goroutine's)", n)
	}
	if n := port.wrongTID.Load(); n != 0 {
		t.Errorf("%d port accesses from a thread that was not bound", n)
	}
}
