package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

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

// replaceFile writes content to path through a temporary file and a
// rename, so that an interrupted write never leaves half a file; the mode
// of an existing file is kept.
func replaceFile(path string, content []byte) error {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	} else if !os.IsNotExist(err) {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
