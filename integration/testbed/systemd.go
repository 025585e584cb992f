package testbed

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// The systemd guest: Debian 12's own systemd (252) as PID 1 from the
// initramfs, with kmod's modprobe and depmod output for the guest modules,
// dpkg with a status database naming the packages copied in, busybox for
// the shell tools, and the IPMI client tools. There is no
// /etc/initrd-release, so systemd treats the initramfs as the real root and
// boots multi-user.target, where a oneshot unit runs the test script with
// its output on ttyS1 and powers the VM off when it ends (SuccessAction=
// and FailureAction=poweroff). The layout is merged-/usr, as on a Debian 12
// installation, so files install at their real paths (/usr/sbin,
// /lib/systemd/system, /etc/default, /etc/modprobe.d, ...). There is no
// udev, dbus or logind: no module autoloading and no dev-*.device units.

// systemdPackages are the Debian packages whose files go into the systemd
// guest (from the host's installation, so provision.sh installs them;
// dpkg-deb needs GNU tar, not busybox's).
var systemdPackages = []string{"systemd", "libsystemd-shared", "kmod", "dpkg", "libc-bin", "tar"}

// systemdSkip are path prefixes of those packages left out: documentation
// and integration with programs the guest does not have.
var systemdSkip = []string{
	"/usr/share/doc/", "/usr/share/man/", "/usr/share/locale/", "/usr/share/bash-completion/",
	"/usr/share/zsh/", "/usr/share/fish/", "/usr/share/bug/", "/usr/share/lintian/",
	"/usr/share/polkit-1/", "/etc/cron.daily/", "/etc/logrotate.d/", "/usr/share/info/",
}

// systemdMasked are units masked in the guest: no getty (no agetty, and the
// serial ports are the test's), no logind (no dbus).
// The API file systems' mount units are masked too: busybox's mount
// cannot mount them as systemd asks, and no test needs them.
var systemdMasked = []string{"getty.target", "systemd-logind.service", "console-getty.service",
	"dev-hugepages.mount", "dev-mqueue.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
	"sys-fs-fuse-connections.mount", "sys-kernel-config.mount"}

// SystemdTestUnit is the unit that runs the test script in the systemd guest.
const SystemdTestUnit = "ipmi-cuse-testbed.service"

// systemdTestUnitText runs /test.sh with its output on ttyS1 (raw, so the
// byte counts of the framing survive) once multi-user.target is reached,
// and powers the VM off however the script ends.
const systemdTestUnitText = `[Unit]
Description=ipmi-cuse testbed: the test script
After=multi-user.target
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
TimeoutStartSec=infinity
ExecStart=/bin/sh -c 'stty -F /dev/ttyS1 raw -echo; exec /bin/sh ` + guestScript + ` >/dev/ttyS1 2>&1'
`

// systemdPrelude adds helpers for systemd tests to scriptPrelude.
const systemdPrelude = `# journal UNIT: report the unit's journal (this boot) as file journal:UNIT.
journal() {
	journalctl -b -u "$1" --no-pager -o short-monotonic >/tmp/.journal 2>&1
	printf '@@@FILE journal:%s %d\n' "$1" "$(wc -c < /tmp/.journal)"; cat /tmp/.journal; echo
}
# thread_caps PID: one line per thread of PID: its id, then CapInh:HEX
# CapPrm:HEX CapEff:HEX CapBnd:HEX CapAmb:HEX NoNewPrivs:N. (A function:
# run cannot time it; redirect it to a file and run cat on that.)
thread_caps() {
	for t in /proc/$1/task/*; do
		# A read that finds nothing is tried again (seen under a quiet
		# 6.12 guest right after the daemon started); a thread that is
		# gone holds nothing and is left out.
		i=0; l=''
		while [ -z "$l" ] && [ -d "$t" ] && [ $i -lt 5 ]; do
			l=$(grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' "$t/status" 2>/dev/null | while read -r k v; do printf ' %s%s' "$k" "$v"; done)
			i=$((i+1)); [ -z "$l" ] && sleep 0.1
		done
		[ -d "$t" ] || continue
		printf '%s%s\n' "${t##*/}" "$l"
	done
}
# main_pid UNIT: print the unit's main PID (0 if none).
main_pid() { systemctl show -p MainPID --value "$1"; }
# wait_active UNIT SECONDS: wait until the unit is active; 1 if it is not by then.
wait_active() {
	i=0
	until systemctl -q is-active "$1"; do
		i=$((i+1)); [ $i -gt $(($2*10)) ] && return 1
		sleep 0.1
	done
}
`

// File is a file put into a guest at a real path before it boots.
type File struct {
	// Path is the guest path (absolute). Paths under /bin, /sbin, /lib and
	// /lib64 land in /usr (the guest is merged-/usr).
	Path string
	// Mode is the permission bits (0o644 if zero).
	Mode uint32
	// Data is the contents, unless HostPath is set.
	Data []byte
	// HostPath, when set, is a host file whose contents are used.
	HostPath string
}

// SystemdGuest is one boot of the systemd guest. The test script runs as a
// oneshot unit after multi-user.target, under busybox's sh, with the
// helpers of the busybox guest's script (run NAME TIMEOUT CMD..., report
// FILE, wait_dev SECONDS) and journal UNIT, main_pid UNIT and wait_active
// UNIT SECONDS. Its output is parsed with ParseOutput; "@@@DONE" is added at
// its end, and a script that wants Output.Setup to be "ok" prints
// "@@@SETUP ok" itself.
type SystemdGuest struct {
	Env *Env
	// Files are installed before boot.
	Files []File
	// Debs are host .deb files the guest installs with `dpkg -i` before
	// the script runs (as the framed command "dpkg_install"; the script
	// can check it with Output.Command). dpkg's database lists the
	// packages copied into the guest (systemd, kmod, dpkg, libc-bin,
	// libsystemd-shared), so dependencies on those are met.
	Debs []string
	// Script is the test script's body.
	Script string
	BMC    BMC
	// Extra are further BMCs with their own interfaces (see VM.Extra).
	Extra []BMC
	// Dir is a scratch directory for the initrd and the serial logs.
	Dir     string
	Timeout time.Duration
	// MemoryMB is the guest's memory (default 512).
	MemoryMB int
	// Append is added to the kernel command line.
	Append string
	// OnLine, when set, is called from another goroutine with each line the
	// guest writes to ttyS1, within about 50 ms of its arrival (for example
	// to act on the host, such as injecting a BMC fault, when "@@@CMD NAME"
	// appears). Run returns only after the last call has returned.
	OnLine func(line string)
}

// SystemdScript returns the whole guest script for a body.
func SystemdScript(body string, debs []string) string {
	var b strings.Builder
	b.WriteString(scriptPrelude)
	b.WriteString(systemdPrelude)
	if len(debs) > 0 {
		q := make([]string, len(debs))
		for i, d := range debs {
			q[i] = "/debs/" + filepath.Base(d)
		}
		fmt.Fprintf(&b, "run dpkg_install 300 dpkg -i %s\n", shellJoin(q))
	}
	b.WriteString(body)
	if !strings.HasSuffix(body, "\n") {
		b.WriteString("\n")
	}
	b.WriteString("echo '@@@DONE'\n")
	return b.String()
}

// Run builds the initrd, boots the guest and returns the parsed output and
// the raw result; on error both may still be non-nil (partial output, the
// console with systemd's messages).
func (g *SystemdGuest) Run(ctx context.Context) (*Output, *Result, error) {
	base, err := g.Env.SystemdBase()
	if err != nil {
		return nil, nil, err
	}
	ov := NewOverlay()
	ov.AddFile(guestScript, 0o755, []byte(SystemdScript(g.Script, g.Debs)))
	for _, f := range g.Files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		data := f.Data
		if f.HostPath != "" {
			if data, err = os.ReadFile(f.HostPath); err != nil {
				return nil, nil, fmt.Errorf("systemd guest: %w", err)
			}
		}
		ov.files.file(mergedUsr(strings.TrimPrefix(f.Path, "/")), mode, data)
	}
	for _, d := range g.Debs {
		if err := ov.AddHostFile("/debs/"+filepath.Base(d), d, 0o644); err != nil {
			return nil, nil, err
		}
	}
	initrd := filepath.Join(g.Dir, "initrd.cpio")
	if err := ov.WriteInitrd(initrd, base); err != nil {
		return nil, nil, err
	}
	vm := &VM{Env: g.Env, Initrd: initrd, BMC: g.BMC, Extra: g.Extra, Dir: g.Dir, Timeout: g.Timeout, MemoryMB: g.MemoryMB,
		Append: "systemd.unit=multi-user.target systemd.show_status=false " + g.Append}
	var follow sync.WaitGroup
	stop := make(chan struct{})
	if g.OnLine != nil {
		follow.Add(1)
		go func() {
			defer follow.Done()
			followLines(filepath.Join(g.Dir, "guest.out"), stop, g.OnLine)
		}()
	}
	res, err := vm.Run(ctx)
	close(stop)
	follow.Wait()
	if res == nil {
		return nil, nil, err
	}
	out, perr := ParseOutput(res.Guest)
	if err != nil {
		return out, res, err
	}
	if perr != nil {
		return out, res, fmt.Errorf("guest output: %w", perr)
	}
	return out, res, nil
}

// followLines calls f with every complete line appended to path until stop
// is closed, then once more with whatever complete lines remain.
func followLines(path string, stop <-chan struct{}, f func(string)) {
	var off int64
	var partial []byte
	poll := func() {
		fh, err := os.Open(path)
		if err != nil {
			return
		}
		defer fh.Close()
		if _, err := fh.Seek(off, 0); err != nil {
			return
		}
		var buf bytes.Buffer
		n, _ := buf.ReadFrom(fh)
		off += n
		partial = append(partial, buf.Bytes()...)
		for {
			i := bytes.IndexByte(partial, '\n')
			if i < 0 {
				return
			}
			f(string(partial[:i]))
			partial = partial[i+1:]
		}
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			poll()
			return
		case <-t.C:
			poll()
		}
	}
}

// mergedUsr maps a guest path (no leading slash) to where it lives in a
// merged-/usr tree: bin/x is usr/bin/x, and so on.
func mergedUsr(p string) string {
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return "usr/" + p
		}
	}
	return p
}

// systemdFormat is bumped whenever the systemd guest's base archive changes
// layout, so stale cached archives are not reused.
const systemdFormat = "systemd-v5"

// SystemdBase returns the path of the cached base archive of the systemd
// guest, building it when its inputs changed.
func (e *Env) SystemdBase() (string, error) {
	a, key, err := e.systemdArchive()
	if err != nil {
		return "", err
	}
	out := filepath.Join(e.Cache, "initramfs", "systemd-"+key+".cpio")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := writeArchiveAtomic(a, out); err != nil {
		return "", err
	}
	return out, nil
}

// systemdArchive assembles the archive and a key that changes with any input.
func (e *Env) systemdArchive() (archive, string, error) {
	h := sha256.New()
	fmt.Fprintln(h, systemdFormat, e.KernelVersion)
	a := archive{}
	addHost := func(guest, host string, perm uint32) error {
		data, err := os.ReadFile(host)
		if err != nil {
			return fmt.Errorf("systemd guest: %w", err)
		}
		if host == enterpriseNumbers {
			data = trimEnterpriseNumbers(data)
		}
		a.file(mergedUsr(guest), perm, data)
		st, _ := os.Stat(host)
		fmt.Fprintln(h, host, guest, st.Size(), st.ModTime().UnixNano())
		return nil
	}

	// Busybox applets first, so the packages' programs replace them.
	if err := addHost("bin/busybox", busyboxPath, 0o755); err != nil {
		return nil, "", err
	}
	list, err := exec.Command(busyboxPath, "--list-full").Output()
	if err != nil {
		return nil, "", fmt.Errorf("systemd guest: busybox --list-full: %w", err)
	}
	for _, app := range strings.Fields(string(list)) {
		switch filepath.Base(app) {
		case "busybox", "init", "linuxrc", "poweroff", "reboot", "halt":
			continue // systemd's
		}
		a.symlink(mergedUsr(app), "/bin/busybox")
	}

	// The busybox guest's inputs, but the modules (the systemd guest has
	// them under /lib/modules for modprobe).
	ins, err := e.baseInputs()
	if err != nil {
		return nil, "", err
	}
	for _, in := range ins {
		if strings.HasPrefix(in.guest, "modules/") || in.host == busyboxPath {
			continue
		}
		if err := addHost(in.guest, in.host, in.perm); err != nil {
			return nil, "", err
		}
	}

	// The packages' files, and the libraries their programs load.
	libs := map[string]bool{}
	for _, pkg := range systemdPackages {
		out, err := exec.Command("dpkg-query", "-L", pkg).Output()
		if err != nil {
			return nil, "", fmt.Errorf("systemd guest: dpkg-query -L %s: %w (run `make provision`)", pkg, err)
		}
	files:
		for _, p := range strings.Split(string(out), "\n") {
			if p == "" || p == "/." {
				continue
			}
			for _, s := range systemdSkip {
				if strings.HasPrefix(p, s) {
					continue files
				}
			}
			st, err := os.Lstat(p)
			if err != nil {
				continue // diverted or removed on the host
			}
			g := strings.TrimPrefix(p, "/")
			switch {
			case st.Mode()&os.ModeSymlink != 0:
				if fi, err := os.Stat(p); err == nil && fi.IsDir() {
					continue // /bin -> usr/bin and the like: the guest's own
				}
				t, err := os.Readlink(p)
				if err != nil {
					return nil, "", fmt.Errorf("systemd guest: %w", err)
				}
				a.symlink(mergedUsr(g), t)
				fmt.Fprintln(h, p, "->", t)
			case st.Mode().IsRegular():
				if err := addHost(g, p, uint32(st.Mode().Perm())); err != nil {
					return nil, "", err
				}
				if st.Mode().Perm()&0o111 != 0 || strings.Contains(p, ".so") {
					if isELF(p) {
						l, err := sharedLibs(p)
						if err == nil {
							for _, x := range l {
								libs[x] = true
							}
						}
					}
				}
			}
		}
	}
	for _, p := range sortedKeys(libs) {
		if _, ok := a[mergedUsr(strings.TrimPrefix(p, "/"))]; ok {
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, "", fmt.Errorf("systemd guest: %w", err)
		}
		if err := addHost(strings.TrimPrefix(p, "/"), real, 0o755); err != nil {
			return nil, "", err
		}
	}

	// Kernel modules with depmod's indexes, for modprobe.
	if err := e.addModuleTree(a, h); err != nil {
		return nil, "", err
	}

	// dpkg's database: the copied packages, as installed.
	status, err := exec.Command("dpkg-query", append([]string{"-s"}, systemdPackages...)...).Output()
	if err != nil {
		return nil, "", fmt.Errorf("systemd guest: dpkg-query -s: %w", err)
	}
	status = dropRelations(status)
	h.Write(status)
	a.file("var/lib/dpkg/status", 0o644, status)
	a.file("var/lib/dpkg/available", 0o644, nil)
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/lib/dpkg/alternatives"} {
		a.dir(d)
	}

	// The root file system's skeleton, merged-/usr.
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		a.symlink(d, "usr/"+d)
	}
	for _, d := range []string{"dev", "proc", "sys", "tmp", "root", "run", "var/tmp", "var/cache", "var/log/freeipmi",
		"etc/systemd/system/multi-user.target.wants", "etc/modprobe.d", "etc/modules-load.d", "etc/default", "usr/local/sbin"} {
		a.dir(d)
	}
	a.symlink("init", "/lib/systemd/systemd")
	a.symlink("usr/sbin/init", "/lib/systemd/systemd")
	for _, p := range []string{"poweroff", "reboot", "halt"} {
		a.symlink("usr/sbin/"+p, "/bin/systemctl")
	}
	a.symlink("var/run", "/run")
	a.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"))
	a.file("etc/group", 0o644, []byte("root:x:0:\nsystemd-journal:x:101:\nnogroup:x:65534:\n"))
	a.file("etc/machine-id", 0o444, []byte("5c0a1a2b3c4d4e5f8a9b0c1d2e3f4a5b\n"))
	a.file("etc/hostname", 0o644, []byte("testbed\n"))
	if osr, err := os.ReadFile("/etc/os-release"); err == nil {
		a.file("usr/lib/os-release", 0o644, osr)
		a.symlink("etc/os-release", "../usr/lib/os-release")
	}
	for _, u := range systemdMasked {
		a.symlink("etc/systemd/system/"+u, "/dev/null")
	}
	a.file("etc/systemd/system/"+SystemdTestUnit, 0o644, []byte(systemdTestUnitText))
	a.symlink("etc/systemd/system/multi-user.target.wants/"+SystemdTestUnit, "../"+SystemdTestUnit)
	fmt.Fprintln(h, systemdTestUnitText, systemdMasked)
	return a, hex.EncodeToString(h.Sum(nil))[:16], nil
}

// addModuleTree puts the guest modules (Modules plus SSIF's and I2C's,
// whichever the kernel has as modules) and everything they depend on
// under lib/modules/<kver>, in the package's own (possibly compressed)
// form, with depmod's index files from provision.sh.
func (e *Env) addModuleTree(a archive, h interface{ Write([]byte) (int, error) }) error {
	mdir := filepath.Dir(e.ModulesDir) // lib/modules/<kver>
	dep, err := os.ReadFile(filepath.Join(mdir, "modules.dep"))
	if err != nil {
		return fmt.Errorf("systemd guest: %w (run `make provision`: it runs depmod)", err)
	}
	deps := map[string][]string{} // kernel/.../x.ko.xz -> its dependencies
	byName := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(dep))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		byName[moduleName(mod)] = mod
	}
	want := append(append([]string(nil), Modules...), "ipmi_ssif", "i2c_dev", "i2c_smbus", "i2c_piix4")
	seen := map[string]bool{}
	var add func(string)
	add = func(m string) {
		if seen[m] {
			return
		}
		seen[m] = true
		for _, d := range deps[m] {
			add(d)
		}
	}
	for _, w := range want {
		if m, ok := byName[strings.ReplaceAll(w, "-", "_")]; ok {
			add(m)
		}
	}
	guest := "usr/lib/modules/" + e.KernelVersion
	for _, m := range sortedKeys(seen) {
		data, err := os.ReadFile(filepath.Join(mdir, m))
		if err != nil {
			return fmt.Errorf("systemd guest: %w", err)
		}
		a.file(guest+"/"+m, 0o644, data)
		fmt.Fprintln(h, m, len(data))
	}
	idx, _ := filepath.Glob(filepath.Join(mdir, "modules.*"))
	sort.Strings(idx)
	for _, p := range idx {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("systemd guest: %w", err)
		}
		a.file(guest+"/"+filepath.Base(p), 0o644, data)
		fmt.Fprintln(h, p, len(data))
	}
	return nil
}

// moduleName is a module's name from its path in modules.dep, with - as _.
func moduleName(p string) string {
	b := filepath.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// dropRelations removes the relationship fields (Depends, Pre-Depends,
// Recommends, ...) from dpkg status stanzas: the guest holds only the
// files of the packages copied in, not their dependencies, and dpkg
// refuses to install into a database whose packages have unmet ones.
// Continuation lines of a dropped field go with it.
func dropRelations(status []byte) []byte {
	var out bytes.Buffer
	skip := false
	for _, l := range strings.SplitAfter(string(status), "\n") {
		if strings.HasPrefix(l, " ") && l != "\n" {
			if !skip {
				out.WriteString(l)
			}
			continue
		}
		k, _, _ := strings.Cut(l, ":")
		switch k {
		case "Depends", "Pre-Depends", "Recommends", "Suggests", "Breaks", "Conflicts", "Replaces", "Enhances", "Provides":
			skip = true
			continue
		}
		skip = false
		out.WriteString(l)
	}
	return out.Bytes()
}

func isELF(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var m [4]byte
	n, _ := f.Read(m[:])
	return n == 4 && string(m[:]) == "\x7fELF"
}

// writeArchiveAtomic writes a to out through a temporary file in the same
// directory, so concurrent builders never see a partial archive.
func writeArchiveAtomic(a archive, out string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "base-*.tmp")
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := a.writeNewc(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// UnitPath is where the project's unit is installed in the systemd guest,
// as the Debian package installs it.
const UnitPath = "/lib/systemd/system/ipmi-cuse.service"

// DefaultsPath is the defaults file the unit reads (IPMI_CUSE_ARGS).
const DefaultsPath = "/etc/default/ipmi-cuse"

// ModprobeDropIn is the drop-in under contrib/systemd (and the unit
// directory) that keeps modprobe@cuse.service active once cuse is loaded.
const ModprobeDropIn = "modprobe@cuse.service.d/ipmi-cuse.conf"

// ProjectUnit returns the files that install ipmi-cuse in the systemd guest
// as the repository's contrib/systemd/ipmi-cuse.service expects it: the
// daemon (a host binary, e.g. from BuildDaemon) at the path the unit's
// ExecStart= names, the unit at UnitPath with the ModprobeDropIn, and, when args is not nil, a
// defaults file at DefaultsPath setting IPMI_CUSE_ARGS to args (each
// argument must be free of spaces and quotes). The script then starts it
// with `systemctl start ipmi-cuse`.
func ProjectUnit(root, daemon string, args []string) ([]File, error) {
	unitFile := filepath.Join(root, "contrib", "systemd", "ipmi-cuse.service")
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		return nil, fmt.Errorf("project unit: %w", err)
	}
	bin := ""
	for _, l := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "ExecStart="); ok {
			if f := strings.Fields(strings.TrimLeft(v, "-@:+!")); len(f) > 0 {
				bin = f[0]
				break
			}
		}
	}
	if !strings.HasPrefix(bin, "/") {
		return nil, fmt.Errorf("project unit: no absolute ExecStart= program in %s", unitFile)
	}
	files := []File{
		{Path: bin, Mode: 0o755, HostPath: daemon},
		{Path: UnitPath, Mode: 0o644, Data: unit},
	}
	// The drop-in that has modprobe@cuse.service (which the unit wants)
	// load cuse once, as the package installs it.
	dropIn := filepath.Join(root, "contrib", "systemd", ModprobeDropIn)
	if b, err := os.ReadFile(dropIn); err == nil {
		files = append(files, File{Path: "/lib/systemd/system/" + ModprobeDropIn, Mode: 0o644, Data: b})
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("project unit: %w", err)
	}
	if args != nil {
		for _, a := range args {
			if strings.ContainsAny(a, " \t\n\"'\\$") {
				return nil, fmt.Errorf("project unit: argument %q cannot go in IPMI_CUSE_ARGS unquoted", a)
			}
		}
		files = append(files, File{Path: DefaultsPath, Mode: 0o644,
			Data: []byte("IPMI_CUSE_ARGS=\"" + strings.Join(args, " ") + "\"\n")})
	}
	return files, nil
}
