package watchdog

import (
	"errors"
	"fmt"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/cuse"
)

// ErrHandover, as the cause of the context given to Run
// (context.WithCancelCause), stops the built-in patter without stopping the
// BMC timer: another process takes over and pats it.
var ErrHandover = errors.New("watchdog: handed over to another process")

// ErrState is wrapped by ImportState's errors.
var ErrState = errors.New("watchdog: invalid hand-over state")

// State is the watchdog's state for a hand-over to another process: the
// timer's settings as armed (a /dev/watchdog opener may have changed the
// configured ones), who drives it, the open /dev/watchdog file's magic
// close and pending pretimeout, and the counters.
type State struct {
	Running    bool          `json:"running"`
	Action     Action        `json:"action"`
	PreAction  PreAction     `json:"preaction"`
	Timeout    time.Duration `json:"timeout"`
	Pretimeout time.Duration `json:"pretimeout"`
	IPMI10     bool          `json:"ipmi10,omitempty"`
	// FileOpen says /dev/watchdog is open (its file handle is in the CUSE
	// device's part of the hand-over).
	FileOpen bool `json:"file_open,omitempty"`
	// StartOnHeartbeat: the opener has not started the timer yet.
	StartOnHeartbeat bool `json:"start_on_heartbeat,omitempty"`
	// NeedSet and NeedReset: the next heartbeat re-sends Set (and Reset).
	NeedSet   bool `json:"need_set,omitempty"`
	NeedReset bool `json:"need_reset,omitempty"`
	// ExpectClose is the magic 'V' written last.
	ExpectClose bool  `json:"expect_close,omitempty"`
	Pinged      bool  `json:"pinged,omitempty"`
	BootStatus  int32 `json:"boot_status,omitempty"`
	BootKnown   bool  `json:"boot_known,omitempty"`
	// DataToRead: a pretimeout not read from /dev/watchdog yet.
	DataToRead bool `json:"data_to_read,omitempty"`
	// Panicked: preop panic has been done (it is done once).
	Panicked bool  `json:"panicked,omitempty"`
	Stats    Stats `json:"stats"`
}

// ExportState returns the watchdog's state. Call it with the engine paused
// and the built-in patter stopped with ErrHandover, so nothing changes it.
func (w *Watchdog) ExportState() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.exported = true // the next process pats: Leave must not re-arm
	st := w.stats
	st.Running = w.st.running
	return State{Panicked: w.panicked, Running: w.st.running, Action: w.st.action, PreAction: w.st.preAction, Timeout: w.st.timeout,
		Pretimeout: w.st.pretimeout, IPMI10: w.st.ipmi10, FileOpen: w.user == userFile, StartOnHeartbeat: w.startOnHB,
		NeedSet: w.needSet, NeedReset: w.needHB, ExpectClose: w.expectClose, Pinged: w.pinged, BootStatus: w.bootStat,
		BootKnown: w.bootKnown, DataToRead: w.dataToRead, Stats: st}
}

// ImportState takes over the state another process exported. If its
// /dev/watchdog was open, the returned file is that open file (for the
// CUSE server's hand-over), else it is nil. Call it before Run or Open.
func (w *Watchdog) ImportState(s State) (cuse.File, error) {
	if err := checkTimes(s.Timeout, s.Pretimeout); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	if s.Action > ActionPowerCycle || s.PreAction > PreMsgInt {
		return nil, fmt.Errorf("%w: action %d, pre-action %d", ErrState, s.Action, s.PreAction)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.user != userNone {
		return nil, fmt.Errorf("%w: the watchdog is in use already", ErrState)
	}
	w.imported = true // Register must not stop or restart the timer now
	w.st = timerSettings{running: s.Running, action: s.Action, preAction: s.PreAction, timeout: s.Timeout,
		pretimeout: s.Pretimeout, ipmi10: s.IPMI10}
	w.startOnHB, w.needSet, w.needHB, w.expectClose, w.pinged = s.StartOnHeartbeat, s.NeedSet, s.NeedReset, s.ExpectClose, s.Pinged
	w.bootStat, w.bootKnown, w.dataToRead, w.panicked = s.BootStatus, s.BootKnown, s.DataToRead, s.Panicked
	w.stats = s.Stats
	if !s.FileOpen {
		return nil, nil
	}
	w.user = userFile
	return &file{w: w}, nil
}

// KeepState undoes ExportState after a rollback: this process drives the
// timer again (and re-arms it with the panic timeout when it stops).
func (w *Watchdog) KeepState() {
	w.mu.Lock()
	w.exported = false
	w.mu.Unlock()
}
