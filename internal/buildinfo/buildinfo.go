// Package buildinfo says which pgms this is: the module version and the
// commit it was built from, read from the build information Go embeds in
// every binary, so that a `go install …@v1.2.3` build reports v1.2.3 and a
// build from a checkout reports its commit. The journal records it for
// every run; pgms version prints it.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Set at link time (go build -ldflags "-X …=…") by builds that know better
// than the embedded information: a release script, or a checkout built with
// -buildvcs=false, which embeds no commit.
var (
	version string
	commit  string
)

// Info describes the running binary.
type Info struct {
	// Version is the module version ("v1.2.3"), or "(devel)" for a build
	// from a checkout.
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from, when known;
	// Modified says the checkout had uncommitted changes.
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified,omitempty"`
	// GoVersion is the toolchain that built it; Platform GOOS/GOARCH.
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// Read returns the information of the running binary.
func Read() Info {
	info := Info{Version: "(unknown)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.Version = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Commit = s.Value
			case "vcs.time":
				info.CommitTime = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	if info.Version == "" {
		// A test binary has no main module version.
		info.Version = "(devel)"
	}
	if version != "" {
		info.Version = version
	}
	if commit != "" {
		info.Commit = commit
	}
	return info
}

// String is the version as one short token for logs and the journal:
// "v1.2.3", or "(devel) 0123456789ab" with the commit's first 12 digits,
// and "+modified" for a build from a checkout with changes.
func (i Info) String() string {
	s := i.Version
	if i.Commit != "" {
		c := i.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		s += " " + c
		if i.Modified {
			s += "+modified"
		}
	}
	return s
}
