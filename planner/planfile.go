package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/pgms-dev/pgms/config"
)

// FileFormat marks a saved plan file; its version changes with the file's
// layout.
const FileFormat = "pgms-plan/1"

// File is a saved plan (pgms plan -out): the plan with what it was made
// from, so that a later show or apply can tell whether it still holds. It
// holds no DSN and no password: nodes are named, and connecting goes
// through the topology files again.
type File struct {
	Format string `json:"format"`
	// ConfigPath is the topology directory or file the plan read.
	ConfigPath string `json:"config_path"`
	// ConfigFiles maps each topology file's base name to the SHA-256 of its
	// content.
	ConfigFiles map[string]string `json:"config_files"`
	// Snapshot is the live state the plan was made against (see Snapshot).
	Snapshot []string `json:"snapshot"`
	Plan     *Plan    `json:"plan"`
}

// NewFile wraps a plan for saving.
func NewFile(p *Plan, configPath string, desired *config.Topology, snapshot []string) *File {
	return &File{Format: FileFormat, ConfigPath: configPath, ConfigFiles: fileHashes(desired), Snapshot: snapshot, Plan: p}
}

func fileHashes(t *config.Topology) map[string]string {
	out := map[string]string{}
	for _, f := range t.Files {
		sum := sha256.Sum256(t.Sources[f])
		out[filepath.Base(f)] = hex.EncodeToString(sum[:])
	}
	return out
}

// Save writes the file with permissions for its owner only, through a
// temporary file so that a crash leaves no half-written plan.
func (f *File) Save(path string) error {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save plan: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save plan: %w", err)
	}
	return nil
}

// LoadFile reads a saved plan.
func LoadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan file: %w", err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("plan file %s is not a pgms plan: %w", path, err)
	}
	if f.Format != FileFormat {
		return nil, fmt.Errorf("plan file %s has format %q; this pgms reads %q (make the plan again with this version)", path, f.Format, FileFormat)
	}
	if f.Plan == nil {
		return nil, fmt.Errorf("plan file %s holds no plan", path)
	}
	return &f, nil
}

// Changes lists how the topology files and the live state differ from what
// the plan was made from; none means the plan still holds.
func (f *File) Changes(desired *config.Topology, snapshot []string) []string {
	var out []string
	now := fileHashes(desired)
	var names []string
	for n := range f.ConfigFiles {
		names = append(names, n)
	}
	for n := range now {
		if _, ok := f.ConfigFiles[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		was, had := f.ConfigFiles[n]
		is, has := now[n]
		switch {
		case had && !has:
			out = append(out, fmt.Sprintf("topology file %s was removed", n))
		case !had && has:
			out = append(out, fmt.Sprintf("topology file %s was added", n))
		case was != is:
			out = append(out, fmt.Sprintf("topology file %s was edited", n))
		}
	}
	for _, d := range SnapshotDiff(f.Snapshot, snapshot) {
		out = append(out, "live state: "+d)
	}
	return out
}
