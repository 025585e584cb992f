// Package ioctl implements the Linux IPMI character-device ABI (/dev/ipmiN,
// drivers/char/ipmi/ipmi_devintf.c and the user-facing half of
// ipmi_msghandler.c) in userspace.
//
// abi.go declares the ABI once: the IPMICTL_* numbers (built from their _IOC
// parts), the x86-64 and 32-bit compat struct layouts with their sizes, and
// explicit little-endian Decode/Encode functions over byte slices. User
// memory arrives as bytes the kernel copied, so nothing casts user data.
//
// device.go and file.go implement cuse.Device: each open file is one
// message-handler "user" with its own receive queue, and every ioctl asks
// the kernel for exactly the user ranges the real driver would touch,
// through CUSE unrestricted-ioctl retries, in the order the real driver
// touches them, so that the first failing copy or check is the kernel's.
// SEND_COMMAND to the system interface becomes one sched.Request; its
// completion is formatted as the kernel formats a BMC reply and queued on
// the file.
//
// SEND takes 3 rounds, with data or without: the struct, then the address
// together with the data, then the submit. The address and the data share
// a round only when the struct shows that no check the kernel makes
// between their two copies can fail (addr_len of at least 8, data_len of
// at most 272); otherwise the address comes alone and its check fails the
// call, as in handle_send_req.
//
// # Choices where the kernel gives no single answer
//
//   - Request deadline: DefaultRequestTimeout (60 s), about how long the
//     kernel's KCS driver takes to give up on a dead BMC. An expired
//     deadline is reported with completion code 0xC3 (timeout), any other
//     engine error with 0xFF (what KCS reports when hosed); see
//     DefaultCompletionCode and Config.CompletionCode.
//   - Per-file limit: a file may have at most MaxMsgsPerUser (100) messages
//     in flight or received-but-unread; further sends get EBUSY. Linux
//     6.1 counts only in-flight messages (its queue is unbounded); newer
//     kernels count unread replies too, which is what bounds the queue here,
//     so no reply is ever dropped.
//   - IPMB, broadcast and LAN addresses (bridging through Send Message) go
//     to Config.Bridge (the msghandler package) after the generic address
//     checks, with the SETTIME or per-file timing; without a Bridge they
//     get EINVAL, the kernel's answer for a channel whose medium is not
//     IPMB/LAN. IPMB-direct gets EAFNOSUPPORT exactly as with ipmi_si.
//   - Events and incoming commands are fed by the Bridge through
//     Device.Deliver, DeliverEvent and CmdReceiver (bridge.go);
//     SET_GETS_EVENTS and close() notify it. The command registrations
//     keep the kernel's exclusivity and ENOENT rules.
//
// # Known differences from the kernel
//
//   - SEND re-reads its struct (and the address) in every round, where the
//     kernel reads each once. Only a caller that rewrites them while its
//     own ioctl runs can tell: send acts on the latest struct, starting
//     over from the address round when the lengths it got no longer match
//     that struct; a pointer changed without a length change between two
//     rounds leaves that round's bytes read through the old pointer.
//   - SEND copies the data in the address's round: an address of 8 bytes
//     or more that fails validation (a bad type, channel or LUN), sent
//     together with a data pointer that faults, gets EFAULT where the
//     kernel, which validates the address before it copies the data,
//     answers EINVAL. Both are errors for a request no real client makes;
//     asking for the data in a round of its own would cost every SEND
//     with data a fourth CUSE round.
//   - RECEIVE reads the caller's address and data buffers ahead of writing
//     them, so a bad pointer fails with EFAULT before the message is
//     consumed (as the kernel's put-back does); unlike the kernel, the
//     address buffer is then not written when only the data pointer is bad.
//     A buffer that is readable but not writable still loses the message.
package ioctl
