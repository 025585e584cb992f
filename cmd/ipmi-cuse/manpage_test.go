package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var updateMan = flag.Bool("update-man", false, "rewrite contrib/man/ipmi-cuse.8 from --help")

// manPath is the man page the Debian package installs.
const manPath = "../../contrib/man/ipmi-cuse.8"

// TestManPageInStepWithHelp renders ipmi-cuse(8) from what --help prints
// and requires the committed page to be exactly that, so every flag, its
// argument, its default and its text are the same in both. After changing
// a flag: go test ./cmd/ipmi-cuse -run TestManPage -update-man
func TestManPageInStepWithHelp(t *testing.T) {
	var help bytes.Buffer
	if _, err := parseFlags([]string{"--help"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	page, err := renderMan(help.String())
	if err != nil {
		t.Fatal(err)
	}
	if *updateMan {
		if err := os.WriteFile(manPath, []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(manPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != page {
		t.Errorf("%s is not in step with --help; run: go test ./cmd/ipmi-cuse -run TestManPage -update-man", filepath.Clean(manPath))
	}
	// Every flag appears as an option entry (the renderer's own check).
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1) {
		if !strings.Contains(page, ".B \\-\\-"+roffEscape(m[1])) {
			t.Errorf("flag --%s has no entry in the man page", m[1])
		}
	}
}

func TestRoffEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"--flag", `\-\-flag`},
		{`a\b`, `a\eb`},
		{".starts with a dot", `\&.starts with a dot`},
		{"'quote", `\&'quote`},
	}
	for _, tc := range tests {
		if got := roffEscape(tc.in); got != tc.want {
			t.Errorf("roffEscape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// roffEscape makes one line of text safe for roff: backslashes, minus
// signs (as opposed to hyphens) and control characters at the start.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

var flagLine = regexp.MustCompile(`^  -([a-z0-9-]+)(?: (.*))?$`)

// renderMan turns --help's text into ipmi-cuse(8): the description and
// examples before "Flags:", one entry per flag, and the notes after the
// flags as preformatted text.
func renderMan(help string) (string, error) {
	lines := strings.Split(strings.TrimRight(help, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "Usage: ipmi-cuse") {
		return "", errors.New("--help does not start with the usage line")
	}
	var b strings.Builder
	b.WriteString(`.\" Generated from ipmi-cuse --help by cmd/ipmi-cuse/manpage_test.go; do not edit.
.TH IPMI\-CUSE 8 "" "ipmi-cuse" "System Administration"
.SH NAME
ipmi\-cuse \- userspace IPMI driver serving /dev/ipmi0 through CUSE
.SH SYNOPSIS
.B ipmi\-cuse
.RI [ flags ]
.SH DESCRIPTION
`)
	i := 1
	for i < len(lines) && strings.TrimSpace(lines[i]) == "" {
		i++
	}
	para := false
	for ; i < len(lines) && lines[i] != "Examples:" && lines[i] != "Flags:"; i++ {
		if strings.TrimSpace(lines[i]) == "" {
			para = true
			continue
		}
		if para {
			b.WriteString(".PP\n")
			para = false
		}
		b.WriteString(roffEscape(lines[i]) + "\n")
	}
	if i < len(lines) && lines[i] == "Examples:" {
		b.WriteString(".SH EXAMPLES\n.nf\n")
		for i++; i < len(lines) && lines[i] != "Flags:"; i++ {
			if strings.TrimSpace(lines[i]) != "" {
				b.WriteString(roffEscape(strings.TrimPrefix(lines[i], "  ")) + "\n")
			}
		}
		b.WriteString(".fi\n")
	}
	if i >= len(lines) {
		return "", errors.New(`--help has no "Flags:" line`)
	}
	b.WriteString(".SH OPTIONS\n")
	n := 0
	for i++; i < len(lines); i++ {
		m := flagLine.FindStringSubmatch(lines[i])
		if m == nil {
			break
		}
		n++
		b.WriteString(".TP\n.B \\-\\-" + roffEscape(m[1]))
		if m[2] != "" {
			b.WriteString(" \" \\fI" + roffEscape(m[2]) + "\\fR\"")
		}
		b.WriteString("\n")
		for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "    \t") {
			i++
			b.WriteString(roffEscape(strings.TrimPrefix(lines[i], "    \t")) + "\n")
		}
	}
	if n == 0 {
		return "", errors.New("--help lists no flags")
	}
	for i < len(lines) && strings.TrimSpace(lines[i]) == "" {
		i++
	}
	if i < len(lines) {
		b.WriteString(".SH NOTES\n.nf\n")
		for ; i < len(lines); i++ {
			b.WriteString(roffEscape(lines[i]) + "\n")
		}
		b.WriteString(".fi\n")
	}
	b.WriteString(`.SH FILES
.TP
.I /etc/default/ipmi\-cuse
Flags for the service: IPMI_CUSE_ARGS, and IPMI_CUSE_METRICS to turn metrics on.
.TP
.I /lib/systemd/system/ipmi\-cuse.service
The hardened systemd unit.
.TP
.I /etc/modprobe.d/ipmi\-cuse.conf
Keeps the kernel's ipmi_si and ipmi_ssif drivers off the BMC.
.TP
.I /etc/modules\-load.d/ipmi\-cuse.conf
Loads cuse at boot.
.SH SEE ALSO
.BR ipmitool (1),
.BR systemd.exec (5)
`)
	return b.String(), nil
}
