package views

import (
	"fmt"
	"io"
	"strings"

	"github.com/pgms-dev/pgms/internal/buildinfo"
)

// Version is what pgms version shows: which pgms this is and which version
// of the stored-function library it installs.
type Version struct {
	Header
	buildinfo.Info
	// LibraryVersion is the version of the microsharding library this
	// pgms installs and upgrades nodes to.
	LibraryVersion int `json:"library_version"`
}

// NewVersion builds the version report.
func NewVersion(info buildinfo.Info, libraryVersion int) *Version {
	return &Version{Info: info, LibraryVersion: libraryVersion}
}

func (v *Version) text(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "pgms %s\n", v.Info.Version)
	if v.Commit != "" {
		fmt.Fprintf(&b, "  commit   %s", v.Commit)
		if v.CommitTime != "" {
			fmt.Fprintf(&b, " (%s)", v.CommitTime)
		}
		if v.Modified {
			b.WriteString(", with uncommitted changes")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  built    with %s for %s\n", v.GoVersion, v.Platform)
	fmt.Fprintf(&b, "  library  version %d (installed on nodes by pgms install and apply)\n", v.LibraryVersion)
	return flush(w, &b)
}
