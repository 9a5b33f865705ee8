package config

import (
	"bytes"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
)

// Reformatted is a topology file whose canonical layout differs from what
// it holds.
type Reformatted struct {
	Path     string
	Old, New []byte
}

// FormatFiles formats the topology files at path (a directory of
// *.pgms.hcl files, or one file) without writing anything. It returns the
// files whose layout changes, the content of every file read, and the
// diagnostics of those that do not parse (the others are still formatted).
func FormatFiles(path string) ([]Reformatted, map[string][]byte, hcl.Diagnostics, error) {
	files, diags := ListFiles(path)
	if diags.HasErrors() {
		return nil, nil, diags, nil
	}
	var changed []Reformatted
	sources := map[string][]byte{}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, nil, err
		}
		sources[f] = src
		formatted, fdiags := Format(src, f)
		if fdiags.HasErrors() {
			diags = append(diags, fdiags...)
			continue
		}
		if !bytes.Equal(src, formatted) {
			changed = append(changed, Reformatted{Path: f, Old: src, New: formatted})
		}
	}
	return changed, sources, diags, nil
}

// WriteFile writes a topology file through a temporary file and a rename,
// so that an interrupted write never leaves half a file; an existing
// file's mode is kept.
func WriteFile(path string, content []byte) error {
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
