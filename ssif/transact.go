package ssif

import (
	"errors"
	"strconv"
	"time"
)

// Transact sends one request and reads its response. msg is
// netfn<<2|lun, cmd, data...; the response (netfn<<2|lun, cmd, cc,
// data...) is appended to resp[:0] and returned.
//
// A request over 32 bytes goes as a multi-part write, a response over 32
// bytes comes as a multi-part read, both as far as the BMC's capabilities
// allow. A NAKed write is retried WriteRetries times (the whole message,
// as the kernel restarts it); the response is read every ReadRetryDelay
// while the BMC NAKs, up to ReadRetries times; a multi-part read that goes
// wrong (a NAK, a block out of sequence, a short middle block) starts
// again from its first part within the same budget. Transact never takes
// longer than min(deadline, now+TransactionTimeout) plus one bus transfer.
func (h *Host) Transact(msg, resp []byte, deadline time.Time) ([]byte, error) {
	h.c.transactions.Add(1)
	out, err := h.transact(msg, resp[:0], deadline)
	if err != nil {
		h.c.failures.Add(1)
		var op *OpError
		if errors.As(err, &op) && op.Timeout() {
			h.c.timeouts.Add(1)
		}
	}
	return out, err
}

func (h *Host) transact(msg, resp []byte, deadline time.Time) ([]byte, error) {
	caps := h.caps.Load()
	if len(msg) < 2 {
		return resp, &OpError{Phase: PhaseRequest, Err: ErrRequestTooShort}
	}
	if len(msg) > caps.MaxWrite {
		return resp, &OpError{Phase: PhaseRequest, Err: ErrRequestTooLong}
	}
	dl := time.Now().Add(h.cfg.TransactionTimeout)
	if !deadline.IsZero() && deadline.Before(dl) {
		dl = deadline
	}
	if err := h.write(msg, dl); err != nil {
		return resp, err
	}
	if !h.pause(h.cfg.FirstReadDelay, dl) {
		return resp, &OpError{Phase: PhaseRead, Part: CmdRead, Err: ErrTimeout}
	}
	return h.read(resp, dl, caps)
}

// pause sleeps d, or until dl; it reports whether time remains after it.
func (h *Host) pause(d time.Duration, dl time.Time) bool {
	if rem := time.Until(dl); rem < d {
		d = rem
	}
	if d > 0 {
		h.cfg.Sleep(d)
	}
	return time.Now().Before(dl)
}

// write sends msg, single- or multi-part, retrying a NAK from the start.
func (h *Host) write(msg []byte, dl time.Time) error {
	var last error
	for try := 1; ; try++ {
		cmd, err := h.writeOnce(msg)
		if err == nil {
			return nil
		}
		if !Retryable(err) {
			return &OpError{Phase: PhaseWrite, Part: cmd, Tries: try, Err: err}
		}
		last = err
		if try > h.cfg.WriteRetries {
			return &OpError{Phase: PhaseWrite, Part: cmd, Tries: try, Err: ErrWriteNAK, Last: last}
		}
		h.c.writeRetries.Add(1)
		if !h.pause(h.cfg.WriteRetryDelay, dl) {
			return &OpError{Phase: PhaseWrite, Part: cmd, Tries: try, Err: ErrTimeout, Last: last}
		}
	}
}

// writeOnce writes every part of msg once and returns the command of the
// part that failed.
func (h *Host) writeOnce(msg []byte) (uint8, error) {
	if len(msg) <= BlockMax {
		h.c.writes.Add(1)
		return CmdWrite, h.bus.WriteBlock(CmdWrite, msg)
	}
	cmd := CmdWriteStart
	for pos := 0; pos < len(msg); {
		n := min(BlockMax, len(msg)-pos)
		if pos > 0 {
			cmd = CmdWriteMiddle
			if pos+n == len(msg) {
				cmd = CmdWriteEnd
			}
		}
		h.c.writes.Add(1)
		h.c.writeParts.Add(1)
		if err := h.bus.WriteBlock(cmd, msg[pos:pos+n]); err != nil {
			return cmd, err
		}
		pos += n
	}
	return cmd, nil
}

// read reads the response: the first block with CmdRead (retried while
// the BMC NAKs), then, for a multi-part response, the middle blocks.
func (h *Host) read(resp []byte, dl time.Time, caps *Caps) ([]byte, error) {
	var last error
	var lastCmd uint8
	for try := 1; ; try++ {
		out, cmd, err := h.readOnce()
		if err == nil {
			if len(out) < 3 {
				return resp, &OpError{Phase: PhaseRead, Part: cmd, Tries: try, Err: &protoError{"response of " + strconv.Itoa(len(out)) + " bytes, no completion code"}}
			}
			return append(resp, out...), nil
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return resp, &OpError{Phase: PhaseRead, Part: cmd, Tries: try, Err: fatal.err}
		}
		if cmd == CmdReadMiddle {
			h.c.multiRestarts.Add(1)
			h.cfg.Logger.Debug("ssif: multi-part read restarted", "err", err)
		} else {
			h.c.readRetries.Add(1)
		}
		last, lastCmd = err, cmd
		if try >= h.cfg.ReadRetries {
			if errors.Is(last, ErrProtocol) {
				return resp, &OpError{Phase: PhaseRead, Part: lastCmd, Tries: try, Err: last}
			}
			return resp, &OpError{Phase: PhaseRead, Part: lastCmd, Tries: try, Err: ErrNoResponse, Last: last}
		}
		if !h.pause(h.cfg.ReadRetryDelay, dl) {
			return resp, &OpError{Phase: PhaseRead, Part: lastCmd, Tries: try, Err: ErrTimeout, Last: last}
		}
	}
}

// fatalError wraps an error that ends the read without retry.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// protoError is a broken SSIF rule; it matches ErrProtocol.
type protoError struct{ what string }

func (e *protoError) Error() string { return ErrProtocol.Error() + ": " + e.what }
func (e *protoError) Unwrap() error { return ErrProtocol }

// readOnce reads one whole response (all parts) into h.rsp. A retryable
// failure (a NAK, a broken multi-part sequence) is returned as is; one
// that retrying cannot fix (a bus failure, a response over 272 bytes) as a
// *fatalError.
func (h *Host) readOnce() ([]byte, uint8, error) {
	h.c.reads.Add(1)
	n, err := h.bus.ReadBlock(CmdRead, h.block[:])
	if err != nil {
		if !Retryable(err) {
			return nil, CmdRead, &fatalError{err}
		}
		return nil, CmdRead, err
	}
	b := h.block[:min(n, BlockMax)]
	if !(len(b) == BlockMax && b[0] == 0x00 && b[1] == 0x01) {
		return b, CmdRead, nil
	}
	// Multi-part: 30 bytes here, then blocks numbered from 0, the last
	// numbered 0xFF; every block but the last carries 31 bytes.
	out := append(h.rsp[:0], b[2:]...)
	for want := 0; ; want++ {
		h.c.reads.Add(1)
		h.c.readParts.Add(1)
		n, err := h.bus.ReadBlock(CmdReadMiddle, h.part[:])
		if err != nil {
			if !Retryable(err) {
				return nil, CmdReadMiddle, &fatalError{err}
			}
			return nil, CmdReadMiddle, err
		}
		p := h.part[:min(n, BlockMax)]
		if len(p) == 0 {
			return nil, CmdReadMiddle, &protoError{"empty block in a multi-part read"}
		}
		num, data := p[0], p[1:]
		if num != 0xFF && len(data) != BlockMax-1 {
			return nil, CmdReadMiddle, &protoError{"middle block " + strconv.Itoa(int(num)) + " of " + strconv.Itoa(len(data)) + " bytes, want 31"}
		}
		if len(out)+len(data) > MaxMessage {
			return nil, CmdReadMiddle, &fatalError{&protoError{"multi-part response longer than " + strconv.Itoa(MaxMessage) + " bytes"}}
		}
		out = append(out, data...)
		if num == 0xFF {
			return out, CmdReadMiddle, nil
		}
		if int(num) != want {
			return nil, CmdReadMiddle, &protoError{"block " + strconv.Itoa(int(num)) + " out of sequence, want " + strconv.Itoa(want)}
		}
		if want >= MaxMessage/(BlockMax-1) {
			return nil, CmdReadMiddle, &fatalError{&protoError{"multi-part response never ends"}}
		}
	}
}

// Attention reports, every FlagsInterval, that the BMC's message flags
// should be read. SSIF has no attention bit to poll (only an optional
// SMBus alert, which i2c-dev does not deliver), so the host asks for the
// flags on a timer, as ipmi_ssif does while someone waits for events,
// messages or a watchdog pretimeout (every 250 ms).
func (h *Host) Attention() (bool, error) {
	now := time.Now()
	last := h.lastFlags.Load()
	if now.UnixNano()-last < int64(h.cfg.FlagsInterval) {
		return false, nil
	}
	h.lastFlags.Store(now.UnixNano())
	return true, nil
}
