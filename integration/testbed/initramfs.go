package testbed

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// busyboxPath is the static busybox from Debian's busybox-static.
const busyboxPath = "/usr/bin/busybox"

// clientTools are the client programs copied into the guest, with their
// shared libraries. They are the programs whose output the corpus compares.
var clientTools = []string{
	"/usr/bin/ipmitool",
	"/usr/sbin/bmc-info",
	"/usr/sbin/ipmi-sensors",
	"/usr/sbin/ipmi-sel",
	"/usr/sbin/ipmi-fru",
	"/usr/sbin/ipmi-chassis",
	"/usr/sbin/bmc-device",
	"/usr/sbin/bmc-watchdog",
	"/usr/sbin/ipmi-raw",
}

// optionalTools are copied when present (dmidecode shows the SMBIOS type 38
// record the shim's autodetection reads).
var optionalTools = []string{"/usr/sbin/dmidecode"}

// Modules are the kernel modules put in the guest, in a load order that
// satisfies their dependencies (there is no modules.dep in the guest).
var Modules = []string{"ipmi_msghandler", "ipmi_devintf", "ipmi_si", "ipmi_watchdog", "fuse", "cuse",
	// SSIF: the PIIX4 SMBus adapter, its userspace access (i2c-dev) and the
	// kernel's SSIF driver (the reference).
	"i2c-smbus", "i2c-piix4", "i2c-dev", "ipmi_ssif"}

// hostFiles are configuration files copied verbatim: freeipmi reads its
// config under /etc/freeipmi and uses /var/lib/freeipmi/ipckey as the key of
// a SysV semaphore.
var hostFiles = []string{
	"/etc/freeipmi/freeipmi.conf",
	"/etc/freeipmi/freeipmi_interpret_sel.conf",
	"/etc/freeipmi/freeipmi_interpret_sensor.conf",
	"/var/lib/freeipmi/ipckey",
}

// enterpriseNumbers is the IANA list ipmitool parses at every start. The full
// file is ~4.7 MB and slow to parse under emulation, so the guest gets the
// header and a few well-known entries (the same in both modes).
const enterpriseNumbers = "/usr/share/misc/enterprise-numbers.txt"

// keptEnterprises are the IANA numbers kept besides all numbers below 1000:
// IPMI Forum, Supermicro, and the numbers ipmitool knows OEM quirks for.
var keptEnterprises = map[int]bool{3704: true, 4128: true, 4337: true, 5593: true, 7154: true, 10368: true, 10437: true, 10876: true, 15370: true, 19046: true, 20974: true, 28458: true}

// baseFormat is bumped whenever the layout of the base archive changes, so
// stale cached archives are not reused.
const baseFormat = "base-v1"

// BaseInitramfs returns the path of the cached base archive (busybox, kernel
// modules, client tools with their libraries, configuration), building it if
// the inputs changed. The cache key covers the kernel version and the path,
// size and modification time of every host file that goes in.
func (e *Env) BaseInitramfs() (string, error) {
	inputs, err := e.baseInputs()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintln(h, baseFormat, e.KernelVersion)
	for _, in := range inputs {
		st, err := os.Stat(in.host)
		if err != nil {
			return "", fmt.Errorf("initramfs: %w", err)
		}
		fmt.Fprintln(h, in.host, in.guest, st.Size(), st.ModTime().UnixNano())
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	out := filepath.Join(e.Cache, "initramfs", "base-"+key+".cpio")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	a := archive{}
	for _, in := range inputs {
		data, err := os.ReadFile(in.host)
		if err != nil {
			return "", fmt.Errorf("initramfs: %w", err)
		}
		if in.host == enterpriseNumbers {
			data = trimEnterpriseNumbers(data)
		}
		a.file(in.guest, in.perm, data)
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "root", "run", "var/run", "var/cache", "var/log/freeipmi"} {
		a.dir(d)
	}
	a.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	a.file("etc/group", 0o644, []byte("root:x:0:\n"))
	if err := writeArchiveAtomic(a, out); err != nil {
		return "", err
	}
	return out, nil
}

type baseInput struct {
	host, guest string
	perm        uint32
}

// baseInputs lists every host file of the base archive and where it goes.
func (e *Env) baseInputs() ([]baseInput, error) {
	var in []baseInput
	in = append(in, baseInput{busyboxPath, "bin/busybox", 0o755})
	for _, m := range e.GuestModules() {
		p, err := e.Module(m)
		if err != nil {
			return nil, err
		}
		in = append(in, baseInput{p, "modules/" + m + ".ko", 0o644})
	}
	tools := append([]string(nil), clientTools...)
	for _, t := range optionalTools {
		if _, err := os.Stat(t); err == nil {
			tools = append(tools, t)
		}
	}
	libs := map[string]bool{}
	for _, t := range tools {
		in = append(in, baseInput{t, strings.TrimPrefix(t, "/"), 0o755})
		l, err := sharedLibs(t)
		if err != nil {
			return nil, err
		}
		for _, p := range l {
			libs[p] = true
		}
	}
	for _, p := range sortedKeys(libs) {
		// Stored under the path the loader asks for, with the contents of
		// whatever it resolves to on the host (merged /usr symlinks included).
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		in = append(in, baseInput{real, strings.TrimPrefix(p, "/"), 0o755})
	}
	for _, f := range append(hostFiles, enterpriseNumbers) {
		in = append(in, baseInput{f, strings.TrimPrefix(f, "/"), 0o644})
	}
	return in, nil
}

var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)`)

// sharedLibs runs ldd on a host binary and returns the absolute paths of the
// shared objects it loads, the dynamic loader included.
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("initramfs: ldd %s: %w", bin, err)
	}
	var libs []string
	for _, m := range lddLine.FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, m[1])
	}
	return libs, nil
}

// trimEnterpriseNumbers keeps the header of the IANA list, every entry below
// 1000 and those in keptEnterprises. An entry starts with a line holding only
// its decimal number; the indented lines after it belong to it.
func trimEnterpriseNumbers(full []byte) []byte {
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(full))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	header, keep := true, true
	for sc.Scan() {
		line := sc.Text()
		if n, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && line == strings.TrimSpace(line) {
			header = false
			keep = n < 1000 || keptEnterprises[n]
		}
		if header || keep {
			out.WriteString(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

// Overlay is the per-run part of the initramfs: the guest's /init, its test
// script and any extra binaries (ipmi-cuse, guest test clients). It is
// appended to the base archive; the kernel unpacks both in order.
type Overlay struct {
	files archive
}

// NewOverlay returns an empty overlay.
func NewOverlay() *Overlay { return &Overlay{files: archive{}} }

// AddFile puts data at guestPath (absolute) with the given permissions.
func (o *Overlay) AddFile(guestPath string, perm uint32, data []byte) {
	o.files.file(strings.TrimPrefix(guestPath, "/"), perm, data)
}

// AddHostFile copies a host file to guestPath.
func (o *Overlay) AddHostFile(guestPath, hostPath string, perm uint32) error {
	data, err := os.ReadFile(hostPath)
	if err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	o.AddFile(guestPath, perm, data)
	return nil
}

// WriteInitrd writes base followed by the overlay to path, as one initrd.
func (o *Overlay) WriteInitrd(path, base string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	defer f.Close()
	b, err := os.Open(base)
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	defer b.Close()
	if _, err := io.Copy(f, b); err != nil {
		return fmt.Errorf("initrd: copying base: %w", err)
	}
	if err := o.files.writeNewc(f); err != nil {
		return err
	}
	return f.Close()
}

func sortedKeys(m map[string]bool) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sortStrings(k)
	return k
}
