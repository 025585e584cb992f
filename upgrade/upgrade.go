// Package upgrade starts a new process of the daemon and hands it
// descriptors and a state, with rollback: the shape of cloudflare/tableflip
// for a CUSE daemon. The old process calls Start, which runs the binary at
// its path on disk (a replaced binary is what runs) with the state in a
// memfd, a readiness pipe and the descriptors it is given; Start returns
// once the new process says it serves, or with the reason it did not (it
// exited, refused the state, or did not answer in time), after making sure
// it is gone, so the old process can take its descriptors back. The new
// process calls Inherited to find out whether it was started this way, and
// Ready (or Refuse) to answer.
//
// Descriptors are passed with syscall.ForkExec as raw numbers: os/exec
// would call (*os.File).Fd, which switches a non-blocking descriptor to
// blocking mode, and O_NONBLOCK belongs to the open file description the
// old process keeps reading after a rollback.
package upgrade

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// EnvVar tells a process started by Start how many descriptors follow the
// state and the readiness pipe: "IPMI_CUSE_UPGRADE=1:N" (protocol 1, N
// descriptors from fd 5 on; the state is fd 3, the pipe fd 4).
const EnvVar = "IPMI_CUSE_UPGRADE"

// protocol is the version of the descriptor layout and readiness protocol.
const protocol = 1

// First descriptor numbers in the new process.
const (
	stateFd = 3
	readyFd = 4
	firstFd = 5
)

// DefaultTimeout bounds the wait for the new process's answer.
const DefaultTimeout = 30 * time.Second

// MaxState bounds the state a new process reads.
const MaxState = 64 << 20

// Messages on the readiness pipe.
const (
	msgReady  = "ready"
	msgRefuse = "refused: "
)

// Sentinel errors, wrapped by Start.
var (
	// ErrExited means the new process exited before saying it was ready.
	ErrExited = errors.New("upgrade: the new process exited before it was ready")
	// ErrRefused means the new process refused the hand-over and said why.
	ErrRefused = errors.New("upgrade: the new process refused the hand-over")
	// ErrTimeout means the new process did not answer within the timeout.
	ErrTimeout = errors.New("upgrade: the new process did not become ready in time")
)

// Config says what Start runs.
type Config struct {
	// Path is the binary to run; "" means os.Executable() (the path this
	// process was started from, so a binary replaced on disk is what runs).
	Path string
	// Args are the arguments after the program name.
	Args []string
	// Env is the environment (nil: this process's), without EnvVar.
	Env []string
	// Timeout bounds the wait for the answer (0: DefaultTimeout).
	Timeout time.Duration
}

// Process is a new process that said it is ready.
type Process struct {
	// Pid is its process id.
	Pid int
}

// refusal is the error a new process's readiness line a gives when it
// refuses the hand-over (msgRefuse and its reason), or nil for any other
// line.
func refusal(a string) error {
	reason, ok := strings.CutPrefix(a, msgRefuse)
	if !ok {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrRefused, reason)
}

// Start runs the new process with state and files (in this order after
// the readiness pipe) and waits for its answer. On success the new
// process serves and the caller should exit. On failure the new process
// has been killed (if it still ran) and reaped, so the caller alone holds
// the descriptors again; the error says why.
func Start(ctx context.Context, cfg Config, state []byte, files []*os.File) (*Process, error) {
	path := cfg.Path
	if path == "" {
		p, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("upgrade: finding this binary on disk: %w", err)
		}
		path = p
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	mem, err := memfd(state)
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	rd, wr, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("upgrade: readiness pipe: %w", err)
	}
	defer rd.Close()

	fds := []uintptr{0, 1, 2, mem.Fd(), wr.Fd()}
	for _, f := range files {
		fd, err := rawFd(f)
		if err != nil {
			wr.Close()
			return nil, err
		}
		fds = append(fds, fd)
	}
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(withoutUpgradeEnv(env), fmt.Sprintf("%s=%d:%d", EnvVar, protocol, len(files)))
	pid, err := syscall.ForkExec(path, append([]string{path}, cfg.Args...), &syscall.ProcAttr{Env: env, Files: fds})
	// The descriptors were duplicated into the child (or not at all).
	wr.Close()
	for _, f := range files {
		keepAlive(f)
	}
	if err != nil {
		return nil, fmt.Errorf("upgrade: starting %s: %w", path, err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil { // never on Unix
		return nil, fmt.Errorf("upgrade: process %d: %w", pid, err)
	}
	exited := make(chan error, 1)
	go func() {
		st, err := proc.Wait()
		if err == nil {
			err = fmt.Errorf("%w (%s)", ErrExited, st)
		}
		exited <- err
	}()
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(io.LimitReader(rd, 4096)).ReadString('\n')
		answer <- strings.TrimSuffix(line, "\n")
	}()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var why error
	select {
	case a := <-answer:
		if a == msgReady {
			return &Process{Pid: pid}, nil
		}
		if why = refusal(a); why == nil {
			// EOF without an answer: it exited (or closed the pipe); the
			// exit status says more.
			select {
			case why = <-exited:
				return nil, fmt.Errorf("upgrade: %s: %w", path, why)
			case <-timer.C:
				why = fmt.Errorf("%w: it closed the readiness pipe without an answer", ErrTimeout)
			}
		}
	case why = <-exited:
		// A refusal written just before the exit is in the pipe already,
		// and the reader returns it (or EOF, the exit having closed the
		// pipe) at once; which of the two this select saw first is chance.
		// The refusal says more than the exit status.
		select {
		case a := <-answer:
			if r := refusal(a); r != nil {
				why = r
			}
		case <-timer.C:
		case <-ctx.Done():
		}
		return nil, fmt.Errorf("upgrade: %s: %w", path, why)
	case <-timer.C:
		why = fmt.Errorf("%w (%v)", ErrTimeout, timeout)
	case <-ctx.Done():
		why = fmt.Errorf("upgrade: %w", ctx.Err())
	}
	// Make sure it can no longer touch the descriptors before the caller
	// takes them back.
	_ = proc.Signal(syscall.SIGKILL)
	<-exited
	return nil, fmt.Errorf("upgrade: %s: %w", path, why)
}

// withoutUpgradeEnv drops EnvVar from env.
func withoutUpgradeEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, EnvVar+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// memfd returns a sealed-size memfd holding b, positioned at 0.
func memfd(b []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate("ipmi-cuse-state", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("upgrade: memfd for the state: %w", err)
	}
	f := os.NewFile(uintptr(fd), "ipmi-cuse-state")
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, fmt.Errorf("upgrade: writing the state: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("upgrade: rewinding the state: %w", err)
	}
	return f, nil
}

// rawFd returns f's descriptor without changing its blocking mode (which
// (*os.File).Fd would do).
func rawFd(f *os.File) (uintptr, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("upgrade: descriptor of %s: %w", f.Name(), err)
	}
	var fd uintptr
	if err := rc.Control(func(v uintptr) { fd = v }); err != nil {
		return 0, fmt.Errorf("upgrade: descriptor of %s: %w", f.Name(), err)
	}
	return fd, nil
}

// keepAlive keeps f (and so its descriptor) from being finalised before
// ForkExec has duplicated it.
func keepAlive(f *os.File) { _ = f.Name() }

// Inherited is what a process started by Start received.
type Inherited struct {
	// State is the state the old process wrote.
	State []byte
	// Files are the descriptors, in the order the old process gave them.
	Files []*os.File
	ready *os.File
}

// Inherit returns what this process received if Start started it, and nil
// (with no error) otherwise. It removes EnvVar from the environment, so
// processes this one starts do not take it as theirs.
func Inherit() (*Inherited, error) {
	v, ok := os.LookupEnv(EnvVar)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(EnvVar)
	ver, n, ok := strings.Cut(v, ":")
	count, err := strconv.Atoi(n)
	if !ok || ver != strconv.Itoa(protocol) || err != nil || count < 0 || count > 1024 {
		return nil, fmt.Errorf("upgrade: %s=%q: not hand-over protocol %d (an old process of another release?)", EnvVar, v, protocol)
	}
	in := &Inherited{ready: os.NewFile(readyFd, "upgrade-ready")}
	for fd := stateFd; fd < firstFd+count; fd++ {
		unix.CloseOnExec(fd)
	}
	mem := os.NewFile(stateFd, "upgrade-state")
	defer mem.Close()
	b, err := io.ReadAll(io.LimitReader(mem, MaxState+1))
	if err != nil || len(b) > MaxState {
		return in, fmt.Errorf("upgrade: reading the state (%d bytes): %w", len(b), err)
	}
	in.State = b
	for i := range count {
		in.Files = append(in.Files, os.NewFile(uintptr(firstFd+i), "upgrade-fd-"+strconv.Itoa(i)))
	}
	return in, nil
}

// Ready tells the old process that this one serves; it exits then.
func (in *Inherited) Ready() error {
	return in.answer(msgReady)
}

// Refuse tells the old process why this one will not serve (it goes on
// serving and logs the reason); the caller should exit.
func (in *Inherited) Refuse(reason error) error {
	msg := strings.ReplaceAll(reason.Error(), "\n", " ")
	return in.answer(msgRefuse + msg)
}

func (in *Inherited) answer(msg string) error {
	if in == nil || in.ready == nil {
		return nil
	}
	_, err := in.ready.WriteString(msg + "\n")
	in.ready.Close()
	in.ready = nil
	if err != nil {
		return fmt.Errorf("upgrade: answering the old process: %w", err)
	}
	return nil
}
