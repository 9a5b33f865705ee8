package main

import (
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/hcl/v2"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/words"
)

// loadTopology reads the topology files, printing every diagnostic; it
// fails when any is an error.
func loadTopology(stderr io.Writer, path string) (*config.Topology, error) {
	t, diags := config.Load(path)
	if err := printDiagnostics(stderr, t.Sources, diags); err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		return nil, fmt.Errorf("the configuration is not valid: %s (pgms validate shows the same)", errorCount(diags))
	}
	return t, nil
}

// printDiagnostics writes diagnostics for a person, in color on a terminal.
func printDiagnostics(w io.Writer, sources map[string][]byte, diags hcl.Diagnostics) error {
	if len(diags) == 0 {
		return nil
	}
	return config.WriteDiagnostics(w, sources, diags, colorful(w))
}

// colorful reports whether w is a terminal that wants color.
func colorful(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// errorCount says how many of diags are errors: "3 errors".
func errorCount(diags hcl.Diagnostics) string {
	n := 0
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			n++
		}
	}
	return words.Count(n, "error")
}
