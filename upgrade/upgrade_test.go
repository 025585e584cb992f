package upgrade

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// childEnv selects what the test binary does when Start runs it.
const childEnv = "UPGRADE_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv(childEnv); ok {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child plays the new process: it checks what it inherited and answers
// as mode says.
func child(mode string) int {
	switch mode {
	case "exit":
		return 3
	case "hang":
		time.Sleep(time.Hour)
		return 0
	}
	in, err := Inherit()
	if err != nil || in == nil {
		fmt.Fprintln(os.Stderr, "child: Inherit:", in, err)
		return 4
	}
	if _, ok := os.LookupEnv(EnvVar); ok {
		return 5
	}
	switch mode {
	case "refuse":
		in.Refuse(errors.New("state format version 9\nunknown"))
		return 1
	case "close":
		in.ready.Close()
		time.Sleep(time.Hour)
		return 0
	}
	// "ready": echo the state into the first file (a pipe), check the
	// second is still non-blocking, then answer.
	if len(in.Files) != 2 {
		return 6
	}
	if _, err := in.Files[0].Write(in.State); err != nil {
		return 7
	}
	in.Files[0].Close()
	fl, err := unix.FcntlInt(in.Files[1].Fd(), unix.F_GETFL, 0)
	if err != nil || fl&unix.O_NONBLOCK == 0 {
		return 8
	}
	if err := in.Ready(); err != nil {
		return 9
	}
	return 0
}

func start(t *testing.T, mode string, timeout time.Duration, files []*os.File) (*Process, error) {
	t.Helper()
	cfg := Config{Path: os.Args[0], Env: append(os.Environ(), childEnv+"="+mode), Timeout: timeout}
	return Start(context.Background(), cfg, []byte("the state"), files)
}

func TestStartReady(t *testing.T) {
	echoR, echoW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer echoR.Close()
	nbR, nbW, err := os.Pipe() // os.Pipe is non-blocking, like /dev/cuse under the netpoller
	if err != nil {
		t.Fatal(err)
	}
	defer nbR.Close()
	defer nbW.Close()
	p, err := start(t, "ready", time.Minute, []*os.File{echoW, nbR})
	echoW.Close()
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if p.Pid <= 0 {
		t.Errorf("pid %d", p.Pid)
	}
	got, _ := io.ReadAll(echoR)
	if !bytes.Equal(got, []byte("the state")) {
		t.Errorf("child read state %q", got)
	}
	// Passing it did not make this process's descriptor blocking either.
	if fl, err := unix.FcntlInt(rawFdT(t, nbR), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
		t.Errorf("parent's descriptor lost O_NONBLOCK (flags %#x, %v)", fl, err)
	}
}

func rawFdT(t *testing.T, f *os.File) uintptr {
	fd, err := rawFd(f)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func TestStartFailures(t *testing.T) {
	tests := []struct {
		mode    string
		timeout time.Duration
		want    error
		text    string
	}{
		{"exit", time.Minute, ErrExited, "exit status 3"},
		{"refuse", time.Minute, ErrRefused, "state format version 9 unknown"},
		{"hang", 200 * time.Millisecond, ErrTimeout, "200ms"},
		{"close", 200 * time.Millisecond, ErrTimeout, "without an answer"},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			p, err := start(t, tc.mode, tc.timeout, nil)
			if !errors.Is(err, tc.want) || p != nil {
				t.Fatalf("Start = %v, %v; want %v", p, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not say %q", err, tc.text)
			}
		})
	}
}

func TestStartMissingBinary(t *testing.T) {
	_, err := Start(context.Background(), Config{Path: "/nonexistent/ipmi-cuse"}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/ipmi-cuse") {
		t.Errorf("Start = %v, want an error naming the binary", err)
	}
}

func TestInheritNotUpgraded(t *testing.T) {
	t.Setenv(EnvVar, "")
	os.Unsetenv(EnvVar)
	if in, err := Inherit(); in != nil || err != nil {
		t.Errorf("Inherit without %s = %v, %v", EnvVar, in, err)
	}
}

func TestInheritBadProtocol(t *testing.T) {
	for _, v := range []string{"2:1", "1", "1:x", "1:-1"} {
		t.Setenv(EnvVar, v)
		if _, err := Inherit(); err == nil || !strings.Contains(err.Error(), "protocol 1") {
			t.Errorf("%s=%q: %v, want a protocol error", EnvVar, v, err)
		}
	}
}
