// Package watchdog drives the BMC watchdog timer (IPMI Set/Reset/Get
// Watchdog Timer) on the engine's priority lane, with two front-ends for
// the one timer:
//
//   - a built-in patter (Watchdog.Run): arms the timer (timer use SMS/OS,
//     "don't stop"), pats it every PatInterval while the daemon is healthy,
//     and stops it on a clean shutdown unless NoWayOut;
//   - a /dev/watchdog-compatible device (Watchdog implements cuse.Device),
//     so existing watchdog daemons use the BMC watchdog without the kernel's
//     ipmi_watchdog module.
//
// The daemon's attention handler calls Watchdog.Pretimeout when Get Message
// Flags shows the pretimeout flag (0x08).
//
// # One user at a time
//
// The built-in patter and a /dev/watchdog opener drive the same BMC timer,
// so they exclude each other: Open fails with EBUSY while Run runs, and Run
// fails with ErrBusy while the device is open. A second opener gets EBUSY,
// as in the kernel. The daemon should refuse to enable both front-ends.
//
// # Commands, as the kernel's ipmi_watchdog sends them
//
// Every request is a sched.Request on sched.LanePriority with a deadline of
// RequestTimeout. Set Watchdog Timer carries timer use 0x44 (SMS/OS, don't
// stop) while running and 0x04 to stop, the action in bits 2:0 of byte 1,
// the pre-timeout interrupt in bits 6:4 and the pretimeout in byte 2 only
// while running with a pretimeout, and the countdown in 100 ms units,
// little-endian. The heartbeat is Reset Watchdog Timer; a Reset answered
// 0x80 (the BMC lost its settings) re-sends the Set and retries, up to
// three times, then fails with ErrSettingsLost (EIO). The first heartbeat
// after a pretimeout re-sends the full Set instead of a bare Reset. With
// IPMI10, where a Set stops the timer, a Reset follows every Set.
//
// # Where this device differs from the kernel's ipmi_watchdog
//
// The kernel's ipmi_watchdog is poorer than the generic Linux watchdog API
// (drivers/watchdog/watchdog_dev.c). This device does what the generic API
// promises:
//
//   - WDIOC_GETSUPPORT advertises WDIOF_SETTIMEOUT, WDIOF_KEEPALIVEPING,
//     WDIOF_MAGICCLOSE and WDIOF_PRETIMEOUT (ipmi_watchdog: 0), identity
//     "IPMI", firmware version 1.
//   - WDIOC_GETTIMELEFT works: Get Watchdog Timer's present countdown in
//     whole seconds (ipmi_watchdog: ENOTTY).
//   - WDIOC_GETSTATUS reports WDIOF_MAGICCLOSE while a 'V' is armed and
//     WDIOF_KEEPALIVEPING after a heartbeat since the last GETSTATUS
//     (ipmi_watchdog: always 0).
//   - WDIOC_GETBOOTSTATUS reports WDIOF_CARDRESET when the BMC's SMS/OS
//     expiration flag is set, asked once (ipmi_watchdog: ENOTTY).
//   - WDIOC_SETTIMEOUT range-checks (1..6553 s, else EINVAL), drops a
//     pretimeout the new timeout cannot hold, restarts a running countdown,
//     and writes the timeout back (ipmi_watchdog: no check, no write-back).
//     WDIOC_SETPRETIMEOUT needs 0..255 s and less than the timeout.
//   - WDIOC_SETOPTIONS returns the errors of the commands it sends, and
//     WDIOS_DISABLECARD fails with EBUSY under nowayout (ipmi_watchdog
//     ignores both).
//   - read and poll always report a pretimeout (the kernel only with
//     preop_give_data); a pretimeout from before the open is not reported.
//
// As ipmi_watchdog (and unlike the generic API), open does not start the
// timer: the first heartbeat (write or WDIOC_KEEPALIVE) or WDIOS_ENABLECARD
// does. A close without the magic 'V' sends one heartbeat, which starts a
// timer the opener never started, as in the kernel. With ActionNone the
// timer still runs (the kernel treats action none as "stopped"), so a
// pretimeout can be had without an expiry action.
//
// Errors map to errno as: a non-zero completion code or a bad argument →
// EINVAL (the kernel's answer to an error completion), lost settings or a
// request that never got an answer (deadline, engine closed) → EIO, an
// interrupted caller → EINTR.
package watchdog
