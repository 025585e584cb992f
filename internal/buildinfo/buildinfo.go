// Package buildinfo identifies the running binary: module version and VCS
// revision from the Go build information, or from values the Makefile and
// the Debian package stamp with -ldflags -X (builds where GOFLAGS carries
// -buildvcs=false, git worktrees, source trees without .git).
package buildinfo

import (
	"runtime/debug"
)

// Stamped by the Makefile and the Debian package build with
//
//	-ldflags "-X github.com/ipmi-cuse/ipmi-cuse/internal/buildinfo.stampVersion=... -X ...stampRevision=..."
//
// for builds without VCS information (GOFLAGS=-buildvcs=false, or a source
// tree without .git). Empty otherwise.
var stampVersion, stampRevision string

// BuildInfo identifies the running binary.
type BuildInfo struct {
	// Version is the main module's version ("(devel)" for a build from a
	// source tree), or the stamped one.
	Version string
	// Revision is the VCS revision, with "-dirty" when the tree had local
	// changes; "unknown" when neither the build info nor a stamp has it.
	Revision string
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// Read returns the binary's BuildInfo: stamped values win over
// what debug.ReadBuildInfo has.
func Read() BuildInfo {
	bi := BuildInfo{Version: "unknown", Revision: "unknown", GoVersion: "unknown"}
	if info, ok := debug.ReadBuildInfo(); ok {
		bi.GoVersion = info.GoVersion
		if info.Main.Version != "" {
			bi.Version = info.Main.Version
		}
		var rev, modified string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			bi.Revision = rev
			if modified == "true" {
				bi.Revision += "-dirty"
			}
		}
	}
	if stampVersion != "" {
		bi.Version = stampVersion
	}
	if stampRevision != "" {
		bi.Revision = stampRevision
	}
	return bi
}

// String is the one line --version prints.
func (b BuildInfo) String() string {
	return "ipmi-cuse " + b.Version + " (revision " + b.Revision + ", " + b.GoVersion + ")"
}
