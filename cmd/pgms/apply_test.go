package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// migrateScript is the demo's migration: a table with a sequence in every
// new shard, through psql and the libpq variables apply sets.
func migrateScript(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("../../examples/demo/migrate.sh")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// freshCluster returns three empty databases (no library) with PGMS_DSN_A..C
// pointing at them.
func freshCluster(t *testing.T) []pgtest.DB {
	t.Helper()
	dbs := pgtest.Databases(t, 3)
	for i, name := range []string{"a", "b", "c"} {
		t.Setenv(config.DSNVariable(name), dbs[i].DSN)
	}
	return dbs
}

func topologyWith(migrate, shards string) string {
	return fmt.Sprintf(`cluster {
  migrate_command = [%q]
}
node "a" { dsn = env("PGMS_DSN_A") }
node "b" { dsn = env("PGMS_DSN_B") }
node "c" { dsn = env("PGMS_DSN_C") }
%s`, migrate, shards)
}

func count1(t *testing.T, dsn, query string) string {
	t.Helper()
	var s string
	if err := pgtest.Connect(t, dsn).QueryRow(context.Background(), query).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

func TestApplyAllocatesMovesAndConverges(t *testing.T) {
	dbs := freshCluster(t)
	dir := t.TempDir()
	migrate := migrateScript(t)
	writeTopology(t, dir, "topology.pgms.hcl", topologyWith(migrate, `
shards "0-4" { node = "a" }
shards "5-8" { node = "b" }
shards "9-10" {
  node   = "c"
  active = false
}
`))
	r := pgms(t, "", "apply", "--config", dir, "--auto-approve")
	if r.code != 0 {
		t.Fatalf("first apply: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{fmt.Sprintf("+ install library version %d on a", sql.Version), "+ allocate shards 0-4 (sh0000…sh0004) on a", "leave inactive", "Apply finished in"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("apply output lacks %q:\n%s", want, r.stdout)
		}
	}
	if got := count1(t, dbs[0].DSN, "SELECT microsharding.microsharding_list_active_shards()::text"); got != "{sh0000,sh0001,sh0002,sh0003,sh0004}" {
		t.Fatalf("active on a: %s", got)
	}
	if got := count1(t, dbs[2].DSN, "SELECT count(*)::text FROM pg_tables WHERE tablename = 'users' AND schemaname IN ('sh0009', 'sh0010')"); got != "2" {
		t.Fatalf("migration did not run on c: %s tables", got)
	}

	// Data in the shards that will move, then a new placement: 3-4 go to
	// c, inactive 10 goes to a and stays inactive.
	a := pgtest.Connect(t, dbs[0].DSN)
	pgtest.Exec(t, a, `
		INSERT INTO sh0003.users (name, email) SELECT 'u' || g, g || '@x' FROM generate_series(1, 500) g;
		INSERT INTO sh0004.users (name, email) SELECT 'v' || g, g || '@y' FROM generate_series(1, 300) g;`)
	c := pgtest.Connect(t, dbs[2].DSN)
	pgtest.Exec(t, c, `INSERT INTO sh0010.users (name, email) SELECT 'w' || g, g || '@z' FROM generate_series(1, 50) g;`)
	writeTopology(t, dir, "topology.pgms.hcl", topologyWith(migrate, `
shards "0-2" { node = "a" }
shards "3-4" { node = "c" }
shards "5-8" { node = "b" }
shards "9" {
  node   = "c"
  active = false
}
shards "10" {
  node   = "a"
  active = false
}
`))
	r = pgms(t, "", "plan", "--config", dir, "-detailed-exitcode")
	if r.code != 2 || strings.Count(r.stdout, "  ~ move shard") != 3 {
		t.Fatalf("plan: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = pgms(t, "", "apply", "--config", dir, "--auto-approve", "--parallelism", "2")
	if r.code != 0 {
		t.Fatalf("second apply: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "write pause median") {
		t.Errorf("no pause summary:\n%s", r.stdout)
	}
	if got := count1(t, dbs[2].DSN, "SELECT microsharding.microsharding_list_active_shards()::text"); got != "{sh0003,sh0004}" {
		t.Errorf("active on c: %s", got)
	}
	if got := count1(t, dbs[2].DSN, "SELECT count(*)::text FROM sh0003.users"); got != "500" {
		t.Errorf("rows of sh0003 on c: %s", got)
	}
	// The inactive shard moved and stayed inactive, under its own name.
	if got := count1(t, dbs[0].DSN, "SELECT count(*)::text FROM sh0010.users"); got != "50" {
		t.Errorf("rows of sh0010 on a: %s", got)
	}
	if got := count1(t, dbs[0].DSN, "SELECT 'sh0010' = ANY(microsharding.microsharding_list_active_shards()::text[])::text"); got != "false" {
		t.Errorf("sh0010 active on a: %s", got)
	}
	// Sequences came along: a new row on c does not collide.
	pgtest.Exec(t, pgtest.Connect(t, dbs[2].DSN), "INSERT INTO sh0003.users (name, email) VALUES ('new', 'n@x')")

	// Converged: nothing to do but keep the renamed sources until
	// cleanup_after.
	r = pgms(t, "", "plan", "--config", dir, "-detailed-exitcode")
	if r.code != 0 || !strings.Contains(r.stdout, "Leftovers kept:") || !strings.Contains(r.stdout, "sh0003old") {
		t.Errorf("plan after apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for i := range dbs {
		if got := count1(t, dbs[i].DSN, "SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_subscription)"); got != "0" {
			t.Errorf("node %d: %s replication objects left", i, got)
		}
	}
	// The journal recorded both runs.
	s := pgms(t, "", "status", "--dsn", dbs[0].DSN).must(t)
	if !strings.Contains(s.stdout, "apply") {
		t.Errorf("status:\n%s", s.stdout)
	}
}

func TestApplySavedPlanRefusedWhenStale(t *testing.T) {
	dbs := freshCluster(t)
	dir := t.TempDir()
	writeTopology(t, dir, "topology.pgms.hcl", topologyWith(migrateScript(t), `shards "1-2" { node = "a" }`))
	planFile := filepath.Join(dir, "release.plan")
	pgms(t, "", "plan", "--config", dir, "-out", planFile).must(t)
	// Someone installs the library on b meanwhile.
	pgms(t, "", "install", "--dsn", dbs[1].DSN).must(t)
	r := pgms(t, "", "apply", planFile)
	if r.code != 1 || !strings.Contains(r.stderr, "is stale") || !strings.Contains(r.stderr, "+ node b: primary at") {
		t.Fatalf("stale apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := count1(t, dbs[0].DSN, "SELECT count(*)::text FROM pg_namespace WHERE nspname = 'microsharding'"); got != "0" {
		t.Errorf("a stale plan changed node a")
	}
	// A fresh plan applies.
	pgms(t, "", "plan", "--config", dir, "-out", planFile).must(t)
	pgms(t, "", "apply", planFile).must(t)
	if got := count1(t, dbs[0].DSN, "SELECT microsharding.microsharding_list_active_shards()::text"); got != "{sh0001,sh0002}" {
		t.Errorf("active on a: %s", got)
	}
}

func TestApplyPromptAndLock(t *testing.T) {
	dbs := freshCluster(t)
	dir := t.TempDir()
	writeTopology(t, dir, "topology.pgms.hcl", topologyWith(migrateScript(t), `shards "1" { node = "b" }`))
	r := pgms(t, "no\n", "apply", "--config", dir)
	if r.code != 1 || !strings.Contains(r.stdout, "Apply cancelled; nothing changed.") {
		t.Fatalf("declined: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = pgms(t, "", "apply", "--config", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "--auto-approve") {
		t.Fatalf("no answer: exit %d\n%s", r.code, r.stderr)
	}
	// Another run holds the lock on the state node (a, the first by name).
	pgms(t, "", "install", "--dsn", dbs[0].DSN).must(t)
	j, _, err := state.AcquireRunLock(context.Background(), dbs[0].DSN, "microsharding", state.ThisProcess("move", "move --shard 7"), state.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r = pgms(t, "yes\n", "apply", "--config", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "move --shard 7") || strings.Contains(r.stdout, "pgms will make") {
		t.Fatalf("locked: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// With a wait, apply goes ahead once the other run is done.
	go func() {
		time.Sleep(time.Second)
		j.Release(context.Background())
	}()
	r = pgms(t, "yes\n", "apply", "--config", dir, "-lock-timeout=30s")
	if r.code != 0 || !strings.Contains(r.stderr, "Waiting up to 30s for the run lock, held by pid") {
		t.Fatalf("waiting apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
