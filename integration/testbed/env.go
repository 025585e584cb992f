// Package testbed boots Debian's kernel in QEMU with an emulated IPMI BMC and
// runs client programs inside it, so ipmi-cuse can be tested end to end and
// compared with the Linux kernel driver on machines whose own kernel has
// neither CUSE nor IPMI.
//
// The pieces are: Env (what integration/provision.sh installed and cached),
// an initramfs builder (a cached base archive with busybox, the kernel
// modules and the client tools, plus a small per-run overlay), a QEMU runner
// (Run) and a guest-script generator with a parser for its framed output
// (Script, ParseOutput).
package testbed

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultCache is where provision.sh keeps the unpacked kernel and where the
// built initramfs archives are cached; IPMI_CUSE_CACHE overrides it.
const DefaultCache = "/var/cache/ipmi-cuse-testbed"

// ErrNotProvisioned is returned when a piece the testbed needs (QEMU, the
// kernel, a client tool) is missing: run `make provision` as root.
var ErrNotProvisioned = errors.New("testbed not provisioned (run `make provision` as root)")

// Kernel names a Debian kernel series the testbed can boot. Both come from
// Debian 12's archive and are unpacked by integration/provision.sh.
type Kernel string

const (
	// Kernel61 is the kernel linux-image-amd64 depends on (6.1), the default.
	Kernel61 Kernel = "6.1"
	// Kernel612 is the newest linux-image-6.12.*+deb12-amd64: fuse is built
	// in (only cuse is a module), modules ship as .ko.xz, and FUSE_NOTIFY_RESEND
	// (FUSE 7.40) exists.
	Kernel612 Kernel = "6.12"
)

// cacheLink is the name provision.sh gives the kernel's directory under
// $CACHE/kernel.
func (k Kernel) cacheLink() (string, error) {
	switch k {
	case Kernel61, "":
		return "current", nil
	case Kernel612:
		return "6.12", nil
	}
	return "", fmt.Errorf("testbed: unknown kernel %q (want %q or %q)", k, Kernel61, Kernel612)
}

// DefaultKernel is the kernel FindEnv boots: $IPMI_CUSE_KERNEL ("6.1" or
// "6.12") or Kernel61.
func DefaultKernel() Kernel {
	if k := os.Getenv("IPMI_CUSE_KERNEL"); k != "" {
		return Kernel(k)
	}
	return Kernel61
}

// Env locates everything the testbed needs on this host.
type Env struct {
	// Kernel is the kernel series this Env boots.
	Kernel Kernel
	// KernelDir is the unpacked kernel package (boot/, lib/modules/, and
	// ko/ with provision.sh's uncompressed copies of the guest modules).
	KernelDir string
	// Cache is the cache directory (kernel, initramfs archives).
	Cache string
	// KernelVersion is the unpacked kernel's release, e.g. 6.1.0-56-amd64.
	KernelVersion string
	// Vmlinuz is the kernel image passed to QEMU's -kernel.
	Vmlinuz string
	// ModulesDir is lib/modules/<KernelVersion>/kernel in the unpacked package.
	ModulesDir string
	// QEMU is the path of qemu-system-x86_64.
	QEMU string
}

// CacheDir returns the cache directory in force: $IPMI_CUSE_CACHE or DefaultCache.
func CacheDir() string {
	if d := os.Getenv("IPMI_CUSE_CACHE"); d != "" {
		return d
	}
	return DefaultCache
}

// FindEnv checks that provisioning has been done and returns where things
// are, for DefaultKernel. Every missing piece is named in the error, which
// wraps ErrNotProvisioned.
func FindEnv() (*Env, error) { return FindEnvKernel(DefaultKernel()) }

// FindEnvKernel is FindEnv for a given kernel series.
func FindEnvKernel(k Kernel) (*Env, error) {
	link, err := k.cacheLink()
	if err != nil {
		return nil, err
	}
	if k == "" {
		k = Kernel61
	}
	e := &Env{Cache: CacheDir(), Kernel: k}
	var missing []string
	q, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		missing = append(missing, "qemu-system-x86_64")
	}
	e.QEMU = q
	kdir := filepath.Join(e.Cache, "kernel", link)
	e.KernelDir = kdir
	if _, err := os.Stat(filepath.Join(kdir, ".complete")); err != nil {
		missing = append(missing, "kernel in "+kdir)
	} else {
		vm, _ := filepath.Glob(filepath.Join(kdir, "boot", "vmlinuz-*"))
		if len(vm) != 1 {
			missing = append(missing, "exactly one vmlinuz in "+kdir)
		} else {
			e.Vmlinuz = vm[0]
			e.KernelVersion = strings.TrimPrefix(filepath.Base(vm[0]), "vmlinuz-")
			e.ModulesDir = filepath.Join(kdir, "lib", "modules", e.KernelVersion, "kernel")
		}
	}
	for _, p := range append([]string{busyboxPath}, clientTools...) {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: missing %s", ErrNotProvisioned, strings.Join(missing, ", "))
	}
	return e, nil
}

// Module returns the host path of an uncompressed kernel module by name
// (e.g. "ipmi_si"): provision.sh's copy under ko/, or the package's own
// .ko (6.1 kernels unpacked before ko/ existed).
func (e *Env) Module(name string) (string, error) {
	if p := filepath.Join(e.KernelDir, "ko", name+".ko"); fileExists(p) {
		return p, nil
	}
	for _, sub := range []string{"drivers/char/ipmi", "fs/fuse", "drivers/i2c", "drivers/i2c/busses"} {
		p := filepath.Join(e.ModulesDir, sub, name+".ko")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("module %s not in %s: %w", name, e.ModulesDir, ErrNotProvisioned)
}

// BuiltIn reports whether the kernel has the module compiled in (listed
// in modules.builtin), as 6.12 has fuse.
func (e *Env) BuiltIn(name string) bool {
	b, err := os.ReadFile(filepath.Join(e.ModulesDir, "..", "modules.builtin"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		base := filepath.Base(l)
		if base == name+".ko" || strings.ReplaceAll(base, "-", "_") == strings.ReplaceAll(name, "-", "_")+".ko" {
			return true
		}
	}
	return false
}

// GuestModules returns Modules without those built into the kernel.
func (e *Env) GuestModules() []string {
	var ms []string
	for _, m := range Modules {
		if !e.BuiltIn(m) {
			ms = append(ms, m)
		}
	}
	return ms
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// KVM reports whether QEMU should use hardware virtualisation: only when
// IPMI_CUSE_KVM=1 and /dev/kvm opens. It is opt-in because nested KVM on the
// project's build machines hangs the guest before its first console line;
// QEMU's CPU emulation (TCG) is slower but works everywhere.
func KVM() bool {
	if os.Getenv("IPMI_CUSE_KVM") != "1" {
		return false
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func splitHostPort(hp string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(hp)
	if err != nil {
		return "", "", fmt.Errorf("BMC address %q: %w", hp, err)
	}
	return host, port, nil
}
