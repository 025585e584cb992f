package main

import (
	"errors"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// unitPath is the systemd unit the Debian package installs.
const unitPath = "../../contrib/systemd/ipmi-cuse.service"

// maxUnitExposure is the highest `systemd-analyze security` exposure the
// shipped unit may have (the scale shown is 0.0–10.0; 2.0 is the
// hardening goal the README states).
const maxUnitExposure = 2.0

// exposureLine finds the overall figure in systemd-analyze's report.
var exposureLine = regexp.MustCompile(`Overall exposure level for [^:]+: ([0-9]+\.[0-9])`)

// TestUnitExposure rates the shipped unit with systemd's own analyser, in
// offline mode (no running systemd needed), so a change to the unit that
// loosens its sandbox fails here rather than in a security review. The
// analyser's verdict is read from its exit status under --threshold (its
// 0–100 scale) and the figure from its report, and both must agree. It is
// skipped where systemd-analyze is not installed (the README's test
// command runs on Debian 12, where it is).
func TestUnitExposure(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the unit's exposure is not rated here")
	}
	threshold := strconv.Itoa(int(maxUnitExposure * 10))
	out, runErr := exec.Command(analyze, "security", "--offline=yes", "--threshold="+threshold, unitPath).CombinedOutput()
	var exit *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exit) {
		t.Fatalf("systemd-analyze security: %v", runErr)
	}
	m := exposureLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security printed no overall exposure level:\n%s", out)
	}
	level, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("exposure level %q: %v", m[1], err)
	}
	t.Logf("systemd-analyze security: overall exposure %.1f (at most %.1f allowed)", level, maxUnitExposure)
	if level > maxUnitExposure || runErr != nil {
		t.Errorf("the unit's exposure is %.1f (analyser exit: %v), want at most %.1f; its report:\n%s", level, runErr, maxUnitExposure, out)
	}
}
