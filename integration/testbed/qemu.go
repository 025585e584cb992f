package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// ErrTimeout is returned by Run when the guest did not power off in time;
// QEMU has then been killed.
var ErrTimeout = errors.New("VM timed out")

// BMC selects the BMC behind the guest's KCS interface.
type BMC struct {
	// Extern, when set, is host:port of a BMC speaking OpenIPMI's VM serial
	// protocol (QEMU's ipmi-bmc-extern connects to it). When empty, QEMU's
	// internal ipmi-bmc-sim is used.
	Extern string
	// FRUData, for the internal BMC, is a file with FRU device 0's contents.
	FRUData string
	// Interface is the system interface the guest reaches the BMC through
	// (default KCS).
	Interface Interface
	// SimProps are extra properties of the internal BMC (e.g.
	// "fwrev1=2,product_id=4242", to tell two BMCs apart).
	SimProps string
}

// Interfaces lists the interfaces of the BMCs, in the order given.
func Interfaces(bmcs ...BMC) []Interface {
	out := make([]Interface, len(bmcs))
	for i, b := range bmcs {
		out[i] = b.Interface.orKCS()
	}
	return out
}

// VM describes one boot.
type VM struct {
	Env    *Env
	Initrd string
	BMC    BMC
	// Extra are further BMCs, each with its own interface (give two ISA
	// interfaces of the same kind distinct ports: not supported here).
	Extra []BMC
	// Dir receives console.log (ttyS0: kernel messages) and guest.out (ttyS1:
	// the guest script's output). It must exist.
	Dir string
	// Timeout bounds the whole boot; QEMU is killed when it passes.
	Timeout time.Duration
	// MemoryMB is the guest's memory (default 512).
	MemoryMB int
	// Append is added to the kernel command line.
	Append string
}

// Result is what came back from a boot.
type Result struct {
	// Guest is everything the guest wrote to its second serial port.
	Guest []byte
	// Console is the first serial port: kernel messages and /init's own output.
	Console []byte
	// Elapsed is the host wall time from QEMU's start to its exit.
	Elapsed time.Duration
}

// Args returns QEMU's command line for this VM (without the program name).
func (v *VM) Args() []string {
	mem := v.MemoryMB
	if mem == 0 {
		mem = 512
	}
	args := []string{
		"-M", "pc", "-m", strconv.Itoa(mem), "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", v.Env.Vmlinuz, "-initrd", v.Initrd,
		"-append", "console=ttyS0 quiet panic=-1 " + v.Append,
		"-serial", "file:" + filepath.Join(v.Dir, "console.log"),
		"-serial", "file:" + filepath.Join(v.Dir, "guest.out"),
	}
	if KVM() {
		args = append(args, "-accel", "kvm", "-cpu", "host")
	} else {
		args = append(args, "-accel", "tcg")
	}
	for i, b := range append([]BMC{v.BMC}, v.Extra...) {
		args = append(args, b.qemuArgs(i)...)
	}
	return args
}

// qemuArgs are the -chardev/-device arguments of the i-th BMC and its
// interface. The first ISA interface keeps QEMU's default IRQ (5); later
// ones get IRQ 7, so two ISA interfaces do not share one.
func (b BMC) qemuArgs(i int) []string {
	id := fmt.Sprintf("bmc%d", i)
	var args []string
	if b.Extern != "" {
		host, port, _ := splitHostPort(b.Extern)
		chr := fmt.Sprintf("ipmichr%d", i)
		args = append(args,
			"-chardev", fmt.Sprintf("socket,id=%s,host=%s,port=%s,reconnect=1", chr, host, port),
			"-device", fmt.Sprintf("ipmi-bmc-extern,id=%s,chardev=%s", id, chr))
	} else {
		sim := "ipmi-bmc-sim,id=" + id
		if b.FRUData != "" {
			sim += ",frudatafile=" + b.FRUData + ",fruareasize=256"
		}
		if b.SimProps != "" {
			sim += "," + b.SimProps
		}
		args = append(args, "-device", sim)
	}
	irq := 0
	if i > 0 {
		irq = 7
	}
	return append(args, "-device", b.Interface.qemuDevice(id, irq))
}

// Run boots the VM and waits until the guest powers off, the timeout passes
// or ctx ends; in the last two cases QEMU is killed and the error wraps
// ErrTimeout or ctx.Err(). The outputs collected so far are returned in
// every case, so a failing run can show the guest's console.
func (v *VM) Run(ctx context.Context) (*Result, error) {
	timeout := v.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, v.Env.QEMU, v.Args()...)
	var qemuOut limitedBuffer
	cmd.Stdout, cmd.Stderr = &qemuOut, &qemuOut
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	res := &Result{Elapsed: time.Since(start)}
	res.Console, _ = os.ReadFile(filepath.Join(v.Dir, "console.log"))
	res.Guest, _ = os.ReadFile(filepath.Join(v.Dir, "guest.out"))
	if q := qemuOut.String(); q != "" {
		res.Console = append(res.Console, "\n--- qemu's own output ---\n"+q...)
	}
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return res, fmt.Errorf("%w after %v (QEMU killed)", ErrTimeout, timeout)
	case ctx.Err() != nil:
		return res, fmt.Errorf("VM: %w", ctx.Err())
	case err != nil:
		return res, fmt.Errorf("VM: qemu: %w", err)
	}
	return res, nil
}

// limitedBuffer keeps the first 64 KiB written to it (QEMU's own messages).
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 64<<10 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
