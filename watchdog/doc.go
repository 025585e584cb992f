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
// # Start-up, as ipmi_watchdog registers
//
// Register does what the kernel's driver does when it registers with an
// interface: it stops the timer with its own settings (timer use SMS/OS,
// action and pre-action none, pretimeout 0, its timeout), so a timer the
// firmware left armed cannot act, or with StartNow (start_now=1) starts it
// with its settings. Leave re-arms a running timer with PanicTimeout when
// the daemon stops for good (panic_wdt_timeout's nearest equivalent).
//
// # ipmi_watchdog's answers, or the generic API's
//
// By default the device answers as the kernel's ipmi_watchdog, so daemons
// log and do the same: WDIOC_GETSUPPORT gives options 0, firmware version
// 1, identity "IPMI"; WDIOC_GETSTATUS always 0; WDIOC_GETBOOTSTATUS,
// WDIOC_GETTIMELEFT and WDIOC_GETTEMP fail with ENOTTY; WDIOC_SETOPTIONS
// ignores the BMC's answers, and WDIOS_DISABLECARD stops the timer even
// under nowayout; a timer started with action none does not run (the
// kernel's "stopped"); a pretimeout is readable only with PreOpGiveData.
// Two differences remain: WDIOC_SETTIMEOUT and WDIOC_SETPRETIMEOUT refuse
// values Set Watchdog Timer cannot carry (EINVAL; the kernel sends them
// truncated), and SETTIMEOUT drops a pretimeout the new timeout cannot
// hold (the kernel sends it and the BMC refuses the Set).
//
// With Config.GenericAPI it does what the generic Linux watchdog API
// (drivers/watchdog/watchdog_dev.c) promises instead:
//
//   - WDIOC_GETSUPPORT advertises WDIOF_SETTIMEOUT, WDIOF_KEEPALIVEPING,
//     WDIOF_MAGICCLOSE and WDIOF_PRETIMEOUT.
//   - WDIOC_GETTIMELEFT works: Get Watchdog Timer's present countdown in
//     whole seconds.
//   - WDIOC_GETSTATUS reports WDIOF_MAGICCLOSE while a 'V' is armed and
//     WDIOF_KEEPALIVEPING after a heartbeat since the last GETSTATUS.
//   - WDIOC_GETBOOTSTATUS reports WDIOF_CARDRESET when the BMC's SMS/OS
//     expiration flag is set, asked once.
//   - WDIOC_SETOPTIONS returns the errors of the commands it sends, and
//     WDIOS_DISABLECARD fails with EBUSY under nowayout.
//   - read and poll always report a pretimeout; the timer runs with
//     action none, so a pretimeout can be had without an expiry action.
//
// Either way a pretimeout from before the open is not reported, and no
// SIGIO is sent (CUSE has no fasync). CUSE delivers a close's RELEASE after
// close(2) returned, so Open waits for a release in progress (or one that
// starts within 250 ms) before it answers EBUSY.
//
// As ipmi_watchdog (and unlike the generic API), open does not start the
// timer: the first heartbeat (write or WDIOC_KEEPALIVE) or WDIOS_ENABLECARD
// does. A close without the magic 'V' sends one heartbeat, which starts a
// timer the opener never started, as in the kernel. The built-in patter
// runs the timer with ActionNone too.
//
// A client's Set Watchdog Timer through /dev/ipmi0 is not coordinated with
// the device, as with the kernel's drivers: the BMC takes its settings,
// and the device's next heartbeat (a Reset) restarts the countdown with
// them, until the device sends its own Set again (magic close, a
// pretimeout's re-arm, SETTIMEOUT).
//
// Errors map to errno as: a non-zero completion code or a bad argument →
// EINVAL (the kernel's answer to an error completion), lost settings or a
// request that never got an answer (deadline, engine closed) → EIO, an
// interrupted caller → EINTR.
package watchdog
