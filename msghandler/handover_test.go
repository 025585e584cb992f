package msghandler

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
)

// TestHandoverSeqTable: a bridged broadcast waiting in the sequence table
// and an event waiting for a listener survive an export and a Resume in a
// second Handler, which then times the broadcast out to the same file.
func TestHandoverSeqTable(t *testing.T) {
	s := newStack(t, stackOpts{})
	c := s.open()
	b := ioctl.IPMBAddr{AddrType: ioctl.IPMBBroadcastAddrType, Channel: 0, SlaveAddr: 0x72}.Encode()
	if errno := c.Send(b, 9, 0x06, 0x01, nil); errno != 0 {
		t.Fatalf("send: %v", errno)
	}
	s.waitArmed(owner(c))
	ev := ioctl.Message{RecvType: ioctl.AsyncEventRecvType, Addr: []byte{0x0c, 0, 0, 0, 0x0f, 0, 0x20, 0}, Data: []byte{1, 2, 3}}
	s.h.mu.Lock()
	s.h.waiting = append(s.h.waiting, ev)
	s.h.mu.Unlock()

	if err := s.eng.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.h.Hold(true)
	st := s.h.ExportState()
	s.h.tick() // held: no timeout in the old handler
	if len(st.Seq) != 1 || st.Seq[0].MsgID != 9 || !st.Seq[0].Broadcast || len(st.Waiting) != 1 || !st.ChannelsReady {
		t.Fatalf("exported %+v", st)
	}
	s.h.Close()
	s.eng.Resume()

	h2 := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), TickInterval: s.h.cfg.TickInterval})
	t.Cleanup(func() { h2.Close() })
	if err := h2.Resume(s.eng.Submit, s.dev, st); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if got := h2.ExportState(); !reflect.DeepEqual(got, st) {
		t.Errorf("resumed handler exports %+v, want %+v", got, st)
	}
	if h2.Outstanding() != 1 {
		t.Fatalf("outstanding %d after resume, want 1", h2.Outstanding())
	}
	h2.tick()
	h2.tick()
	got := receive(t, c)
	if got.MsgID != 9 || !bytes.Equal(got.Data, []byte{ioctl.CCTimeout}) {
		t.Fatalf("broadcast result through the resumed handler %+v", got)
	}
	if err := h2.Resume(s.eng.Submit, s.dev, st); !errors.Is(err, ErrNotStarted) {
		t.Errorf("second Resume = %v, want ErrNotStarted", err)
	}
}

func TestHandoverRefusesBadState(t *testing.T) {
	tests := []struct {
		name string
		s    State
	}{
		{"cur seq", State{CurSeq: NumSeq}},
		{"maintenance", State{IPMBMaintenanceTicks: 31}},
		{"too many events", State{Waiting: make([]ioctl.Message, MaxWaitingEvents+1)}},
		{"slot", State{Seq: []SeqState{{Slot: NumSeq}}}},
		{"duplicate slot", State{Seq: []SeqState{{Slot: 1}, {Slot: 1}}}},
		{"seqid", State{Seq: []SeqState{{Slot: 1, SeqID: 1 << 26}}}},
		{"channel", State{Seq: []SeqState{{Slot: 1, Channel: 16}}}},
		{"retries", State{Seq: []SeqState{{Slot: 1, RetriesLeft: -1}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := New(Config{})
			defer h.Close()
			if err := h.Resume(nil, nil, tc.s); !errors.Is(err, ErrState) {
				t.Errorf("Resume = %v, want ErrState", err)
			}
		})
	}
}
