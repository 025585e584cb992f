// Package msghandler is the userspace counterpart of the parts of the
// kernel's ipmi_msghandler and ipmi_si that are not a plain
// system-interface pass-through: IPMB/LAN bridging through Send Message,
// the SMS_ATN flag chain, event polling and delivery, incoming command
// dispatch, and maintenance mode's effects.
//
// A Handler sits between the engine (sched) and the open files (ioctl):
//
//   - It implements ioctl.Bridge: SEND to an IPMB (0x01), broadcast (0x41)
//     or LAN (0x04) address becomes a Send Message (06/34) request in a
//     64-slot sequence table, retried every retry interval (default 2 s, 3 s
//     within 30 s of an IPMB maintenance command) up to the retry count
//     (default 4; broadcasts 0), failed with 0xC3 when no reply came, or at
//     once with the Send Message completion code if it is not retryable
//     (0x00, 0xC0, 0x81, 0x82, 0x83 are); as in the kernel, only that
//     byte of the reply counts, not its netfn and command. A response (odd netfn) to an
//     incoming command goes out without a slot and produces recv_type 4.
//     EAGAIN when all 64 slots are in use; close() frees a file's slots
//     silently.
//   - HandleAttention is the engine's sched.Config.OnAttention hook: Get
//     Message Flags, then pretimeout (Clear Message Flags 0x08 and
//     Config.OnPretimeout), receive queue (Get Message until empty: bridged
//     replies are matched to their slot, late or mismatched ones dropped
//     and counted in Stats.Unmatched; incoming commands go to the
//     registered file as recv_type 3 or get an automatic 0xC1 answer), and
//     event buffer (Read Event Message Buffer until empty). It is resumable
//     across engine turns so ATN work never starves the priority lane.
//   - A 1 s tick counts the retry timers down and, while a file has
//     gets_events and maintenance mode is not in effect, polls the event
//     buffer (Get/Set BMC Global Enables, Read Event Message Buffer until
//     empty) through the engine's normal lane. Events go to every
//     gets_events file as recv_type 2, or wait (at most 25, then dropped
//     with one warning) for the first file that sets gets_events.
//   - Start runs the kernel's start-up sequence: Get Device ID, enable the
//     event message buffer (bit 0x04 only: no IRQ), Clear Message Flags
//     0x08, and the Get Channel Info scan of channels 0..15 that decides
//     which channels take IPMB and which LAN addresses.
//
// Every transaction goes through the engine: Submit on the normal lane
// with the handler's own Owner (DefaultOwner, below ioctl.OwnerBase), or the
// TxFunc the engine passes to HandleAttention. Nothing waits on the engine
// from the engine goroutine.
//
// # Wiring (cmd/ipmi-cuse)
//
//	h := msghandler.New(msghandler.Config{Logger: log, OnPretimeout: onPretimeout})
//	engine := sched.New(host, sched.Config{ProbeInterval: ..., Logger: log,
//		Attention: msghandler.AttentionCheck(host), OnAttention: h.HandleAttention})
//	dev := ioctl.NewDevice(ioctl.Config{Submit: engine.Submit, Bridge: h, ...})
//	if err := h.Start(ctx, engine.Submit, dev); err != nil { log.Warn(...) }
//	defer h.Close() // before engine.Close
//
// # Differences from the kernel
//
//   - Maintenance mode does not make polling faster: the engine has no
//     kipmid-style sleep between status reads to shorten.
//   - The Get Device ID cache and the channel rescan on device-id changes
//     are not implemented: the scan runs once, at Start.
//   - The sequence table's retry timers count ticks of Config.TickInterval
//     as 1000 ms each, like the kernel's 1 s timer (a 2 s retry time
//     expires 1-2 s after the Send Message reply).
package msghandler
