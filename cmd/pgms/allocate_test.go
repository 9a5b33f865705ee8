package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/internal/pgbin"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

// psqlScript writes a migrate script that creates a table in every schema
// of the range with psql, and returns its path.
func psqlScript(t *testing.T) string {
	t.Helper()
	psql, err := pgbin.Find("psql", 0)
	if err != nil {
		t.Skip(err)
	}
	path := filepath.Join(t.TempDir(), "migrate.sh")
	body := `#!/bin/sh
set -e
for s in $(echo "$PGMS_SCHEMAS" | tr , ' '); do
  ` + psql.Path + ` -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS \"$s\".users (id bigint PRIMARY KEY)"
done
echo "migrated $PGMS_SHARD_FROM-$PGMS_SHARD_TO"
`
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAllocateCommand(t *testing.T) {
	dbs := pgtest.Databases(t, 2)
	a, b := dbs[0], dbs[1]
	pgms(t, "", "install", "--dsn", a.DSN, "--dsn", b.DSN).must(t)
	addr := a.Server.Addr() + "/" + a.Name
	migrate := psqlScript(t)

	r := pgms(t, "", "allocate", "--shards=5-8", "--dsn", a.DSN, "--migrate-cmd", migrate).must(t)
	for _, want := range []string{
		addr + ": running the migrate command for shards 5-8: " + migrate + "\n",
		"[migrate " + addr + "] migrated 5-8\n",
		addr + ": created sh0005, sh0006, sh0007, sh0008\n",
		addr + ": migrate command succeeded in ",
		addr + ": activated sh0005, sh0006, sh0007, sh0008\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("allocate output lacks %q:\n%s", want, r.stdout)
		}
	}
	conn := pgtest.Connect(t, a.DSN)
	var tables int
	conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_tables WHERE tablename = 'users'").Scan(&tables)
	if tables != 4 {
		t.Errorf("%d tables made by the migrate command, want 4", tables)
	}

	// Again, with the command from MIGRATE_CMD: converges.
	t.Setenv("MIGRATE_CMD", migrate)
	r = pgms(t, "", "allocate", "--shards=5-8", "--dsn", a.DSN).must(t)
	if !strings.Contains(r.stdout, "shards 5-8 exist already") || !strings.Contains(r.stdout, "shards 5-8 were active already") {
		t.Errorf("re-run output:\n%s", r.stdout)
	}

	// A failing command leaves the new shards inactive and says so.
	r = pgms(t, "", "allocate", "--shards=9-10", "--dsn", a.DSN, "--migrate-cmd", "echo broken >&2; exit 3")
	wantErr := "pgms: migrate command failed (exit 3) for shards 9-10 on node " + addr +
		"; the shards exist and stay inactive; fix the migration and run again\n"
	if r.code != 1 || !strings.HasSuffix(r.stderr, wantErr) || !strings.Contains(r.stderr, "[migrate "+addr+"] broken") {
		t.Errorf("failing command: exit %d\nstderr:\n%s\nwant suffix %q", r.code, r.stderr, wantErr)
	}
	if !strings.Contains(r.stdout, addr+": created sh0009, sh0010") {
		t.Errorf("failing command stdout:\n%s", r.stdout)
	}
	r = pgms(t, "", "allocate", "--shard=11", "--dsn", a.DSN, "--activate=no", "--migrate-cmd", "true").must(t)
	if !strings.Contains(r.stdout, "not activated (--activate=no); new shards stay inactive") {
		t.Errorf("--activate=no output:\n%s", r.stdout)
	}
	var active []string
	conn.QueryRow(t.Context(), "SELECT microsharding.microsharding_list_active_shards()::text[]").Scan(&active)
	if strings.Join(active, ",") != "sh0005,sh0006,sh0007,sh0008" {
		t.Errorf("active: %v", active)
	}

	// With the cluster listed in PGDSNS, b may not activate a's shard.
	t.Setenv("PGDSNS", a.DSN+","+b.DSN)
	r = pgms(t, "", "allocate", "--shard=5", "--dsn", b.DSN, "--migrate-cmd", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "refusing to activate: sh0005 is active on node "+addr) || r.stdout != "" {
		t.Errorf("double activation: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = pgms(t, "", "allocate", "--shard=5")
	if r.code != 1 || !strings.Contains(r.stderr, "allocate acts on one node and PGDSNS lists 2; pass --dsn to choose one") {
		t.Errorf("no --dsn with PGDSNS: exit %d\n%s", r.code, r.stderr)
	}
}

func TestAllocateCommandBadInput(t *testing.T) {
	db := pgtest.Database(t)
	tests := []struct {
		args []string
		err  string
	}{
		{[]string{"allocate", "--dsn", db.DSN}, "pass --shards=N-M (or --shard=N)"},
		{[]string{"allocate", "--shards=8-5", "--dsn", db.DSN}, `--shards=8-5: the range "8-5" is reversed`},
		{[]string{"allocate", "--shards=x", "--dsn", db.DSN}, `--shards=x: "x" is not a shard number or range`},
		{[]string{"allocate", "--shard=1-2", "--dsn", db.DSN}, "--shard=1-2: one shard number expected"},
		{[]string{"allocate", "--shards=1", "--shard=1", "--dsn", db.DSN}, "pass --shards or --shard, not both"},
		{[]string{"allocate", "--shards=1", "--activate=maybe", "--dsn", db.DSN}, "--activate=maybe: use yes or no"},
		{[]string{"allocate", "--shards=1", "--dsn", db.DSN, "--dsn", db.DSN}, "allocate acts on one node and --dsn was given 2 times"},
		{[]string{"allocate", "--shards=1", "--dsn", db.DSN}, `the microsharding library is missing or incomplete in schema "microsharding" (run pgms install)`},
		{[]string{"activate", "--shards=1", "--dsn", db.DSN}, "run pgms install"},
	}
	for _, tt := range tests {
		r := pgms(t, "", tt.args...)
		if r.code != 1 || !strings.Contains(r.stderr, tt.err) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tt.args, r.code, r.stderr, tt.err)
		}
	}
}

func TestActivateCommands(t *testing.T) {
	dbs := pgtest.Databases(t, 2)
	a, b := dbs[0], dbs[1]
	pgms(t, "", "install", "--dsn", a.DSN, "--dsn", b.DSN).must(t)
	pgms(t, "", "allocate", "--shards=1-3", "--dsn", a.DSN, "--activate=no").must(t)
	pgms(t, "", "allocate", "--shards=3", "--dsn", b.DSN, "--activate=no").must(t)
	addr := a.Server.Addr() + "/" + a.Name

	steps := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"activate", "--shards=1-2", "--dsn", a.DSN}, 0, addr + ": activated sh0001, sh0002\n"},
		{[]string{"activate", "--shards=1-2", "--dsn", a.DSN}, 0, addr + ": shards 1-2 were active already\n"},
		{[]string{"activate", "--shards=4", "--dsn", a.DSN}, 1, "No such schema: sh0004"},
		{[]string{"deactivate", "--shard=2", "--dsn", a.DSN}, 0, addr + ": deactivated sh0002\n"},
		{[]string{"deactivate", "--shard=2", "--dsn", a.DSN}, 0, addr + ": shard 2 was not active\n"},
		{[]string{"activate", "--shard=3", "--dsn", a.DSN}, 0, addr + ": activated sh0003\n"},
	}
	for _, s := range steps {
		r := pgms(t, "", s.args...)
		if r.code != s.code || !strings.Contains(r.stdout+r.stderr, s.out) {
			t.Errorf("%v: exit %d\n%s%s\nwant %q", s.args, r.code, r.stdout, r.stderr, s.out)
		}
	}
	t.Setenv("PGMS_DSNS", a.DSN+","+b.DSN)
	r := pgms(t, "", "activate", "--shard=3", "--dsn", b.DSN)
	if r.code != 1 || !strings.Contains(r.stderr, "refusing to activate: sh0003 is active on node "+addr) {
		t.Errorf("double activation: exit %d\n%s", r.code, r.stderr)
	}
}
