package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/internal/golden"
)

const messyTopology = `node "a" {
    dsn="postgres://app@db-a/app"
}
shards "0000" { node = "a" }
shards " 1 - 5 " {
  node = "a"
      active = false  # not yet
}
`

const tidyTopology = `node "a" {
  dsn = "postgres://app@db-a/app"
}
shards "0" { node = "a" }
shards "1-5" {
  node   = "a"
  active = false # not yet
}
`

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFmt(t *testing.T) {
	dir := t.TempDir()
	messy := writeTopology(t, dir, "messy.pgms.hcl", messyTopology)
	writeTopology(t, dir, "tidy.pgms.hcl", "node \"b\" { dsn = \"host=db-b\" }\n")
	writeTopology(t, dir, "other.hcl", "not  =  formatted\n")

	// --check lists and changes nothing.
	r := pgms(t, "", "fmt", "--check", "--config", dir)
	if r.code != exitError || r.stdout != messy+"\n" || !strings.Contains(r.stderr, "1 file not in canonical layout") {
		t.Errorf("--check: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = pgms(t, "", "fmt", "--check", "--diff", "--config", dir)
	if r.code != exitError {
		t.Errorf("--check --diff: exit %d", r.code)
	}
	golden.Check(t, "testdata/fmt_diff.golden", strings.ReplaceAll(r.stdout, dir, "DIR"))
	if readString(t, messy) != messyTopology {
		t.Fatal("--check changed the file")
	}

	// Without --check the file is rewritten, and only it.
	t.Setenv("PGMS_CONFIG", dir)
	r = pgms(t, "", "fmt").must(t)
	if r.stdout != messy+"\n" {
		t.Errorf("fmt: stdout %q", r.stdout)
	}
	if got := readString(t, messy); got != tidyTopology {
		t.Errorf("formatted:\n%s\nwant:\n%s", got, tidyTopology)
	}
	if readString(t, filepath.Join(dir, "other.hcl")) != "not  =  formatted\n" {
		t.Error("a file without the .pgms.hcl suffix was changed")
	}
	r = pgms(t, "", "fmt", "--check").must(t)
	if r.stdout != "" {
		t.Errorf("second --check: %q", r.stdout)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("%d files in the directory, want 3 (no temporary file left)", len(entries))
	}
}

func TestFmtDiffWrites(t *testing.T) {
	dir := t.TempDir()
	f := writeTopology(t, dir, "t.pgms.hcl", messyTopology)
	if err := os.Chmod(f, 0o600); err != nil {
		t.Fatal(err)
	}
	r := pgms(t, "", "fmt", "--diff", "--config", f).must(t)
	if !strings.HasPrefix(r.stdout, "--- "+f+"\n+++ "+f+"\n@@ ") {
		t.Errorf("diff:\n%s", r.stdout)
	}
	if readString(t, f) != tidyTopology {
		t.Error("--diff did not write the file")
	}
	if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 kept", fi.Mode().Perm())
	}
}

func TestFmtSyntaxError(t *testing.T) {
	dir := t.TempDir()
	writeTopology(t, dir, "a.pgms.hcl", "node \"a\" {\n  dsn = \n}\n")
	writeTopology(t, dir, "b.pgms.hcl", messyTopology)
	r := pgms(t, "", "fmt", "--config", dir)
	if r.code != exitError || !strings.Contains(r.stderr, filepath.Join(dir, "a.pgms.hcl")+":2:9") ||
		!strings.Contains(r.stderr, "cannot format files with syntax errors") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	// The other files are still formatted.
	if readString(t, filepath.Join(dir, "b.pgms.hcl")) != tidyTopology {
		t.Error("b.pgms.hcl not formatted")
	}
}
