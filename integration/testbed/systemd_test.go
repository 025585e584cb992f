package testbed

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMergedUsr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"bin/sh", "usr/bin/sh"},
		{"sbin/modprobe", "usr/sbin/modprobe"},
		{"lib/systemd/system/x.service", "usr/lib/systemd/system/x.service"},
		{"lib64/ld-linux-x86-64.so.2", "usr/lib64/ld-linux-x86-64.so.2"},
		{"lib", "usr/lib"},
		{"library/x", "library/x"},
		{"usr/bin/ipmitool", "usr/bin/ipmitool"},
		{"etc/default/ipmi-cuse", "etc/default/ipmi-cuse"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := mergedUsr(tc.in); got != tc.want {
				t.Errorf("mergedUsr(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestProjectUnit(t *testing.T) {
	root := t.TempDir()
	write := func(unit string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, "contrib", "systemd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "contrib", "systemd", "ipmi-cuse.service"), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		unit    string
		args    []string
		wantBin string
		wantDef string
		wantErr bool
	}{
		{"plain", "[Service]\nExecStart=/usr/sbin/ipmi-cuse $IPMI_CUSE_ARGS\n", nil, "/usr/sbin/ipmi-cuse", "", false},
		{"prefix and args", "[Service]\nExecStartPre=/sbin/modprobe cuse\nExecStart=-/usr/local/sbin/ipmi-cuse $X\n", []string{"--a=1", "--b"}, "/usr/local/sbin/ipmi-cuse", "IPMI_CUSE_ARGS=\"--a=1 --b\"\n", false},
		{"no ExecStart", "[Service]\n", nil, "", "", true},
		{"relative", "[Service]\nExecStart=ipmi-cuse\n", nil, "", "", true},
		{"arg with space", "[Service]\nExecStart=/usr/sbin/ipmi-cuse\n", []string{"a b"}, "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			write(tc.unit)
			files, err := ProjectUnit(root, "/bin/true", tc.args)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted: %+v", files)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if files[0].Path != tc.wantBin || files[0].HostPath != "/bin/true" || files[0].Mode != 0o755 {
				t.Errorf("daemon file %+v, want at %s", files[0], tc.wantBin)
			}
			if files[1].Path != UnitPath || string(files[1].Data) != tc.unit {
				t.Errorf("unit file %+v", files[1])
			}
			def := ""
			if len(files) > 2 {
				if files[2].Path != DefaultsPath {
					t.Errorf("defaults at %s", files[2].Path)
				}
				def = string(files[2].Data)
			}
			if def != tc.wantDef {
				t.Errorf("defaults %q, want %q", def, tc.wantDef)
			}
		})
	}
}

func TestSystemdScript(t *testing.T) {
	s := SystemdScript("run a 5 true", []string{"/x/y/pkg_1.0_amd64.deb"})
	for _, want := range []string{"journal() {", "wait_active() {", "run dpkg_install 300 dpkg -i /debs/pkg_1.0_amd64.deb\n", "run a 5 true\necho '@@@DONE'\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(SystemdScript("true\n", nil), "dpkg") {
		t.Error("dpkg step without debs")
	}
}

// TestFollowLines appends to a file in pieces and checks every complete
// line arrives once, in order, including those written just before stop.
func TestFollowLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "guest.out")
	var mu sync.Mutex
	var got []string
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		followLines(p, stop, func(l string) { mu.Lock(); got = append(got, l); mu.Unlock() })
		close(done)
	}()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, piece := range []string{"@@@CMD a\n@@@O", "UT 0\n", "\n@@@RC 0\n", "tail"} {
		if _, err := f.WriteString(piece); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond)
	}
	f.Close()
	close(stop)
	<-done
	want := []string{"@@@CMD a", "@@@OUT 0", "", "@@@RC 0"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("lines %q, want %q", got, want)
	}
}

func TestDropRelations(t *testing.T) {
	in := "Package: a\nStatus: install ok installed\nDepends: libc6 (>= 2.34),\n libacl1\nVersion: 1\nDescription: x\n more\n\nPackage: b\nPre-Depends: c\nVersion: 2\n"
	want := "Package: a\nStatus: install ok installed\nVersion: 1\nDescription: x\n more\n\nPackage: b\nVersion: 2\n"
	if got := string(dropRelations([]byte(in))); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
