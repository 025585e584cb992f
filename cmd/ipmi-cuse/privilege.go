package main

import (
	"log/slog"
	"os"

	"github.com/ipmi-cuse/ipmi-cuse/kcs"
	"github.com/ipmi-cuse/ipmi-cuse/privdrop"
	"github.com/ipmi-cuse/ipmi-cuse/sysif"
)

// keepDevPort opens /dev/port while the daemon still may (before
// dropPrivileges), when the interface is reached with in/out instructions
// and so has no descriptor of its own, and adds it to bmc.Files: the
// descriptor an upgrade hands to its successor, which has no capabilities
// and cannot call iopl (see the package doc). It returns a function that
// closes it. Failing to open it is logged, not fatal: this process keeps
// its iopl, only an upgrade would lack port access.
func keepDevPort(bmc *sysif.Opened, portIO string, log *slog.Logger) (closeFn func()) {
	if bmc == nil || len(bmc.Files) > 0 || portIO != "ioport" || bmc.KCS == nil && bmc.BT == nil {
		return func() {}
	}
	f, err := os.OpenFile(kcs.DevPortPath, os.O_RDWR, 0)
	if err != nil {
		log.Warn("cannot keep /dev/port for an upgrade: a successor without capabilities will not reach the ports", "err", err)
		return func() {}
	}
	bmc.Files = append(bmc.Files, f)
	return func() { f.Close() }
}

// dropPrivileges ends the privileged set-up: every thread loses every
// capability and gets no_new_privs, after switching to --user if given.
// --keep-privileges skips it (logged loudly).
func dropPrivileges(o options, log *slog.Logger) error {
	if o.keepPrivileges {
		log.Warn("--keep-privileges: running with every capability the daemon was started with")
		return nil
	}
	if err := privdrop.Drop(privdrop.Config{User: o.user}); err != nil {
		return err
	}
	log.Info("privileges dropped", "user", o.user, "capabilities", "none", "no_new_privs", true)
	return nil
}
