// Package integration holds ipmi-cuse's end-to-end tests: they boot Debian's
// kernel in QEMU (see integration/testbed) and run real IPMI clients in it,
// once with the Linux kernel driver and once with ipmi-cuse, against the same
// emulated BMC, and compare what the clients print.
package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-cuse/ipmi-cuse/bmcsim"
	"github.com/ipmi-cuse/ipmi-cuse/integration/testbed"
)

// bootTimeout bounds one VM boot running the whole corpus. Under CPU
// emulation a boot takes ~6 s and the corpus ~30 s; the bound is for a
// loaded machine, and a hung client is cut earlier by the guest's own
// per-command timeout.
const bootTimeout = 10 * time.Minute

// testEnv returns the provisioned testbed. The VM tests run only with
// IPMI_CUSE_VM=1 (`make vm` sets it; `make test` runs `make vm`), so the
// race-detector pass over ./... stays host-only, and never under -short.
// When they run, a missing piece fails the test, so CI cannot pass without
// having booted the VMs.
func testEnv(t *testing.T) *testbed.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("VM test: skipped under -short (boots QEMU)")
	}
	if os.Getenv("IPMI_CUSE_VM") != "1" {
		t.Skip("VM test: runs with IPMI_CUSE_VM=1 (make vm, part of make test)")
	}
	env, err := testbed.FindEnv()
	if err != nil {
		t.Fatalf("VM tests need provisioning: %v", err)
	}
	return env
}

// daemon builds ipmi-cuse for the guest, or returns "" with the reason shim
// mode cannot run. A daemon that exists but does not build fails the test.
func daemon(t *testing.T) (string, string) {
	t.Helper()
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	p, err := testbed.BuildDaemon(root, t.TempDir())
	if errors.Is(err, testbed.ErrNoDaemon) {
		return "", "shim mode skipped: cmd/ipmi-cuse does not exist yet, so only the kernel driver's side of the corpus runs"
	}
	if err != nil {
		t.Fatalf("building ipmi-cuse for the guest: %v", err)
	}
	return p, ""
}

// unitDaemon is daemon for the systemd guests' tests, which need the
// repository too (for the unit in contrib/): it returns the built daemon
// and the repository's root, and skips the test where there is no daemon.
func unitDaemon(t *testing.T) (daemonPath, root string) {
	t.Helper()
	daemonPath, why := daemon(t)
	if daemonPath == "" {
		t.Skip(why)
	}
	root, err := testbed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return daemonPath, root
}

// bmcKind picks the BMC behind the guest's KCS interface for a boot.
type bmcKind int

const (
	qemuBMC bmcKind = iota // QEMU's internal ipmi-bmc-sim, with a FRU image
	simBMC                 // the project's bmcsim over vmserial (ipmi-bmc-extern)
)

func (k bmcKind) String() string {
	if k == simBMC {
		return "bmcsim"
	}
	return "ipmi-bmc-sim"
}

// boot runs the corpus in one VM in the given mode against a fresh BMC of
// the given kind and returns the guest's output. Any failure to get complete
// output fails the test with the guest's console (and the daemon's and the
// simulated BMC's logs).
func boot(t *testing.T, env *testbed.Env, kind bmcKind, mode testbed.Mode, daemonPath string, cmds []testbed.Command) *testbed.Output {
	t.Helper()
	return bootWith(t, env, kind, mode, daemonPath, cmds, nil)
}

// bootWith is boot with extra guest binaries (guest path → host path).
func bootWith(t *testing.T, env *testbed.Env, kind bmcKind, mode testbed.Mode, daemonPath string, cmds []testbed.Command, bins map[string]string) (out *testbed.Output) {
	t.Helper()
	return bootOn(t, env, kind, testbed.KCS, daemonArgs(kind), mode, daemonPath, cmds, bins)
}

// bootOn is bootWith on the given system interface, with the daemon's
// flags given (nil: testbed.DefaultDaemonArgs).
func bootOn(t *testing.T, env *testbed.Env, kind bmcKind, iface testbed.Interface, args []string, mode testbed.Mode, daemonPath string, cmds []testbed.Command, bins map[string]string) (out *testbed.Output) {
	t.Helper()
	dir := t.TempDir()
	s := &testbed.Session{
		Env: env, Commands: cmds, Daemon: daemonPath, Dir: dir, Timeout: bootTimeout, GuestBins: bins,
		Script: testbed.ScriptOptions{Mode: mode, DaemonArgs: args},
		BMC:    testbed.BMC{Interface: iface},
	}
	var sim *testbed.SimBMC
	switch kind {
	case qemuBMC:
		s.BMC.FRUData = dir + "/fru.bin"
		if err := testbed.WriteFRUData(s.BMC.FRUData); err != nil {
			t.Fatal(err)
		}
	case simBMC:
		var err error
		sim, err = testbed.StartSimBMC(bmcsim.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := sim.Close(); err != nil {
				t.Error(err)
			}
		}()
		s.BMC.Extern = sim.Addr
		drv := startSimDriver(sim, dir) // msghandler_test.go
		defer drv.stop()
		defer func() {
			if out != nil {
				out.Files[simDriverFile] = drv.stop()
			}
		}()
	}
	out, res, err := s.Run(context.Background())
	if res != nil {
		t.Logf("%s mode, %s on %s: VM ran %v", mode, kind, iface, res.Elapsed.Round(100*time.Millisecond))
	}
	if err == nil && out.Setup != "ok" {
		err = fmt.Errorf("guest setup failed: %s", out.Setup)
	}
	if err != nil {
		if res != nil {
			t.Logf("guest console (ttyS0):\n%s", res.Console)
			t.Logf("guest output (ttyS1):\n%s", res.Guest)
		}
		if out != nil {
			for f, b := range out.Files {
				t.Logf("%s:\n%s", f, b)
			}
		}
		if sim != nil {
			t.Logf("simulated BMC's log:\n%s", sim.Log())
		}
		t.Fatalf("%s mode, %s: %v", mode, kind, err)
	}
	return out
}

// daemonArgs are ipmi-cuse's flags in the guest: IPMI_CUSE_ARGS (split on
// spaces) if set; else testbed.DefaultDaemonArgs (SMBIOS discovery, in/out
// instructions after iopl) with QEMU's BMC, and an explicit port with
// /dev/port access with bmcsim, so discovery, --kcs-port and both ways of
// reaching the ports are tested without an extra boot.
func daemonArgs(kind bmcKind) []string {
	if a := os.Getenv("IPMI_CUSE_ARGS"); a != "" {
		return strings.Fields(a)
	}
	if kind == simBMC {
		return []string{"--bmc=kcs", "--kcs-port=0xca2", "--port-io=devport", "--device", "ipmi0", "--log-level=info"}
	}
	return nil
}

// TestDifferential runs the corpus with the kernel driver and with
// ipmi-cuse, one boot each, and requires every command's stdout, stderr and
// exit status to be identical after the listed normalisations. The kernel
// run is also checked on its own (expected exit status and a telltale
// string per command), so the testbed itself is tested while the daemon
// does not exist yet.
func TestDifferential(t *testing.T) {
	env := testEnv(t)
	daemonPath, why := daemon(t)
	cmds := make([]testbed.Command, len(corpus))
	for i, c := range corpus {
		cmds[i] = c.command()
	}

	kern := boot(t, env, qemuBMC, testbed.KernelMode, "", cmds)
	t.Run("kernel", func(t *testing.T) { checkKernelEntries(t, kern, corpus) })
	if os.Getenv("IPMI_CUSE_WRITE_TESTDATA") == "1" {
		writeCorpusDoc(t, kern)
	}

	t.Run("shim", func(t *testing.T) {
		if daemonPath == "" {
			t.Skip(why)
		}
		shim := boot(t, env, qemuBMC, testbed.ShimMode, daemonPath, cmds)
		if !compare(t, kern, shim, "shim") {
			t.Logf("ipmi-cuse's log:\n%s", shim.Files[testbed.GuestDaemonLog])
		}
	})

	// Kernel against kernel: proves the normalisations cover everything that
	// changes between two boots, so a shim difference is the shim's. It runs
	// while shim mode cannot (keeping the suite at two boots) or when
	// IPMI_CUSE_SELFCHECK=1.
	t.Run("kernel_vs_kernel", func(t *testing.T) {
		if daemonPath != "" && os.Getenv("IPMI_CUSE_SELFCHECK") != "1" {
			t.Skip("runs only while shim mode is skipped, or with IPMI_CUSE_SELFCHECK=1")
		}
		again := boot(t, env, qemuBMC, testbed.KernelMode, "", cmds)
		compare(t, kern, again, "second kernel boot")
	})
}

// TestDifferentialSimBMC runs the corpus against the project's simulated BMC
// (bmcsim through its VM-protocol adapter, QEMU's ipmi-bmc-extern), kernel
// driver against ipmi-cuse. The corpus's telltale strings are QEMU's BMC's,
// so the kernel run is only checked for a working Get Device ID here; the
// differential is the test.
func TestDifferentialSimBMC(t *testing.T) {
	env := testEnv(t)
	daemonPath, why := daemon(t)
	var cmds []testbed.Command
	for _, c := range append(corpus[:len(corpus):len(corpus)], simCorpus...) {
		cmds = append(cmds, c.command())
	}
	bins := probeBins(t)
	kern := bootWith(t, env, simBMC, testbed.KernelMode, "", cmds, bins)
	if r := kern.Command("mc_info"); r == nil || r.Exit != 0 || !bytes.Contains(r.Stdout, []byte("IPMI Version")) {
		t.Fatalf("ipmitool mc info through the kernel driver to bmcsim failed: %+v", r)
	}
	t.Run("kernel", func(t *testing.T) { checkSimCorpusKernel(t, kern) })
	t.Run("shim", func(t *testing.T) {
		if daemonPath == "" {
			t.Skip(why)
		}
		shim := bootWith(t, env, simBMC, testbed.ShimMode, daemonPath, cmds, bins)
		compareSimDriver(t, kern, shim)
		if !compare(t, kern, shim, "shim", simCorpus...) {
			t.Logf("ipmi-cuse's log:\n%s", shim.Files[testbed.GuestDaemonLog])
		}
	})
}

// compare checks every corpus command of other against the kernel's run:
// same exit status, same stdout and stderr after the command's
// normalisations, and the extra entries likewise. It reports whether all
// matched.
func compare(t *testing.T, kern, other *testbed.Output, label string, extra ...corpusEntry) bool {
	t.Helper()
	ok := true
	for _, c := range append(corpus[:len(corpus):len(corpus)], extra...) {
		t.Run(c.name, func(t *testing.T) {
			k, s := kern.Command(c.name), other.Command(c.name)
			if s == nil {
				t.Fatalf("no result in the %s's guest output", label)
			}
			if k.Exit != s.Exit && c.exitVaries == "" {
				t.Errorf("exit status: kernel %d, %s %d", k.Exit, label, s.Exit)
			}
			if d := diff("stdout", c.normalise(k.Stdout), c.normalise(s.Stdout)); d != "" {
				t.Errorf("%s: %s", label, d)
			}
			if d := diff("stderr", c.normalise(k.Stderr), c.normalise(s.Stderr)); d != "" {
				t.Errorf("%s: %s", label, d)
			}
			ok = ok && !t.Failed()
		})
	}
	return ok
}

func exitWant(w int) string {
	if w == anyExit {
		return "any"
	}
	if w == 0 {
		return "0"
	}
	return "non-zero"
}

// diff describes how the kernel output and another differ, line by line, or returns "".
func diff(what string, kernel, shim []byte) string {
	if bytes.Equal(kernel, shim) {
		return ""
	}
	kl := strings.Split(string(kernel), "\n")
	sl := strings.Split(string(shim), "\n")
	var b strings.Builder
	fmt.Fprintf(&b, "%s differs (- kernel, + other):\n", what)
	for i := 0; i < max(len(kl), len(sl)); i++ {
		var k, s string
		if i < len(kl) {
			k = kl[i]
		}
		if i < len(sl) {
			s = sl[i]
		}
		if k == s {
			fmt.Fprintf(&b, "  %s\n", k)
			continue
		}
		if i < len(kl) {
			fmt.Fprintf(&b, "- %q\n", k)
		}
		if i < len(sl) {
			fmt.Fprintf(&b, "+ %q\n", s)
		}
	}
	return b.String()
}

// checkKernelEntries checks the kernel driver's run of entries on its own
// (exit status and a telltale string), so that a comparison cannot pass
// with both modes failing alike.
func checkKernelEntries(t *testing.T, kern *testbed.Output, entries []corpusEntry) {
	t.Helper()
	for _, c := range entries {
		t.Run(c.name, func(t *testing.T) {
			r := kern.Command(c.name)
			if r == nil {
				t.Fatal("no result in the guest output")
			}
			if c.wantExit != anyExit && (c.wantExit == 0) != (r.Exit == 0) {
				t.Errorf("exit status %d, want %s\nstdout:\n%s\nstderr:\n%s", r.Exit, exitWant(c.wantExit), r.Stdout, r.Stderr)
			}
			if !bytes.Contains(r.Stdout, []byte(c.wantOut)) && !bytes.Contains(r.Stderr, []byte(c.wantOut)) {
				t.Errorf("output lacks %q\nstdout:\n%s\nstderr:\n%s", c.wantOut, r.Stdout, r.Stderr)
			}
		})
	}
}

// writeCorpusDoc stores the kernel driver's outputs in testdata/ as
// documentation of what the clients print against QEMU's BMC. The tests
// never read it: kernel and shim are compared within one run.
func writeCorpusDoc(t *testing.T, kern *testbed.Output) {
	var b strings.Builder
	b.WriteString("# Client output through the Linux kernel driver against QEMU's ipmi-bmc-sim.\n")
	b.WriteString("# Written by IPMI_CUSE_WRITE_TESTDATA=1 go test ./integration/; documentation only.\n")
	for _, c := range corpus {
		r := kern.Command(c.name)
		fmt.Fprintf(&b, "\n$ %s\n%s", strings.Join(c.args, " "), r.Stdout)
		if len(r.Stderr) > 0 {
			fmt.Fprintf(&b, "[stderr]\n%s", r.Stderr)
		}
		if r.Exit != 0 {
			fmt.Fprintf(&b, "[exit status %d]\n", r.Exit)
		}
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("testdata/kernel-corpus.txt", []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
