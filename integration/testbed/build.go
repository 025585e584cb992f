package testbed

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNoDaemon is returned by BuildDaemon when the repository has no
// cmd/ipmi-cuse main package yet (no non-test file declares func main), so
// shim mode cannot run.
var ErrNoDaemon = errors.New("cmd/ipmi-cuse does not exist yet")

// RepoRoot returns the root of the module containing the working directory.
func RepoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("repo root: no go.mod above the working directory")
		}
		d = p
	}
}

// BuildStatic builds the Go package pkg (e.g. "./cmd/ipmi-cuse", relative
// to root) as a static binary for the guest (CGO_ENABLED=0, linux/amd64).
func BuildStatic(root, pkg, out string) error {
	return buildStatic(root, pkg, out, "")
}

// BuildDaemonVersion builds ipmi-cuse into out with version stamped in
// (the Makefile's -ldflags -X of internal/buildinfo): a genuinely
// different binary, whose --version and logs say version.
func BuildDaemonVersion(root, out, version string) error {
	return buildStatic(root, "./cmd/ipmi-cuse", out,
		"-X github.com/ipmi-cuse/ipmi-cuse/internal/buildinfo.stampVersion="+version)
}

func buildStatic(root, pkg, out, ldflags string) error {
	args := []string{"build", "-trimpath", "-o", out}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// BuildDaemon builds ipmi-cuse for the guest into dir and returns its path,
// or ErrNoDaemon when cmd/ipmi-cuse has no func main yet.
func BuildDaemon(root, dir string) (string, error) {
	if !hasMain(filepath.Join(root, "cmd", "ipmi-cuse")) {
		return "", ErrNoDaemon
	}
	out := filepath.Join(dir, "ipmi-cuse")
	if err := BuildStatic(root, "./cmd/ipmi-cuse", out); err != nil {
		return "", err
	}
	return out, nil
}

// hasMain reports whether a non-test Go file in dir declares func main.
func hasMain(dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err == nil && bytes.Contains(b, []byte("\nfunc main() {")) {
			return true
		}
	}
	return false
}
