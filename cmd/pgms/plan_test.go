package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/golden"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/planner"
)

// importedCluster sets up three nodes with shards and imports them into a
// topology directory, returning it.
func importedCluster(t *testing.T) (dir string, dbs []pgtest.DB) {
	t.Helper()
	dbs = pgtest.Databases(t, 3)
	for i, name := range []string{"a", "b", "c"} {
		t.Setenv(config.DSNVariable(name), dbs[i].DSN)
		pgms(t, "", "install", "--dsn", dbs[i].DSN).must(t)
	}
	a := pgtest.Connect(t, dbs[0].DSN)
	pgtest.Exec(t, a, `SET search_path = microsharding;
		SELECT microsharding_ensure_exist(0, 6); SELECT microsharding_ensure_active(0, 4);
		CREATE TABLE sh0003.t (id int PRIMARY KEY); INSERT INTO sh0003.t SELECT generate_series(1, 1000);`)
	b := pgtest.Connect(t, dbs[1].DSN)
	pgtest.Exec(t, b, `SET search_path = microsharding;
		SELECT microsharding_ensure_exist(7, 9); SELECT microsharding_ensure_active(7, 9);`)
	dir = t.TempDir()
	r := pgms(t, "", "import", "--node", "a="+dbs[0].DSN, "--node", "b="+dbs[1].DSN, "--node", "c="+dbs[2].DSN, "--out", dir).must(t)
	if !strings.Contains(r.stdout, "3 nodes, 10 shards (8 active)") || !strings.Contains(r.stdout, "export PGMS_DSN_A=") {
		t.Fatalf("import output:\n%s", r.stdout)
	}
	return dir, dbs
}

func TestImportThenPlanShowsNoChanges(t *testing.T) {
	dir, _ := importedCluster(t)
	content, _ := os.ReadFile(filepath.Join(dir, "topology.pgms.hcl"))
	golden.Check(t, "testdata/import_topology.golden", string(content))

	r := pgms(t, "", "plan", "--config", dir, "-detailed-exitcode")
	if r.code != 0 || !strings.Contains(r.stdout, planner.NoChanges) {
		t.Fatalf("plan after import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Import refuses to overwrite.
	if r := pgms(t, "", "import", "--node", "a=postgres://x@127.0.0.1:1/x", "--out", dir); r.code != 1 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("overwrite: exit %d %s", r.code, r.stderr)
	}
}

func TestEditedRangePlansExactlyTheMoves(t *testing.T) {
	dir, dbs := importedCluster(t)
	file := filepath.Join(dir, "topology.pgms.hcl")
	content, _ := os.ReadFile(file)
	edited := strings.Replace(string(content), `shards "1-4" { node = "a" }`, "shards \"1-2\" { node = \"a\" }\nshards \"3-4\" { node = \"c\" }", 1)
	if edited == string(content) {
		t.Fatalf("range not found in:\n%s", content)
	}
	os.WriteFile(file, []byte(edited), 0o644)

	r := pgms(t, "", "plan", "--config", dir, "-detailed-exitcode", "-out="+filepath.Join(dir, "saved.plan"))
	if r.code != 2 {
		t.Fatalf("exit %d, want 2\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"~ move shard 3 (sh0003) from a to c", "~ move shard 4 (sh0004) from a to c", "Plan: 2 to move ("} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Count(r.stdout, "\n  ~ ") != 2 || strings.Contains(r.stdout, "\n  + ") || strings.Contains(r.stdout, "\n  - ") {
		t.Errorf("plan has other steps:\n%s", r.stdout)
	}

	j := pgms(t, "", "plan", "--config", dir, "--format", "json")
	var p planner.Plan
	if err := json.Unmarshal([]byte(j.stdout), &p); err != nil {
		t.Fatalf("json: %v\n%s", err, j.stdout)
	}
	if len(p.Steps) != 2 || p.Steps[0].Kind != planner.StepMove || p.Steps[0].To != "c" || p.Steps[1].Shards.From != 4 || p.FormatVersion != planner.FormatVersion {
		t.Errorf("json steps: %+v", p.Steps)
	}

	// The saved plan is current until the cluster changes.
	s := pgms(t, "", "show", filepath.Join(dir, "saved.plan")).must(t)
	if strings.Contains(s.stderr, "stale") || !strings.Contains(s.stdout, "move shard 3") {
		t.Fatalf("show of a current plan:\n%s%s", s.stdout, s.stderr)
	}
	a := pgtest.Connect(t, dbs[0].DSN)
	pgtest.Exec(t, a, "SELECT microsharding.microsharding_ensure_inactive(4)")
	s = pgms(t, "", "show", filepath.Join(dir, "saved.plan")).must(t)
	if !strings.Contains(s.stderr, "this plan is stale") || !strings.Contains(s.stderr, "- node a: shard sh0004 active") || !strings.Contains(s.stderr, "+ node a: shard sh0004 inactive") {
		t.Errorf("show of a stale plan:\n%s", s.stderr)
	}
	os.WriteFile(file, []byte(edited+"\n# a comment\n"), 0o644)
	s = pgms(t, "", "show", filepath.Join(dir, "saved.plan"), "--format", "json").must(t)
	if !strings.Contains(s.stderr, "topology file topology.pgms.hcl was edited") {
		t.Errorf("show after an edit:\n%s", s.stderr)
	}
}

func TestPlanRefusesContradictoryState(t *testing.T) {
	dir, dbs := importedCluster(t)
	c := pgtest.Connect(t, dbs[2].DSN)
	pgtest.Exec(t, c, "SELECT microsharding.microsharding_ensure_exist(8); SELECT microsharding.microsharding_ensure_active(8)")
	r := pgms(t, "", "plan", "--config", dir, "-detailed-exitcode")
	if r.code != 1 || !strings.Contains(r.stdout, "Error: shard 8 is active on 2 nodes: b, c") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestPlanUnreachableNode(t *testing.T) {
	dir, _ := importedCluster(t)
	t.Setenv("PGMS_DSN_B", "postgres://app:hunter2@127.0.0.1:1/app?connect_timeout=2")
	r := pgms(t, "", "plan", "--config", dir)
	if r.code != 1 || !strings.Contains(r.stdout, "Error: cannot read node b") || strings.Contains(r.stdout+r.stderr, "hunter2") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
