// Package bmcsim is a simulated BMC: a message-level core that holds real
// state (watchdog, SEL, SDR, FRU, chassis, message queues), and adapters in
// sub-packages that put it behind a KCS port or QEMU's ipmi-bmc-extern
// socket. It is the workhorse of the project's tests and the daemon's
// --bmc=sim mode.
package bmcsim

// Responder answers IPMI messages at the message level. Adapters (KCS port,
// OpenIPMI VM protocol) move bytes to and from it.
type Responder interface {
	// Handle answers one request, req = netfn<<2|lun, cmd, data..., by
	// appending the response (netfn|1)<<2|lun, cmd, completion code,
	// data... to resp and returning it.
	Handle(req, resp []byte) []byte
	// Attention reports whether the BMC wants the host's attention: a
	// message flag is set (watchdog pretimeout, receive queue, event
	// buffer). The KCS adapter shows it as SMS_ATN.
	Attention() bool
}
