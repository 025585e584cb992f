package bmcsim

import "github.com/u-root/u-root/pkg/ipmi"

// Network functions (IPMI v2.0 table 5-1), request values.
const (
	NetFnChassis = 0x00
	NetFnSensor  = 0x04
	NetFnApp     = 0x06
	NetFnStorage = 0x0A
)

// Completion codes (IPMI v2.0 table 5-2). The generic ones come from
// u-root's pkg/ipmi so the project names each code once; the
// command-specific ones u-root lacks are declared here.
const (
	ccOK            = byte(ipmi.IPMI_CC_OK)
	ccInvalidCmd    = byte(ipmi.IPMI_CC_INV_CMD)
	ccOutOfSpace    = byte(ipmi.IPMI_CC_OUT_OF_SPACE)
	ccResCanceled   = byte(ipmi.IPMI_CC_RES_CANCELED)
	ccBadLength     = byte(ipmi.IPMI_CC_REQ_DATA_INV_LENGTH)
	ccOutOfRange    = byte(ipmi.IPMI_CC_PARAM_OUT_OF_RANGE)
	ccCantReturn    = byte(ipmi.IPMI_CC_CANT_RET_NUM_REQ_BYTES)
	ccNotPresent    = byte(ipmi.IPMI_CC_REQ_DATA_NOT_PRESENT)
	ccInvalidField  = byte(ipmi.IPMI_CC_INV_DATA_FIELD_IN_REQ)
	ccNotSupportNow = byte(ipmi.IPMI_CC_NOT_SUPPORTED_PRESENT_STATE)

	// CCWatchdogUninitialised answers Reset Watchdog Timer when no Set
	// Watchdog Timer came since the BMC's reset (IPMI v2.0 §27.5).
	CCWatchdogUninitialised = 0x80
	// CCQueueEmpty answers Get Message and Read Event Message Buffer when
	// there is nothing to read (IPMI v2.0 §22.6, §22.8).
	CCQueueEmpty = 0x80
	// CCNAKOnWrite answers Send Message when no device acknowledged the
	// IPMB write (IPMI v2.0 §22.7, table 22-10).
	CCNAKOnWrite = 0x83
)

// Message flags (Get Message Flags, IPMI v2.0 §22.4).
const (
	FlagReceiveMessage = 0x01 // receive message queue has a message
	FlagEventBuffer    = 0x02 // event message buffer full
	FlagPretimeout     = 0x08 // watchdog pre-timeout interrupt occurred
)

// BMC Global Enables bits (IPMI v2.0 §22.1).
const (
	EnableReceiveIRQ  = 0x01 // receive message queue interrupt
	EnableEventIRQ    = 0x02 // event message buffer full interrupt
	EnableEventBuffer = 0x04 // event message buffer
	EnableSEL         = 0x08 // system event logging
)
