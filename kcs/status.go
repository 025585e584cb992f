package kcs

import "strings"

// Status is the value of the KCS status register (IPMI v2.0 table 9-1).
// The host state machine decides every step from it, so it gets a type
// with accessors and a readable String for errors and logs.
type Status uint8

// Status register bits (IPMI v2.0 section 9.7).
const (
	// OBF (output buffer full): the BMC has put a byte in Data Out.
	OBF Status = 0x01
	// IBF (input buffer full): the host wrote a byte the BMC has not taken yet.
	IBF Status = 0x02
	// SMSAtn is SMS_ATN: the BMC has messages or events for the host.
	SMSAtn Status = 0x04
	// CD (command/data) is set when the last host write went to the command register.
	CD Status = 0x08
	// OEM1 is an OEM-defined bit (some Dell BMCs use it as a flag).
	OEM1 Status = 0x10
	// OEM2 is an OEM-defined bit.
	OEM2 Status = 0x20
	// StateMask selects the two state bits 7:6.
	StateMask Status = 0xC0
)

// State is the interface state held in status bits 7:6.
type State uint8

// The four interface states (IPMI v2.0 table 9-2).
const (
	// StateIdle: no transaction in progress.
	StateIdle State = 0
	// StateRead: the BMC is sending a response (or an error status byte).
	StateRead State = 1
	// StateWrite: the BMC is accepting request bytes.
	StateWrite State = 2
	// StateError: the BMC detected a protocol error; the host must run the
	// GET_STATUS/ABORT sequence.
	StateError State = 3
)

// NoInterface is what a status read returns when nothing answers at the
// port address (a floating bus reads all ones).
const NoInterface Status = 0xFF

// Control codes (IPMI v2.0 table 9-3).
const (
	// CmdGetStatusAbort (GET_STATUS/ABORT), written to the command register,
	// aborts any transaction and starts the error status read.
	CmdGetStatusAbort uint8 = 0x60
	// CmdWriteStart (WRITE_START), written to the command register, starts a request.
	CmdWriteStart uint8 = 0x61
	// CmdWriteEnd (WRITE_END), written to the command register before the
	// last request byte.
	CmdWriteEnd uint8 = 0x62
	// CmdRead (READ) is written to the DATA register to ask for the next
	// response byte.
	CmdRead uint8 = 0x68
)

// KCS error status codes, read during the GET_STATUS/ABORT sequence
// (IPMI v2.0 table 9-5).
const (
	// ErrCodeNone: no error.
	ErrCodeNone uint8 = 0x00
	// ErrCodeAborted: the transfer in progress was aborted by GET_STATUS/ABORT.
	ErrCodeAborted uint8 = 0x01
	// ErrCodeIllegalControl: an illegal or out-of-sequence control code.
	ErrCodeIllegalControl uint8 = 0x02
	// ErrCodeLength: length error (e.g. request overrun).
	ErrCodeLength uint8 = 0x06
	// ErrCodeUnspecified: unspecified error.
	ErrCodeUnspecified uint8 = 0xFF
)

// Limits shared with the Linux driver (MAX_KCS_WRITE_SIZE, MAX_KCS_READ_SIZE).
const (
	// MaxRequest is the longest request (netfn/lun, cmd, data) the host sends.
	MaxRequest = 272
	// MaxResponse is the longest response kept; extra bytes are discarded.
	MaxResponse = 272
)

// State returns the interface state in bits 7:6.
func (s Status) State() State { return State(s >> 6) }

// Has reports whether all bits in b are set.
func (s Status) Has(b Status) bool { return s&b == b }

// String names a state.
func (st State) String() string {
	switch st {
	case StateIdle:
		return "IDLE"
	case StateRead:
		return "READ"
	case StateWrite:
		return "WRITE"
	default:
		return "ERROR"
	}
}

// String formats the status as hex, state and set flags, e.g.
// "0x83 (WRITE|IBF|OBF)".
func (s Status) String() string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.WriteString("0x")
	b.WriteByte(hex[s>>4])
	b.WriteByte(hex[s&0xF])
	b.WriteString(" (")
	b.WriteString(s.State().String())
	for _, f := range [...]struct {
		bit  Status
		name string
	}{{IBF, "IBF"}, {OBF, "OBF"}, {SMSAtn, "SMS_ATN"}, {CD, "C/D"}, {OEM1, "OEM1"}, {OEM2, "OEM2"}} {
		if s&f.bit != 0 {
			b.WriteByte('|')
			b.WriteString(f.name)
		}
	}
	b.WriteByte(')')
	return b.String()
}
