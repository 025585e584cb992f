package privdrop

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const statusSample = `Name:	ipmi-cuse
Uid:	0	0	0	0
Gid:	0	0	0	0
NoNewPrivs:	%s
CapInh:	0000000000000000
CapPrm:	%s
CapEff:	%s
CapBnd:	%s
CapAmb:	0000000000000000
`

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name          string
		nnp, prm, eff string
		bnd           string
		wantDropped   bool
		wantErr       bool
	}{
		{"root", "0", "000001ffffffffff", "000001ffffffffff", "000001ffffffffff", false, false},
		{"dropped", "1", "0000000000000000", "0000000000000000", "0000000000000000", true, false},
		{"no_new_privs only", "1", "0000000000200000", "0000000000000000", "0000000000000000", false, false},
		{"bounding set kept", "1", "0000000000000000", "0000000000000000", "0000000000020001", true, false},
		{"garbage", "1", "zz", "0", "0", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := strings.NewReplacer("%s", "\x00").Replace(statusSample)
			for _, v := range []string{tc.nnp, tc.prm, tc.eff, tc.bnd} {
				in = strings.Replace(in, "\x00", v, 1)
			}
			st, err := ParseStatus([]byte(in))
			if tc.wantErr {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Dropped() != tc.wantDropped || st.UID != "0 0 0 0" {
				t.Errorf("%+v: dropped %v, want %v", st, st.Dropped(), tc.wantDropped)
			}
		})
	}
	if _, err := ParseStatus([]byte("Name:\tx\n")); err == nil {
		t.Error("a status without capability lines parsed")
	}
}

// TestDropEveryThread builds a static program (no cgo: the race-enabled
// test binary cannot drop every thread) that locks goroutines to threads
// and drops, and checks every thread ends with nothing and root's
// DAC override is gone. It needs root.
func TestDropEveryThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if testing.Short() {
		t.Skip("builds a program")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "dropper")
	build := exec.Command("go", "build", "-o", bin, "./testdata/dropper")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	locked := filepath.Join(dir, "root-only")
	if err := os.WriteFile(locked, nil, 0o000); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, wantUID string
	}{
		{"stay root", "", "0 0 0 0"},
		{"to nobody", "nobody", "65534 65534 65534 65534"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{locked}
			if tc.user != "" {
				args = append(args, tc.user)
			}
			out, err := exec.Command(bin, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			threads := 0
			for _, l := range lines {
				if strings.HasPrefix(l, "thread ") {
					threads++
					if l != "thread dropped=true uid="+tc.wantUID {
						t.Errorf("%s", l)
					}
				}
			}
			if threads < 4 {
				t.Errorf("only %d threads reported:\n%s", threads, out)
			}
			if !strings.Contains(string(out), "root-only file: refused") {
				t.Errorf("a mode-000 file still opened after the drop:\n%s", out)
			}
		})
	}
}

// TestDropRefusesCgo: this test binary uses cgo under -race, and Drop must
// then refuse before changing anything.
func TestDropRefusesCgo(t *testing.T) {
	if !cgoEnabled {
		t.Skip("built without cgo")
	}
	if err := Drop(Config{}); err != ErrCgo {
		t.Fatalf("Drop in a cgo binary = %v, want ErrCgo", err)
	}
	ts, err := Threads(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range ts {
		if th.NoNewPrivs && os.Geteuid() == 0 {
			t.Errorf("thread %s got no_new_privs from a refused Drop", th.TID)
		}
	}
}
