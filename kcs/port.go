// Package kcs drives an IPMI Keyboard Controller Style (KCS) system
// interface from the host side (IPMI v2.0 section 9), over a small port
// interface so the same code runs against real I/O ports and a simulated BMC.
package kcs

// Port is the pair of KCS registers as the host sees them: the data register
// at the base address and the status (read) / command (write) register at
// base+spacing. It is the only way the KCS host state machine touches
// hardware, so tests and the simulated BMC can stand in for real ports.
type Port interface {
	// ReadStatus reads the status register.
	ReadStatus() (uint8, error)
	// WriteCommand writes a control code to the command register.
	WriteCommand(code uint8) error
	// ReadData reads the Data Out register (clears OBF).
	ReadData() (uint8, error)
	// WriteData writes the Data In register (sets IBF).
	WriteData(b uint8) error
}
