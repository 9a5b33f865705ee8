package main

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/pgms-dev/pgms/internal/golden"
)

// TestDocs generates the command reference of docs/cli — a Markdown page
// and a man page per command, from the commands' own help — and checks
// that the files there are current (go test ./cmd/pgms -run TestDocs
// -update rewrites them). The generator runs in the test so that the pgms
// binary does not carry it.
func TestDocs(t *testing.T) {
	// Flag defaults read these: the reference shows the built-in ones.
	for _, v := range []string{"DEACTIVATE_SQL", "MIGRATE_CMD", "PGMS_CONFIG", "PGMS_SCHEMA", "WEIGHT_SQL"} {
		t.Setenv(v, "")
	}
	root := newRootCommand(strings.NewReader(""), io.Discard, io.Discard)
	root.DisableAutoGenTag = true
	dir := t.TempDir()
	if err := doc.GenMarkdownTree(root, dir); err != nil {
		t.Fatal(err)
	}
	// The man pages' date is the month the reference was generated in; it
	// is left out of the comparison.
	now := time.Now()
	header := &doc.GenManHeader{Title: "PGMS", Section: "1", Source: "pgms", Manual: "pgms manual", Date: &now}
	if err := doc.GenManTree(root, header, dir); err != nil {
		t.Fatal(err)
	}
	// The trees leave out help topics (pgms help topology): their pages
	// are made one by one.
	for _, c := range root.Commands() {
		if !c.IsAdditionalHelpTopicCommand() {
			continue
		}
		base := filepath.Join(dir, strings.ReplaceAll(c.CommandPath(), " ", "_"))
		md, err := os.Create(base + ".md")
		if err != nil {
			t.Fatal(err)
		}
		if err := doc.GenMarkdown(c, md); err != nil {
			t.Fatal(err)
		}
		md.Close()
		man, err := os.Create(base + ".1")
		if err != nil {
			t.Fatal(err)
		}
		if err := doc.GenMan(c, header, man); err != nil {
			t.Fatal(err)
		}
		man.Close()
	}
	generated, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	thDate := regexp.MustCompile(`(?m)^(\.TH "PGMS[^"]*" "1") "[^"]*"`)
	want := map[string]bool{}
	for _, path := range generated {
		name := filepath.Base(path)
		want[name] = true
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got := string(b)
		dest := filepath.Join("..", "..", "docs", "cli", name)
		if strings.HasSuffix(name, ".1") {
			if old, err := os.ReadFile(dest); err == nil && !golden.Updating() {
				// Compare without the date.
				got = thDate.ReplaceAllString(got, `$1 "DATE"`)
				if old := thDate.ReplaceAllString(string(old), `$1 "DATE"`); old != got {
					t.Errorf("%s is out of date (go test ./cmd/pgms -run TestDocs -update)", dest)
				}
				continue
			}
		}
		golden.Check(t, dest, got)
	}
	// Every command has both pages, and no page is left of a command gone.
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root && !c.IsAdditionalHelpTopicCommand() {
			return
		}
		base := strings.ReplaceAll(c.CommandPath(), " ", "_")
		if !want[base+".md"] {
			t.Errorf("no Markdown page for %s", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	existing, _ := filepath.Glob(filepath.Join("..", "..", "docs", "cli", "*"))
	for _, path := range existing {
		if !want[filepath.Base(path)] && !golden.Updating() {
			t.Errorf("%s belongs to no command: remove it", path)
		}
	}
}
