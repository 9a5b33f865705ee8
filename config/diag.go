package config

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/pgms-dev/pgms/internal/dsn"
)

// WriteDiagnostics prints diags for a person: severity and summary, the
// position as file:line:col, the source lines with the subject
// highlighted, and the detail. sources maps file names to contents
// (Topology.Sources). Passwords are removed from everything written, the
// source snippets included. color adds terminal escape sequences.
func WriteDiagnostics(w io.Writer, sources map[string][]byte, diags hcl.Diagnostics, color bool) error {
	files := make(map[string]*hcl.File, len(sources))
	for name, src := range sources {
		// Parsed again for the navigation that names the enclosing
		// block ("in node "a""); a file with syntax errors still has it.
		f, _ := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
		if f == nil {
			f = &hcl.File{}
		}
		f.Bytes = src
		files[name] = f
	}
	var buf bytes.Buffer
	dw := hcl.NewDiagnosticTextWriter(&buf, files, 0, color)
	for _, d := range diags {
		buf.Reset()
		if err := dw.WriteDiagnostic(d); err != nil {
			return err
		}
		text := buf.String()
		if s := d.Subject; s != nil {
			// hcl names the line only; editors and people want the column.
			text = strings.Replace(text,
				fmt.Sprintf("  on %s line %d", s.Filename, s.Start.Line),
				fmt.Sprintf("  on %s:%d:%d", s.Filename, s.Start.Line, s.Start.Column), 1)
		}
		if _, err := io.WriteString(w, dsn.Redact(text)); err != nil {
			return err
		}
	}
	return nil
}
