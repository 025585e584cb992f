package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestStampWins(t *testing.T) {
	tests := []struct {
		name, version, revision string
		wantVersion, wantRev    string
	}{
		// go test binaries carry no VCS settings and version "" or (devel).
		{"no stamp", "", "", "", "unknown"},
		{"stamped", "v1.2.3", "0123abc", "v1.2.3", "0123abc"},
		{"revision only", "", "feedbee-dirty", "", "feedbee-dirty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stampVersion, stampRevision = tc.version, tc.revision
			defer func() { stampVersion, stampRevision = "", "" }()
			b := Read()
			if tc.wantVersion != "" && b.Version != tc.wantVersion {
				t.Errorf("version %q, want %q", b.Version, tc.wantVersion)
			}
			if b.Revision != tc.wantRev {
				t.Errorf("revision %q, want %q", b.Revision, tc.wantRev)
			}
			if b.GoVersion != runtime.Version() {
				t.Errorf("go version %q, want %q", b.GoVersion, runtime.Version())
			}
			if s := b.String(); !strings.HasPrefix(s, "ipmi-cuse ") || !strings.Contains(s, b.Revision) {
				t.Errorf("String() = %q", s)
			}
		})
	}
}
