package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/internal/golden"
)

func writeTopology(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidateExample(t *testing.T) {
	for _, n := range []string{"A", "B", "C"} {
		t.Setenv("PGMS_DSN_"+n, "postgres://app:s3cret@db-"+n+":5432/app")
	}
	r := pgms(t, "", "validate", "--config", "../../examples/basic").must(t)
	if r.stdout != "The configuration is valid: 3 nodes, 13 shards (11 active).\n" || r.stderr != "" {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}

	// $PGMS_CONFIG stands in for --config.
	t.Setenv("PGMS_CONFIG", "../../examples/basic")
	pgms(t, "", "validate").must(t)

	// Without the variables: an error each, or warnings when allowed.
	for _, n := range []string{"A", "B", "C"} {
		os.Unsetenv("PGMS_DSN_" + n)
	}
	r = pgms(t, "", "validate")
	if r.code != exitError || strings.Count(r.stderr, "Error: Environment variable not set") != 3 ||
		!strings.Contains(r.stderr, "examples/basic/topology.pgms.hcl:") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	r = pgms(t, "", "validate", "--allow-unset-env").must(t)
	if strings.Count(r.stderr, "Warning: Environment variable not set") != 3 || !strings.HasPrefix(r.stdout, "The configuration is valid") {
		t.Errorf("stdout %q, stderr:\n%s", r.stdout, r.stderr)
	}
}

func TestValidateErrors(t *testing.T) {
	dir := t.TempDir()
	writeTopology(t, dir, "nodes.pgms.hcl", `node "a" { dsn = "postgres://app:s3cret@db-a/app" }
node "b" {}
`)
	writeTopology(t, dir, "shards.pgms.hcl", `shards "0-10" { node = "a" }
shards "5-20" { node = "bb" }
shards "30-25" { node = "a" }
`)
	r := pgms(t, "", "validate", "--config", dir)
	if r.code != exitError || r.stdout != "" {
		t.Errorf("exit %d, stdout %q", r.code, r.stdout)
	}
	if strings.Contains(r.stderr, "s3cret") {
		t.Errorf("the password is printed:\n%s", r.stderr)
	}
	golden.Check(t, "testdata/validate_errors.golden", strings.ReplaceAll(r.stderr, dir, "DIR"))

	// -json: the same problems with their positions, for CI annotations.
	r = pgms(t, "", "validate", "--config", dir, "-json")
	var doc struct {
		Valid       bool
		Diagnostics []struct {
			Severity, Summary, File string
			Line, Column            int
			EndLine                 int `json:"end_line"`
			EndColumn               int `json:"end_column"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != exitError || doc.Valid {
		t.Fatalf("exit %d, %v:\n%s", r.code, err, r.stdout)
	}
	found := false
	for _, d := range doc.Diagnostics {
		if d.File == "" || d.Line == 0 || d.Column == 0 || d.EndLine < d.Line {
			t.Errorf("diagnostic without its position: %+v", d)
		}
		if d.File == filepath.Join(dir, "shards.pgms.hcl") && d.Line == 3 && d.Column > 1 {
			found = true
		}
	}
	if !found || strings.Contains(r.stdout, "s3cret") {
		t.Errorf("no diagnostic on shards.pgms.hcl:3, or a password:\n%s", r.stdout)
	}
}

func TestValidateOneFileAndMissing(t *testing.T) {
	dir := t.TempDir()
	f := writeTopology(t, dir, "one.pgms.hcl", `node "a" { dsn = "host=db-a" }
shards "0" { node = "a" }
`)
	r := pgms(t, "", "validate", "--config", f).must(t)
	if r.stdout != "The configuration is valid: 1 node, 1 shard (1 active).\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	r = pgms(t, "", "validate", "--config", filepath.Join(dir, "nope"))
	if r.code != exitError || !strings.Contains(r.stderr, "no such file or directory") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	empty := t.TempDir()
	r = pgms(t, "", "validate", "--config", empty)
	if r.code != exitError || !strings.Contains(r.stderr, "holds no *.pgms.hcl file") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
