package views

import (
	"fmt"
	"io"
	"sort"

	"github.com/hashicorp/hcl/v2"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/words"
)

// Validate is what pgms validate shows: whether the topology files are
// valid, what they describe, and every diagnostic with its position. In
// text the diagnostics go to standard error, with their source lines
// (config.WriteDiagnostics); the report says the verdict.
type Validate struct {
	Header
	Valid bool     `json:"valid"`
	Files []string `json:"files"`
	// Nodes, Shards and Active count what valid files describe.
	Nodes       int          `json:"nodes"`
	Shards      int          `json:"shards"`
	Active      int          `json:"active"`
	Errors      int          `json:"errors"`
	Warnings    int          `json:"warnings"`
	Diagnostics []Diagnostic `json:"diagnostics"`
}

// Diagnostic is one problem found in the topology files.
type Diagnostic struct {
	// Severity is error or warning.
	Severity string `json:"severity"`
	Summary  string `json:"summary"`
	Detail   string `json:"detail,omitempty"`
	// File, Line and Column locate the problem, when it has a place.
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
}

// NewValidate builds the verdict on the topology loaded with its
// diagnostics.
func NewValidate(t *config.Topology, diags hcl.Diagnostics) *Validate {
	v := &Validate{Valid: !diags.HasErrors(), Files: []string{}, Diagnostics: []Diagnostic{}}
	for f := range t.Sources {
		v.Files = append(v.Files, f)
	}
	sort.Strings(v.Files)
	for _, d := range diags {
		nd := Diagnostic{Severity: "warning", Summary: dsn.Redact(d.Summary), Detail: dsn.Redact(d.Detail)}
		if d.Severity == hcl.DiagError {
			nd.Severity = "error"
			v.Errors++
		} else {
			v.Warnings++
		}
		if s := d.Subject; s != nil {
			nd.File, nd.Line, nd.Column = s.Filename, s.Start.Line, s.Start.Column
		}
		v.Diagnostics = append(v.Diagnostics, nd)
	}
	if v.Valid {
		v.Nodes = len(t.Nodes)
		v.Shards, v.Active = t.Counts()
	}
	return v
}

func (v *Validate) text(w io.Writer) error {
	if !v.Valid {
		return nil
	}
	_, err := fmt.Fprintf(w, "The configuration is valid: %s, %s (%d active).\n",
		words.Count(v.Nodes, "node"), words.Count(v.Shards, "shard"), v.Active)
	return err
}
