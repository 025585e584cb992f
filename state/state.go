// Package state is the versioned encoding of everything ipmi-cuse hands to
// the process that takes over its devices at an upgrade: every open file of
// every CUSE device (file handle, open flags, poll handle and, for
// /dev/ipmi0, the receive queue, msgids, gets-events flag, command
// registrations and timing defaults), the interface's addresses and LUNs per
// channel, the message handler's sequence table and waiting events, and the
// watchdog's armed settings with the /dev/watchdog file's magic-close state.
//
// The encoding is a fixed header (magic, format version, CRC-32C and length
// of the body) followed by a JSON body. A binary refuses a version it does
// not know (ErrUnknownVersion) instead of guessing, and refuses a body that
// is damaged or inconsistent (ErrCorrupt).
package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/ipmi-cuse/ipmi-cuse/ioctl"
	"github.com/ipmi-cuse/ipmi-cuse/msghandler"
	"github.com/ipmi-cuse/ipmi-cuse/watchdog"
)

// Version is the format this binary writes and the only one it reads.
// Bump it for any change a binary of the previous version would misread.
const Version = 1

// MaxSize bounds an encoded state: 30 files × 100 queued messages of 300
// bytes fit many times over.
const MaxSize = 64 << 20

// headerSize is magic (8) + version (4) + CRC-32C of the body (4) + body
// length (8).
const headerSize = 24

// magic starts every encoded state.
var magic = [8]byte{'I', 'P', 'M', 'I', 'C', 'U', 'S', 'E'}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sentinel errors of Decode.
var (
	// ErrUnknownVersion means the state was written in a format version
	// this binary does not read.
	ErrUnknownVersion = errors.New("state: unknown format version")
	// ErrCorrupt means the bytes are not a whole, consistent state.
	ErrCorrupt = errors.New("state: not a valid ipmi-cuse state")
)

// Device kinds.
const (
	// KindIPMI is a /dev/ipmiN device (ioctl.Device).
	KindIPMI = "ipmi"
	// KindWatchdog is a /dev/watchdog-compatible device (watchdog.Watchdog).
	KindWatchdog = "watchdog"
)

// State is one hand-over.
type State struct {
	// Devices are the CUSE devices, in the order of the channel
	// descriptors handed over with the state.
	Devices []Device `json:"devices"`
	// IPMI is the /dev/ipmiN device's interface-wide state.
	IPMI *ioctl.DeviceState `json:"ipmi,omitempty"`
	// Handler is the message handler's state.
	Handler *msghandler.State `json:"handler,omitempty"`
	// Watchdog is the BMC watchdog's state (when the daemon drives it).
	Watchdog *watchdog.State `json:"watchdog,omitempty"`
	// Hardware names the hardware descriptors handed over after the
	// channels, in order (for example "kcs-devport").
	Hardware []string `json:"hardware,omitempty"`
	// More are the further interfaces (a daemon serving several BMCs,
	// /dev/ipmi1...), each with its own device. IPMI and Handler above
	// belong to the one KindIPMI device that has no entry here. A binary
	// that predates this field refuses a state that has it (an unknown
	// field), so the format version stays 1: every state it could read
	// reads the same.
	More []Interface `json:"more,omitempty"`
}

// Interface is the state of one further interface: its KindIPMI device's
// interface-wide state and its message handler's.
type Interface struct {
	// Device is the name of its KindIPMI device in Devices.
	Device string `json:"device"`
	// IPMI is the device's interface-wide state.
	IPMI ioctl.DeviceState `json:"ipmi"`
	// Handler is its message handler's state (nil: start it afresh).
	Handler *msghandler.State `json:"handler,omitempty"`
}

// Interface returns the further interface whose device is name, or nil.
func (s *State) Interface(name string) *Interface {
	for i := range s.More {
		if s.More[i].Device == name {
			return &s.More[i]
		}
	}
	return nil
}

// Device is one CUSE device and its open files.
type Device struct {
	// Name is the device name (DEVNAME): the node is /dev/Name.
	Name string `json:"name"`
	// Kind is KindIPMI or KindWatchdog.
	Kind string `json:"kind"`
	// LastFh is the highest file handle the server issued.
	LastFh uint64 `json:"last_fh"`
	// Files are the open files.
	Files []File `json:"files,omitempty"`
	// Requests are blocked READs (a read of /dev/watchdog waiting for a
	// pretimeout) the hand-over took back unanswered, as the kernel sent
	// them: the next process runs and answers them (cuse.Resume.Requests).
	// A binary that predates this field refuses a state that has it.
	Requests [][]byte `json:"requests,omitempty"`
}

// MaxRequest bounds one carried request: a READ is its header and
// struct fuse_read_in.
const MaxRequest = 4096

// File is one open file of a device.
type File struct {
	Fh    uint64 `json:"fh"`
	Flags uint32 `json:"flags"`
	// Kh is the kernel's poll handle of the file (0: never polled).
	Kh uint64 `json:"kh,omitempty"`
	// IPMI is the file's state on a KindIPMI device.
	IPMI *ioctl.FileState `json:"ipmi,omitempty"`
}

// Encode returns s in the current format. It fails only if s is
// inconsistent (see Validate).
func Encode(s *State) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("state: encode: %w", err)
	}
	if len(body) > MaxSize-headerSize {
		return nil, fmt.Errorf("state: encode: %d bytes, more than %d", len(body), MaxSize)
	}
	out := make([]byte, headerSize, headerSize+len(body))
	copy(out, magic[:])
	binary.LittleEndian.PutUint32(out[8:], Version)
	binary.LittleEndian.PutUint32(out[12:], crc32.Checksum(body, castagnoli))
	binary.LittleEndian.PutUint64(out[16:], uint64(len(body)))
	return append(out, body...), nil
}

// Decode parses b. It returns an error wrapping ErrUnknownVersion for a
// format version other than Version, and ErrCorrupt for anything that is
// not a whole, consistent state.
func Decode(b []byte) (*State, error) {
	if len(b) < headerSize || !bytes.Equal(b[:8], magic[:]) {
		return nil, fmt.Errorf("%w: no ipmi-cuse state header (%d bytes)", ErrCorrupt, len(b))
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != Version {
		return nil, fmt.Errorf("%w: the state is format version %d and this binary reads only version %d "+
			"(a binary of another release wrote it); refusing it rather than guessing", ErrUnknownVersion, v, Version)
	}
	n := binary.LittleEndian.Uint64(b[16:])
	if n != uint64(len(b)-headerSize) || n > MaxSize {
		return nil, fmt.Errorf("%w: header says %d body bytes, %d present", ErrCorrupt, n, len(b)-headerSize)
	}
	body := b[headerSize:]
	if sum := crc32.Checksum(body, castagnoli); sum != binary.LittleEndian.Uint32(b[12:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var s State
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the state", ErrCorrupt)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks what the packages that import the parts cannot see on
// their own: device names and kinds, file handles, and the agreement
// between the devices and the interface-wide parts. Each part is checked
// again, in detail, by the package that imports it.
func (s *State) Validate() error {
	names := make(map[string]bool)
	watchdogFiles := 0
	// The further interfaces' devices, and how many IPMI devices use the
	// top-level interface state (at most one).
	more := make(map[string]bool, len(s.More))
	for i, m := range s.More {
		if m.Device == "" || more[m.Device] {
			return fmt.Errorf("%w: further interface %d: empty or duplicate device %q", ErrCorrupt, i, m.Device)
		}
		more[m.Device] = true
	}
	firstIPMI := 0
	for i, d := range s.Devices {
		if d.Name == "" || names[d.Name] {
			return fmt.Errorf("%w: device %d: empty or duplicate name %q", ErrCorrupt, i, d.Name)
		}
		names[d.Name] = true
		for _, r := range d.Requests {
			if len(r) == 0 || len(r) > MaxRequest {
				return fmt.Errorf("%w: device %s: a carried request of %d bytes", ErrCorrupt, d.Name, len(r))
			}
		}
		fhs := make(map[uint64]bool)
		for _, f := range d.Files {
			if f.Fh == 0 || fhs[f.Fh] || f.Fh > d.LastFh {
				return fmt.Errorf("%w: device %s: file handle %d zero, duplicate or above the last issued (%d)",
					ErrCorrupt, d.Name, f.Fh, d.LastFh)
			}
			fhs[f.Fh] = true
			switch {
			case d.Kind == KindIPMI && f.IPMI == nil:
				return fmt.Errorf("%w: device %s: file %d has no IPMI state", ErrCorrupt, d.Name, f.Fh)
			case d.Kind == KindWatchdog && f.IPMI != nil:
				return fmt.Errorf("%w: device %s: watchdog file %d has IPMI state", ErrCorrupt, d.Name, f.Fh)
			}
		}
		switch d.Kind {
		case KindIPMI:
			if more[d.Name] {
				delete(more, d.Name)
				break
			}
			if firstIPMI++; s.IPMI == nil || firstIPMI > 1 {
				return fmt.Errorf("%w: device %s without its interface's state", ErrCorrupt, d.Name)
			}
		case KindWatchdog:
			if more[d.Name] {
				return fmt.Errorf("%w: watchdog device %s has an interface's state", ErrCorrupt, d.Name)
			}
			if s.Watchdog == nil {
				return fmt.Errorf("%w: device %s without the watchdog's state", ErrCorrupt, d.Name)
			}
			watchdogFiles += len(d.Files)
		default:
			return fmt.Errorf("%w: device %s: unknown kind %q", ErrCorrupt, d.Name, d.Kind)
		}
	}
	for name := range more {
		return fmt.Errorf("%w: further interface of device %s, which is not in the state", ErrCorrupt, name)
	}
	if s.Watchdog != nil && (watchdogFiles > 1 || (watchdogFiles == 1) != s.Watchdog.FileOpen) {
		return fmt.Errorf("%w: %d open watchdog files, watchdog state says open=%v", ErrCorrupt, watchdogFiles, s.Watchdog.FileOpen)
	}
	return nil
}
