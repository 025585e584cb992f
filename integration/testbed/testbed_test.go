package testbed

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"
)

// TestNewcRoundTrip reads our archive back with u-root's independent newc
// reader: every entry, the implied parent directories and the trailer.
func TestNewcRoundTrip(t *testing.T) {
	a := archive{}
	a.file("bin/busybox", 0o755, []byte("#!/bin/true\n"))
	a.file("usr/share/misc/x.txt", 0o644, []byte("abc")) // 3 bytes: exercises padding
	a.dir("tmp")
	var buf bytes.Buffer
	if err := a.writeNewc(&buf); err != nil {
		t.Fatal(err)
	}
	rr := cpio.Newc.Reader(bytes.NewReader(buf.Bytes()))
	got := map[string]cpio.Record{}
	var order []string
	for {
		r, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading back: %v", err)
		}
		got[r.Name] = r
		order = append(order, r.Name)
	}
	tests := []struct {
		name    string
		mode    uint64
		content string
	}{
		{"bin", sIFDIR | 0o755, ""},
		{"bin/busybox", sIFREG | 0o755, "#!/bin/true\n"},
		{"usr", sIFDIR | 0o755, ""},
		{"usr/share/misc", sIFDIR | 0o755, ""},
		{"usr/share/misc/x.txt", sIFREG | 0o644, "abc"},
		{"tmp", sIFDIR | 0o755, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := got[tc.name]
			if !ok {
				t.Fatalf("missing from %v", order)
			}
			if r.Mode != tc.mode {
				t.Errorf("mode %o, want %o", r.Mode, tc.mode)
			}
			if r.Mode&sIFREG != 0 {
				b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
				if err != nil || string(b) != tc.content {
					t.Errorf("content %q, %v; want %q", b, err, tc.content)
				}
			}
		})
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not a multiple of 4", buf.Len())
	}
}

func TestParseOutput(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr bool
		check   func(t *testing.T, o *Output)
	}{
		{
			name: "complete",
			in: "@@@SETUP ok\n@@@CMD a\n@@@OUT 4\nx\ny\n\n@@@ERR 0\n\n@@@RC 3\n" +
				"@@@FILE /tmp/log 2\nhi\nnoise\n@@@DONE\n",
			check: func(t *testing.T, o *Output) {
				c := o.Command("a")
				if o.Setup != "ok" || c == nil || string(c.Stdout) != "x\ny\n" || len(c.Stderr) != 0 || c.Exit != 3 {
					t.Errorf("got %+v, %+v", o, c)
				}
				if string(o.Files["/tmp/log"]) != "hi" || string(o.Stray) != "noise\n" {
					t.Errorf("files %q stray %q", o.Files, o.Stray)
				}
			},
		},
		{
			name: "output containing markers is taken by length",
			in:   "@@@SETUP ok\n@@@CMD a\n@@@OUT 9\n@@@DONE\n\n\n@@@ERR 0\n\n@@@RC 0\n@@@DONE\n",
			check: func(t *testing.T, o *Output) {
				if string(o.Command("a").Stdout) != "@@@DONE\n\n" {
					t.Errorf("stdout %q", o.Command("a").Stdout)
				}
			},
		},
		{
			name: "setup failure",
			in:   "@@@SETUP insmod x failed\n@@@SETUP ok\n@@@DONE\n",
			check: func(t *testing.T, o *Output) {
				if o.Setup == "ok" {
					t.Error("setup reported ok")
				}
			},
		},
		{name: "cut short", in: "@@@SETUP ok\n@@@CMD a\n@@@OUT 10\nabc", wantErr: true},
		{name: "no done", in: "@@@SETUP ok\n", wantErr: true},
		{name: "OUT before CMD", in: "@@@OUT 1\na\n@@@DONE\n", wantErr: true},
		{name: "unknown marker", in: "@@@WHAT\n@@@DONE\n", wantErr: true},
		{name: "negative length", in: "@@@CMD a\n@@@OUT -1\n@@@DONE\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseOutput([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadOutput) {
				t.Errorf("error %v does not wrap ErrBadOutput", err)
			}
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}
}

func FuzzParseOutput(f *testing.F) {
	f.Add([]byte("@@@SETUP ok\n@@@CMD a\n@@@OUT 2\nhi\n@@@ERR 0\n\n@@@RC 0\n@@@DONE\n"))
	f.Add([]byte("@@@FILE x 3\nabc\n@@@DONE\n"))
	f.Add([]byte("@@@FILE 3\nabc\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseOutput(b)
		if o == nil {
			t.Fatal("nil output")
		}
		if err == nil && !o.Done {
			t.Error("no error although not done")
		}
	})
}

// TestScriptFraming runs a generated script's command framing with the
// host's sh and parses it back: bytes without a final newline, stderr and
// exit status survive exactly.
func TestScriptFraming(t *testing.T) {
	for _, tool := range []string{"sh", "timeout", "wc", "cat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("host lacks %s", tool)
		}
	}
	cmds := []Command{
		{Name: "no_newline", Args: []string{"printf", "a\nb"}},
		{Name: "stderr_exit", Args: []string{"sh", "-c", "echo 'it''s bad' >&2; exit 3"}},
		{Name: "marker_in_output", Args: []string{"printf", "@@@DONE\n"}},
	}
	s, err := Script(cmds, ScriptOptions{Mode: KernelMode})
	if err != nil {
		t.Fatal(err)
	}
	// Keep the prelude and the commands, drop the guest-only setup.
	var host []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "insmod") || strings.HasPrefix(l, "if wait_dev") {
			continue
		}
		host = append(host, l)
	}
	out, err := exec.Command("sh", "-c", "cd "+t.TempDir()+" && "+strings.ReplaceAll(strings.Join(host, "\n"), "/tmp/.", "./.")).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	o, err := ParseOutput(out)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, out)
	}
	tests := []struct {
		name, stdout, stderr string
		exit                 int
	}{
		{"no_newline", "a\nb", "", 0},
		{"stderr_exit", "", "its bad\n", 3},
		{"marker_in_output", "@@@DONE\n", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := o.Command(tc.name)
			if c == nil {
				t.Fatalf("missing in %q", out)
			}
			if string(c.Stdout) != tc.stdout || string(c.Stderr) != tc.stderr || c.Exit != tc.exit {
				t.Errorf("got %q %q %d, want %q %q %d", c.Stdout, c.Stderr, c.Exit, tc.stdout, tc.stderr, tc.exit)
			}
		})
	}
}

func TestScriptRejects(t *testing.T) {
	tests := []struct {
		name string
		cmds []Command
		mode Mode
	}{
		{"space in name", []Command{{Name: "a b", Args: []string{"true"}}}, KernelMode},
		{"duplicate", []Command{{Name: "a", Args: []string{"true"}}, {Name: "a", Args: []string{"true"}}}, KernelMode},
		{"no args", []Command{{Name: "a"}}, KernelMode},
		{"unknown mode", nil, Mode("other")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Script(tc.cmds, ScriptOptions{Mode: tc.mode}); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestScriptShimStartsDaemon(t *testing.T) {
	s, err := Script([]Command{{Name: "a", Args: []string{"true"}}}, ScriptOptions{Mode: ShimMode})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"insmod /modules/cuse.ko", GuestDaemon + " " + strings.Join(DefaultDaemonArgs, " "), "report " + GuestDaemonLog} {
		if !strings.Contains(s, want) {
			t.Errorf("shim script lacks %q", want)
		}
	}
	if strings.Contains(s, "ipmi_si") {
		t.Error("shim script loads ipmi_si")
	}
}

func TestTrimEnterpriseNumbers(t *testing.T) {
	in := "PRIVATE ENTERPRISE NUMBERS\n\n| | | | \n0\n  Reserved\n    IANA\n      x&y\n1500\n  Drop Me\n    a\n      b\n7154\n  IPMI Forum\n    c\n      d\n"
	got := string(trimEnterpriseNumbers([]byte(in)))
	for _, want := range []string{"PRIVATE ENTERPRISE NUMBERS", "Reserved", "IPMI Forum"} {
		if !strings.Contains(got, want) {
			t.Errorf("lost %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "Drop Me") {
		t.Errorf("kept entry 1500:\n%s", got)
	}
}

func TestFRUDataChecksums(t *testing.T) {
	d := FRUData()
	if len(d) != 256 {
		t.Fatalf("length %d", len(d))
	}
	if zeroSum(d[:8]) != 0 {
		t.Error("common header checksum")
	}
	off := int(d[3]) * 8
	n := int(d[off+1]) * 8
	if zeroSum(d[off:off+n]) != 0 {
		t.Error("board area checksum")
	}
	if !bytes.Contains(d[off:off+n], []byte("Testbed Board")) {
		t.Error("board product name missing")
	}
}
