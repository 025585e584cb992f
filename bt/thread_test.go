package bt_test

import (
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/bmcsim/btbmc"
	"github.com/ipmi-cuse/ipmi-cuse/bt"
	"github.com/ipmi-cuse/ipmi-cuse/internal/hosttest"
)

// threadCheckPort is a simulated BMC whose access right belongs to the
// OS threads it was bound on, as iopl grants it.
type threadCheckPort struct {
	*btbmc.BMC
	hosttest.ThreadCheck
}

func (p *threadCheckPort) ReadCtrl() (uint8, error)    { p.Check(); return p.BMC.ReadCtrl() }
func (p *threadCheckPort) WriteCtrl(v uint8) error     { p.Check(); return p.BMC.WriteCtrl(v) }
func (p *threadCheckPort) ReadBuf() (uint8, error)     { p.Check(); return p.BMC.ReadBuf() }
func (p *threadCheckPort) WriteBuf(v uint8) error      { p.Check(); return p.BMC.WriteBuf(v) }
func (p *threadCheckPort) ReadIntMask() (uint8, error) { p.Check(); return p.BMC.ReadIntMask() }
func (p *threadCheckPort) WriteIntMask(v uint8) error  { p.Check(); return p.BMC.WriteIntMask(v) }

// TestHostBindsThread: Init binds the calling thread for its own accesses
// only, the goroutine that transacts binds its thread once and keeps it,
// and no access happens from a thread that was not bound (with iopl, such
// an access would fault).
func TestHostBindsThread(t *testing.T) {
	port := &threadCheckPort{BMC: btbmc.New(bmcsim.New(bmcsim.Config{Logger: quiet}), btbmc.Config{})}
	host := bt.New(port, bt.Config{Logger: quiet})
	if _, err := host.Init(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	hosttest.Churn(t, 8) // so an unlocked goroutine would change threads
	resp := make([]byte, 0, 300)
	err := hosttest.OnOneGoroutine(200, func() error {
		var err error
		if resp, err = host.Transact(getDeviceID, resp, time.Now().Add(5*time.Second)); err != nil {
			return err
		}
		_, err = host.Attention()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := port.Binds(); n != 2 {
		t.Errorf("BindThread called %d times, want 2 (Init's thread, then the transacting goroutine's)", n)
	}
	if n := port.WrongThread(); n != 0 {
		t.Errorf("%d port accesses from a thread that was not bound", n)
	}
}
