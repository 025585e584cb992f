package testbed

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Mode is how the guest provides /dev/ipmi0.
type Mode string

const (
	// KernelMode loads ipmi_msghandler, ipmi_devintf and ipmi_si: the Linux
	// kernel driver serves /dev/ipmi0 (the reference).
	KernelMode Mode = "kernel"
	// ShimMode loads only fuse and cuse and starts ipmi-cuse, which serves
	// /dev/ipmi0 through CUSE and drives the KCS ports itself.
	ShimMode Mode = "shim"
)

// Guest paths of the per-run files.
const (
	GuestDaemon    = "/bin/ipmi-cuse"
	GuestDaemonLog = "/tmp/ipmi-cuse.log"
	guestScript    = "/test.sh"
)

// DefaultDaemonArgs are the flags ipmi-cuse is started with in shim mode:
// none that choose the interface, as a sysadmin would run it, so the
// daemon finds QEMU's isa-ipmi-kcs (I/O port 0xCA2) in SMBIOS type 38 and
// reaches it with in/out instructions after iopl.
var DefaultDaemonArgs = []string{"--log-level=info"}

// Command is one client invocation of a guest script.
type Command struct {
	// Name identifies the command in the output; no spaces.
	Name string
	// Args is the program and its arguments (no shell interpretation).
	Args []string
	// Timeout bounds it in the guest, in seconds (default 60), so one hung
	// client does not cost the rest of the run.
	Timeout int
}

// ScriptOptions configures a guest script.
type ScriptOptions struct {
	Mode Mode
	// DaemonArgs replace DefaultDaemonArgs in shim mode.
	DaemonArgs []string
	// ReadyTimeout bounds the wait for /dev/ipmi0, in seconds (default 30).
	ReadyTimeout int
	// Interfaces are the guest's IPMI interfaces, which decide the kernel
	// modules loaded (nil: KCS only).
	Interfaces []Interface
	// Devices is how many /dev/ipmiN the set-up waits for (default 1).
	Devices int
	// Files are guest files whose contents are reported after the commands
	// (the daemon's log is always reported in shim mode).
	Files []string
}

// Init is the guest's /init: it mounts the pseudo file systems, runs the
// test script with its output on the second serial port (ttyS1, in raw mode
// so no byte is translated), and powers the VM off whatever happens.
const Init = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p /root/.freeipmi /tmp/sdr-cache
stty -F /dev/ttyS1 raw -echo
echo "init: running ` + guestScript + `"
sh ` + guestScript + ` >/dev/ttyS1 2>&1
echo "init: ` + guestScript + ` exited with $?"
poweroff -f
`

// scriptPrelude defines the framing helpers. Each command's stdout and
// stderr go to files, and are sent with their byte length so the host can
// read them back exactly, trailing newlines and all.
const scriptPrelude = `emit() { printf '@@@%s %d\n' "$1" "$(wc -c < "$2")"; cat "$2"; echo; }
run() {
	name=$1; t=$2; shift 2
	echo "@@@CMD $name"
	timeout $t "$@" </dev/null >/tmp/.out 2>/tmp/.err
	rc=$?
	emit OUT /tmp/.out
	emit ERR /tmp/.err
	echo "@@@RC $rc"
}
report() { [ -e "$1" ] || return 0; printf '@@@FILE %s %d\n' "$1" "$(wc -c < "$1")"; cat "$1"; echo; }
wait_dev() {
	i=0
	while [ ! -c /dev/ipmi0 ]; do
		i=$((i+1)); [ $i -gt $(($1*10)) ] && return 1
		sleep 0.1
	done
}
`

// Script returns the guest test script for the commands in the given mode.
func Script(cmds []Command, o ScriptOptions) (string, error) {
	var b strings.Builder
	b.WriteString(scriptPrelude)
	ready := o.ReadyTimeout
	if ready == 0 {
		ready = 30
	}
	files := append([]string(nil), o.Files...)
	switch o.Mode {
	case KernelMode:
		for _, m := range kernelModules(o.Interfaces) {
			insmod(&b, m)
		}
		fmt.Fprintf(&b, "if wait_dev %d; then echo '@@@SETUP ok'; else echo '@@@SETUP /dev/ipmi0 did not appear within %ds'; fi\n", ready, ready)
	case ShimMode:
		args := o.DaemonArgs
		if args == nil {
			args = DefaultDaemonArgs
		}
		// fuse is built into 6.12: its module is then absent.
		b.WriteString("[ ! -e /modules/fuse.ko ] || insmod /modules/fuse.ko || echo \"@@@SETUP insmod fuse failed\"\n")
		b.WriteString("insmod /modules/cuse.ko || echo \"@@@SETUP insmod cuse failed\"\n")
		for _, m := range shimModules(o.Interfaces) {
			insmod(&b, m)
		}
		fmt.Fprintf(&b, "[ -c /dev/cuse ] || echo '@@@SETUP /dev/cuse missing'\n")
		fmt.Fprintf(&b, "%s >%s 2>&1 &\ndaemon=$!\n", shellJoin(append([]string{GuestDaemon}, args...)), GuestDaemonLog)
		fmt.Fprintf(&b, "if wait_dev %d; then echo '@@@SETUP ok'; elif kill -0 $daemon 2>/dev/null; then echo '@@@SETUP /dev/ipmi0 did not appear within %ds'; else wait $daemon; echo \"@@@SETUP ipmi-cuse exited with $? before /dev/ipmi0 appeared\"; fi\n", ready, ready)
		files = append(files, GuestDaemonLog)
	default:
		return "", fmt.Errorf("guest script: unknown mode %q", o.Mode)
	}
	for i := 1; i < o.Devices; i++ {
		fmt.Fprintf(&b, "i=0; while [ ! -c /dev/ipmi%d ]; do i=$((i+1)); if [ $i -gt %d ]; then echo '@@@SETUP /dev/ipmi%d did not appear within %ds'; break; fi; sleep 0.1; done\n", i, ready*10, i, ready)
	}
	seen := map[string]bool{}
	for _, c := range cmds {
		if c.Name == "" || strings.ContainsAny(c.Name, " \t\n") || seen[c.Name] || len(c.Args) == 0 {
			return "", fmt.Errorf("guest script: bad command %q %q", c.Name, c.Args)
		}
		seen[c.Name] = true
		t := c.Timeout
		if t == 0 {
			t = 60
		}
		fmt.Fprintf(&b, "run %s %d %s\n", c.Name, t, shellJoin(c.Args))
	}
	if o.Mode == ShimMode {
		// Stop the daemon so its log ends with whatever it says on SIGTERM.
		b.WriteString("kill $daemon 2>/dev/null; i=0; while kill -0 $daemon 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done\n")
	}
	for _, f := range files {
		fmt.Fprintf(&b, "report %s\n", shellQuote(f))
	}
	b.WriteString("echo '@@@DONE'\n")
	return b.String(), nil
}

// insmod loads a module in the guest script. The I2C modules may be built
// into a kernel, and then have no file: those are skipped when absent.
func insmod(b *strings.Builder, m string) {
	if strings.HasPrefix(m, "i2c-") {
		fmt.Fprintf(b, "[ ! -e /modules/%s.ko ] || ", m)
	}
	fmt.Fprintf(b, "insmod /modules/%s.ko || echo \"@@@SETUP insmod %s failed\"\n", m, m)
}

// Install adds /init, the script and mode-specific pieces to an overlay.
func (o *Overlay) Install(script string) {
	o.AddFile("/init", 0o755, []byte(Init))
	o.AddFile(guestScript, 0o755, []byte(script))
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// CmdResult is what one command printed and returned in the guest.
type CmdResult struct {
	Name   string
	Stdout []byte
	Stderr []byte
	// Exit is the exit status (124 or 137: killed by the guest's timeout).
	Exit int
}

// Output is a parsed guest output.
type Output struct {
	// Setup is "ok" when /dev/ipmi0 became ready, else why not (possibly
	// several lines).
	Setup string
	// Commands are the results in run order.
	Commands []CmdResult
	// Files are the contents of the reported guest files.
	Files map[string][]byte
	// Done is true when the script ran to its end.
	Done bool
	// Stray is output outside any frame (the script's own error messages).
	Stray []byte
}

// Command returns the result of the named command, or nil.
func (o *Output) Command(name string) *CmdResult {
	for i := range o.Commands {
		if o.Commands[i].Name == name {
			return &o.Commands[i]
		}
	}
	return nil
}

// ErrBadOutput is returned by ParseOutput for output that breaks the framing.
var ErrBadOutput = errors.New("malformed guest output")

// ParseOutput decodes what a guest script wrote. Output cut short (the VM
// died or timed out) yields what was complete with Done false and an error.
func ParseOutput(data []byte) (*Output, error) {
	o := &Output{Files: map[string][]byte{}}
	var cur *CmdResult
	var setup []string
	line := func() (string, bool) {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return "", false
		}
		l := string(data[:i])
		data = data[i+1:]
		return l, true
	}
	// body reads n bytes plus the newline emit adds after them.
	body := func(n int) ([]byte, error) {
		if n < 0 || len(data) < n+1 || data[n] != '\n' {
			return nil, fmt.Errorf("%w: section of %d bytes cut short", ErrBadOutput, n)
		}
		b := append([]byte(nil), data[:n]...)
		data = data[n+1:]
		return b, nil
	}
	for len(data) > 0 {
		l, ok := line()
		if !ok {
			o.Stray = append(o.Stray, data...)
			break
		}
		if !strings.HasPrefix(l, "@@@") {
			o.Stray = append(o.Stray, l+"\n"...)
			continue
		}
		kw, rest, _ := strings.Cut(l[3:], " ")
		switch kw {
		case "SETUP":
			setup = append(setup, rest)
		case "CMD":
			o.Commands = append(o.Commands, CmdResult{Name: rest, Exit: -1})
			cur = &o.Commands[len(o.Commands)-1]
		case "OUT", "ERR":
			n, err := strconv.Atoi(rest)
			if err != nil || cur == nil {
				return o, fmt.Errorf("%w: %q", ErrBadOutput, l)
			}
			b, err := body(n)
			if err != nil {
				return o, fmt.Errorf("command %s: %w", cur.Name, err)
			}
			if kw == "OUT" {
				cur.Stdout = b
			} else {
				cur.Stderr = b
			}
		case "RC":
			n, err := strconv.Atoi(rest)
			if err != nil || cur == nil {
				return o, fmt.Errorf("%w: %q", ErrBadOutput, l)
			}
			cur.Exit = n
			cur = nil
		case "FILE":
			i := strings.LastIndexByte(rest, ' ')
			n, err := strconv.Atoi(rest[i+1:])
			if i < 0 || err != nil {
				return o, fmt.Errorf("%w: %q", ErrBadOutput, l)
			}
			b, err := body(n)
			if err != nil {
				return o, fmt.Errorf("file %s: %w", rest[:i], err)
			}
			o.Files[rest[:i]] = b
		case "DONE":
			o.Done = true
		default:
			return o, fmt.Errorf("%w: unknown marker %q", ErrBadOutput, l)
		}
	}
	o.Setup = strings.Join(setup, "\n")
	if len(setup) == 1 && setup[0] == "ok" {
		o.Setup = "ok"
	}
	if !o.Done {
		return o, fmt.Errorf("%w: no @@@DONE (the guest died or timed out)", ErrBadOutput)
	}
	return o, nil
}
