package ioctl

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/sched"
)

// echoBMC is a sched.Transport that answers every request with CC 0 and the
// request's data, and records what it saw.
type echoBMC struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (b *echoBMC) Transact(msg, resp []byte, _ time.Time) ([]byte, error) {
	b.mu.Lock()
	b.msgs = append(b.msgs, append([]byte(nil), msg...))
	b.mu.Unlock()
	resp = append(resp[:0], msg[0]|4, msg[1], 0x00)
	return append(resp, msg[2:]...), nil
}

// TestWithRealEngine wires the device to the real sched engine, as the
// daemon does, and round-trips a request.
func TestWithRealEngine(t *testing.T) {
	bmc := &echoBMC{}
	eng := sched.New(bmc, sched.Config{})
	defer eng.Close()
	e := newEnv(t, Config{Submit: eng.Submit, PriorityWatchdogCommands: true, Now: time.Now})
	f := e.open()
	woken := make(chan struct{}, 1)
	f.Poll(func() { woken <- struct{}{} })
	if errno := e.send(f, sysAddr(0), 77, 0x06, 0x22, []byte{1, 2}); errno != 0 {
		t.Fatalf("send: %v", errno)
	}
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatal("no reply within 10 s")
	}
	got := e.recv(f, true, 40, 272)
	if got.errno != 0 || got.recv.MsgID != 77 || got.recv.Msg.NetFn != 0x07 || got.recv.Msg.Cmd != 0x22 {
		t.Fatalf("receive: %v %+v", got.errno, got.recv)
	}
	if !bytes.Equal(got.data[:3], []byte{0, 1, 2}) {
		t.Errorf("data = % x", got.data[:3])
	}
	bmc.mu.Lock()
	defer bmc.mu.Unlock()
	if len(bmc.msgs) != 1 || !bytes.Equal(bmc.msgs[0], []byte{0x18, 0x22, 1, 2}) {
		t.Errorf("BMC saw % x", bmc.msgs)
	}
}
