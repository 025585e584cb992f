// Command demo boots the testbed VM with QEMU's emulated BMC, serves
// /dev/ipmi0 with ipmi-cuse (or, until the daemon exists or with
// -mode=kernel, with the kernel driver) and runs a few ipmitool and freeipmi
// commands through it, printing what they print. `make demo` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

var demoCommands = [][]string{
	{"ipmitool", "mc", "info"},
	{"ipmitool", "mc", "watchdog", "get"},
	{"ipmitool", "chassis", "status"},
	{"ipmitool", "sdr", "list"},
	{"ipmitool", "fru", "print", "0"},
	{"bmc-info", "--get-device-id"},
	{"ipmi-sensors"},
	{"ipmi-chassis", "--get-chassis-status"},
	{"ipmi-raw", "0", "6", "1"},
}

func main() {
	mode := flag.String("mode", "auto", "how /dev/ipmi0 is served: shim, kernel, or auto (shim when cmd/ipmi-cuse exists)")
	timeout := flag.Duration("timeout", 5*time.Minute, "kill the VM after this long")
	var bins guestBins
	flag.Var(&bins, "add", "add a host binary to the guest, as `guestpath=hostpath` (repeatable), e.g. a client to run")
	daemonArgs := flag.String("args", "", "ipmi-cuse's flags in the guest, space-separated (default: none, as a sysadmin runs it)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: demo [flags] [command args...]\n\n"+
			"Boots the test VM and runs a few IPMI clients through /dev/ipmi0, or the one command given.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		demoCommands = [][]string{flag.Args()}
	}
	if err := run(*mode, *timeout, strings.Fields(*daemonArgs), bins); err != nil {
		slog.Error("demo failed", "err", err)
		os.Exit(1)
	}
}

// guestBins collects -add flags: guest path → host binary.
type guestBins map[string]string

func (g *guestBins) String() string { return fmt.Sprint(map[string]string(*g)) }

func (g *guestBins) Set(v string) error {
	guest, host, ok := strings.Cut(v, "=")
	if !ok || !strings.HasPrefix(guest, "/") || host == "" {
		return fmt.Errorf("want guestpath=hostpath, got %q", v)
	}
	if *g == nil {
		*g = guestBins{}
	}
	(*g)[guest] = host
	return nil
}

func run(mode string, timeout time.Duration, daemonArgs []string, bins guestBins) error {
	env, err := testbed.FindEnv()
	if err != nil {
		return err
	}
	root, err := testbed.RepoRoot()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ipmi-cuse-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s := &testbed.Session{Env: env, Dir: dir, Timeout: timeout, BMC: testbed.BMC{FRUData: dir + "/fru.bin"}, GuestBins: bins}
	if err := testbed.WriteFRUData(s.BMC.FRUData); err != nil {
		return err
	}
	switch mode {
	case "auto", "shim":
		s.Daemon, err = testbed.BuildDaemon(root, dir)
		switch {
		case errors.Is(err, testbed.ErrNoDaemon) && mode == "auto":
			fmt.Println("### cmd/ipmi-cuse does not exist yet: showing the kernel driver instead")
			s.Script.Mode = testbed.KernelMode
		case err != nil:
			return err
		default:
			s.Script.Mode = testbed.ShimMode
			if len(daemonArgs) > 0 {
				s.Script.DaemonArgs = daemonArgs
			}
		}
	case "kernel":
		s.Script.Mode = testbed.KernelMode
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	for i, c := range demoCommands {
		s.Commands = append(s.Commands, testbed.Command{Name: fmt.Sprintf("c%d", i), Args: c})
	}
	fmt.Printf("### booting Debian %s in QEMU (%s mode, QEMU's ipmi-bmc-sim behind isa-ipmi-kcs)\n", env.KernelVersion, s.Script.Mode)
	out, res, err := s.Run(context.Background())
	if err != nil {
		if res != nil {
			fmt.Fprintf(os.Stderr, "### guest console:\n%s\n", res.Console)
		}
		if out != nil {
			for name, f := range out.Files {
				fmt.Fprintf(os.Stderr, "### %s:\n%s\n", name, f)
			}
		}
		return err
	}
	if out.Setup != "ok" {
		fmt.Fprintf(os.Stderr, "### guest console:\n%s\n", res.Console)
		return fmt.Errorf("guest setup failed: %s", out.Setup)
	}
	for i, c := range out.Commands {
		fmt.Printf("\n$ %s\n%s", strings.Join(demoCommands[i], " "), c.Stdout)
		if len(c.Stderr) > 0 {
			fmt.Printf("%s", c.Stderr)
		}
		if c.Exit != 0 {
			fmt.Printf("(exit status %d)\n", c.Exit)
		}
	}
	if l, ok := out.Files[testbed.GuestDaemonLog]; ok {
		fmt.Printf("\n### ipmi-cuse's log:\n%s", l)
	}
	fmt.Printf("\n### VM ran for %v\n", res.Elapsed.Round(100*time.Millisecond))
	return nil
}
