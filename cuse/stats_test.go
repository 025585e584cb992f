package cuse

import (
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// TestStatsCountRequests checks that every request read counts under its
// opcode and that open files follow OPEN and RELEASE.
func TestStatsCountRequests(t *testing.T) {
	k := startKernel(t, Config{}, &testDevice{})
	if st := k.srv.Stats(); st.OpenFiles != 0 || st.Requests["OPEN"] != 0 {
		t.Fatalf("before any request: %+v", st)
	}
	fh1 := k.open(0)
	fh2 := k.open(0)
	if st := k.srv.Stats(); st.OpenFiles != 2 || st.Requests["OPEN"] != 2 {
		t.Errorf("after two opens: %+v", st)
	}
	k.call(opRelease, releaseInBody(fh1))
	// The reply to RELEASE may reach the kernel before the file leaves the
	// table: wait for the count rather than assume an order.
	deadline := time.Now().Add(waitLong)
	for k.srv.Stats().OpenFiles != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	st := k.srv.Stats()
	if st.OpenFiles != 1 || st.Requests["RELEASE"] != 1 || st.Requests["OPEN"] != 2 {
		t.Errorf("after one release: %+v", st)
	}
	if len(st.Requests) != 2 {
		t.Errorf("opcodes counted: %v, want OPEN and RELEASE only (CUSE_INIT is not a served request)", st.Requests)
	}
	k.call(opRelease, releaseInBody(fh2))
}

// TestStatsChannel counts the channel's reads, writes and notifications
// through the fake kernel: OPEN, two POLLs (one armed, then woken) and
// RELEASE.
func TestStatsChannel(t *testing.T) {
	dev := &testDevice{}
	k := startKernel(t, Config{}, dev)
	fh := k.open(0)
	f := dev.file(0)
	k.call(opPoll, pollInBody(fh, 7, fuse.FUSE_POLL_SCHEDULE_NOTIFY, 0x41))
	(<-f.wakes)()
	select {
	case <-k.notifies:
	case <-time.After(waitLong):
		t.Fatal("no poll notification")
	}
	k.call(opPoll, pollInBody(fh, 7, 0, 0x41))
	<-f.wakes
	k.call(opRelease, releaseInBody(fh))
	st := k.srv.Stats()
	// INIT, OPEN, POLL, POLL, RELEASE: five replies and one notification;
	// four requests served, at least five reads.
	if st.RequestsTotal() != 4 || st.Notifications != 1 || st.Writes != 6 || st.Reads < 5 {
		t.Errorf("Stats = %+v, want 4 requests served, 6 writes (1 notification), at least 5 reads", st)
	}
}
