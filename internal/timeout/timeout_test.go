package timeout

import (
	"errors"
	"fmt"
	"os"
	"testing"
)

// TestError: a wrapped timeout is a deadline error, reports Timeout, and
// matches its own transport's sentinel only.
func TestError(t *testing.T) {
	const kcs, bt = Error("kcs: timeout"), Error("bt: timeout")
	err := fmt.Errorf("waiting for OBF: %w", kcs)
	for _, tc := range []struct {
		name   string
		target error
		want   bool
	}{
		{"deadline exceeded", os.ErrDeadlineExceeded, true},
		{"own sentinel", kcs, true},
		{"other transport's sentinel", bt, false},
		{"unrelated", os.ErrNotExist, false},
	} {
		if got := errors.Is(err, tc.target); got != tc.want {
			t.Errorf("%s: errors.Is = %v, want %v", tc.name, got, tc.want)
		}
	}
	var to interface{ Timeout() bool }
	if !errors.As(err, &to) || !to.Timeout() {
		t.Error("no Timeout() true in the chain")
	}
	if err.Error() != "waiting for OBF: kcs: timeout" {
		t.Errorf("message %q", err.Error())
	}
}
