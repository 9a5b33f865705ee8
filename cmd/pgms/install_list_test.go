package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/views"
)

func TestInstallAndList(t *testing.T) {
	dbs := pgtest.Databases(t, 2)
	args := []string{"--dsn", dbs[0].DSN, "--dsn", dbs[1].DSN}
	r := pgms(t, "", append([]string{"install"}, args...)...).must(t)
	if strings.Count(r.stdout, "installed library version") != 2 {
		t.Fatalf("install output:\n%s", r.stdout)
	}
	r = pgms(t, "", append([]string{"install"}, args...)...).must(t)
	if strings.Count(r.stdout, "is up to date") != 2 {
		t.Fatalf("re-install output:\n%s", r.stdout)
	}

	a := pgtest.Connect(t, dbs[0].DSN)
	pgtest.Exec(t, a, `
		SET search_path = microsharding;
		SELECT microsharding_ensure_exist(1, 3);
		SELECT microsharding_ensure_active(1, 2);
		CREATE TABLE sh0001.t (id int PRIMARY KEY, pad text);
		INSERT INTO sh0001.t SELECT g, repeat('x', 500) FROM generate_series(1, 2000) g;
		CREATE TABLE sh0002.t (id int PRIMARY KEY);`)
	b := pgtest.Connect(t, dbs[1].DSN)
	pgtest.Exec(t, b, "SELECT microsharding.microsharding_ensure_exist(4); SELECT microsharding.microsharding_ensure_active(4); CREATE TABLE sh0004.t (id int)")

	r = pgms(t, "", append([]string{"list"}, args...)...).must(t)
	for _, want := range []string{
		dbs[0].Server.Addr() + "/" + dbs[0].Name + ": 2 active shards",
		dbs[1].Server.Addr() + "/" + dbs[1].Name + ": 1 active shard,",
		"SHARD   WEIGHT  SHARE  TABLES",
		"Total: 3 active shards",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("list output lacks %q:\n%s", want, r.stdout)
		}
	}
	if regexp.MustCompile(`sh0003`).MatchString(r.stdout) {
		t.Errorf("inactive shard listed:\n%s", r.stdout)
	}

	r = pgms(t, "", append([]string{"list", "--json", "--weight-sql", "SELECT count(*), 'extra' AS note FROM t"}, args...)...).must(t)
	var l views.List
	if err := json.Unmarshal([]byte(r.stdout), &l); err != nil {
		t.Fatalf("json: %v\n%s", err, r.stdout)
	}
	if l.Shards != 3 || l.WeightInBytes || len(l.Nodes) != 2 || l.FormatVersion != views.FormatVersion {
		t.Fatalf("json listing: %+v", l)
	}
	var first views.ListNode
	for _, n := range l.Nodes {
		if strings.HasSuffix(n.Node, dbs[0].Name) && n.Node == dbs[0].Server.Addr()+"/"+dbs[0].Name {
			first = n
		}
	}
	if len(first.Shards) != 2 || first.Shards[0].Weight != 2000 || first.Shards[1].Weight != 0 || first.Shards[0].Share != 1 {
		t.Errorf("weights by query: %+v", first)
	}
	if len(first.Shards[0].Extra) != 1 || first.Shards[0].Extra[0].Value != "extra" {
		t.Errorf("extra columns: %+v", first.Shards[0].Extra)
	}
}

func TestListUnreachableNodeStillListsOthers(t *testing.T) {
	db := pgtest.Database(t)
	pgms(t, "", "install", "--dsn", db.DSN).must(t)
	bad := "postgres://app:hunter2@127.0.0.1:1/nowhere?connect_timeout=2"
	r := pgms(t, "", "list", "--dsn", db.DSN, "--dsn", bad)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	if !strings.Contains(r.stdout, db.Server.Addr()+"/"+db.Name+": 0 active shards") {
		t.Errorf("reachable node not listed:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "node 127.0.0.1:1/nowhere: cannot connect:") || !strings.Contains(r.stderr, "connection refused") {
		t.Errorf("error does not name node and cause:\n%s", r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, "hunter2") {
		t.Errorf("password printed:\n%s%s", r.stdout, r.stderr)
	}
}

func TestListWithoutLibrary(t *testing.T) {
	db := pgtest.Database(t)
	r := pgms(t, "", "list", "--dsn", db.DSN)
	if r.code != 1 || !strings.Contains(r.stderr, `library is not installed in schema "microsharding"; run pgms install`) {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestInstallWrongDSN(t *testing.T) {
	r := pgms(t, "", "install", "--dsn", "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2")
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if r.code != 1 || !strings.HasPrefix(lines[0], "pgms: node 127.0.0.1:1/db: cannot connect: ") || strings.Contains(r.stderr, "secret") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	r = pgms(t, "", "install", "--dsn", "postgres://u:secret@127.0.0.1:notaport/db")
	if r.code != 1 || !strings.Contains(r.stderr, "invalid DSN") || strings.Contains(r.stderr, "secret") {
		t.Errorf("malformed DSN: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestInstallFromTopology(t *testing.T) {
	dbs := freshCluster(t)
	dir := t.TempDir()
	writeTopology(t, dir, "t.pgms.hcl", `cluster {
  schema_prefix  = "part_"
  schema_digits  = 3
  library_schema = "sharding lib"
}
node "a" { dsn = env("PGMS_DSN_A") }
node "b" { dsn = env("PGMS_DSN_B") }
`)
	r := pgms(t, "", "install", "--config", dir).must(t)
	if strings.Count(r.stdout, `in schema sharding lib`) != 2 {
		t.Fatalf("install output:\n%s", r.stdout)
	}
	if got := count1(t, dbs[1].DSN, `SELECT "sharding lib".microsharding_schema_name_(7)`); got != "part_007" {
		t.Errorf("naming on b: %s", got)
	}
	// list finds the shards by that naming.
	pgtest.Exec(t, pgtest.Connect(t, dbs[1].DSN), `SELECT "sharding lib".microsharding_ensure_exist(7); SELECT "sharding lib".microsharding_ensure_active(7)`)
	r = pgms(t, "", "list", "--dsn", dbs[1].DSN, "--schema", "sharding lib", "--schema-prefix", "part_", "--schema-digits", "3").must(t)
	if !strings.Contains(r.stdout, "part_007") || !strings.Contains(r.stdout, ": 1 active shard,") {
		t.Errorf("list with the naming:\n%s", r.stdout)
	}
}
