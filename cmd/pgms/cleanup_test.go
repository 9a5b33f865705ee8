package main

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

func has(t *testing.T, conn *pgx.Conn, catalog, column, name string) bool {
	t.Helper()
	var ok bool
	if err := conn.QueryRow(t.Context(), fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s WHERE %s = $1)", catalog, column), name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// terminal makes the command treat its input as a terminal for one test.
func terminal(t *testing.T) {
	old := stdinIsTerminal
	stdinIsTerminal = func(io.Reader) bool { return true }
	t.Cleanup(func() { stdinIsTerminal = old })
}

func TestCleanupCommand(t *testing.T) {
	dbs := pgtest.Databases(t, 2)
	pgms(t, "", "install", "--dsn", dbs[0].DSN, "--dsn", dbs[1].DSN).must(t)
	a, b := pgtest.Connect(t, dbs[0].DSN), pgtest.Connect(t, dbs[1].DSN)
	recent := names.OldSchema("sh0002", time.Now().Add(-time.Hour))
	pgtest.Exec(t, a, `
		SELECT microsharding.microsharding_ensure_exist(1, 4);
		CREATE SCHEMA sh0001old20200101000000;
		CREATE TABLE sh0001old20200101000000.t (id int PRIMARY KEY, pad text);
		INSERT INTO sh0001old20200101000000.t SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g;
		CREATE SCHEMA `+recent+`;
		CREATE SCHEMA sh0001older;
		CREATE SCHEMA renew;
		CREATE PUBLICATION pg_microsharding_move_sh0004_pub;
		CREATE PUBLICATION my_pub;`)
	pgtest.Exec(t, a, "SELECT pg_create_logical_replication_slot('pg_microsharding_move_sh0004_sub', 'pgoutput')")
	pgtest.Exec(t, a, "SELECT pg_create_logical_replication_slot('my_slot', 'pgoutput')")
	pgtest.Exec(t, a, "CREATE TABLE public.filler AS SELECT g, repeat('y', 200) AS pad FROM generate_series(1, 10000) g")
	pgtest.Exec(t, b, fmt.Sprintf(`SELECT microsharding.microsharding_ensure_exist(3);
		CREATE SCHEMA sh0003new;
		CREATE SUBSCRIPTION pgms_move_sh0003 CONNECTION '%s' PUBLICATION pgms_move_sh0003 WITH (connect = false, slot_name = NONE)`, dbs[0].DSN))
	addrA, addrB := dbs[0].Server.Addr()+"/"+dbs[0].Name, dbs[1].Server.Addr()+"/"+dbs[1].Name
	args := []string{"cleanup", "--dsn", dbs[0].DSN, "--dsn", dbs[1].DSN}

	leftovers := func() []string {
		var out []string
		for _, x := range []struct {
			conn                  *pgx.Conn
			catalog, column, name string
		}{
			{a, "pg_namespace", "nspname", "sh0001old20200101000000"},
			{a, "pg_replication_slots", "slot_name", "pg_microsharding_move_sh0004_sub"},
			{a, "pg_publication", "pubname", "pg_microsharding_move_sh0004_pub"},
			{b, "pg_namespace", "nspname", "sh0003new"},
			{b, "pg_subscription", "subname", "pgms_move_sh0003"},
		} {
			if has(t, x.conn, x.catalog, x.column, x.name) {
				out = append(out, x.name)
			}
		}
		return out
	}

	r := pgms(t, "", append(args, "--dry-run")...).must(t)
	for _, want := range []string{
		"Cleanup of 2 nodes; renamed move sources are kept for 168h.\n",
		addrA + ": 3 to drop\n",
		"  - slot pg_microsharding_move_sh0004_sub  ",
		" WAL  orphaned: no subscription uses it\n",
		"  - schema sh0001old20200101000000  ",
		"    kept: schema " + recent,
		"renamed 1h ago; kept until ",
		addrB + ": 2 to drop\n",
		"  - subscription pgms_move_sh0003",
		"disabled: no move runs with a disabled subscription",
		"  - schema sh0003new ",
		"5 objects to drop on 2 nodes: ",
		" of tables, ",
		" of WAL retained by slots.\n",
		"Dry run: nothing dropped.\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, r.stdout)
		}
	}
	if len(leftovers()) != 5 {
		t.Fatalf("dry run dropped: %v left", leftovers())
	}

	// Not a terminal and no --yes: refused, nothing dropped.
	r = pgms(t, "yes\n", args...)
	if r.code != 1 || !strings.Contains(r.stderr, "standard input is not a terminal; pass --auto-approve") || len(leftovers()) != 5 {
		t.Errorf("non-interactive without --yes: exit %d\n%s", r.code, r.stderr)
	}

	terminal(t)
	r = pgms(t, "", args...)
	if r.code != 1 || !strings.Contains(r.stderr, "standard input ended without an answer; pass --auto-approve") || len(leftovers()) != 5 {
		t.Errorf("no answer: exit %d\n%s", r.code, r.stderr)
	}
	r = pgms(t, "no\n", args...)
	if r.code != 0 || !strings.HasSuffix(r.stdout, "Drop these objects? Only 'yes' is accepted: Nothing dropped.\n") || len(leftovers()) != 5 {
		t.Errorf("declined: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = pgms(t, "yes\n", args...).must(t)
	for _, want := range []string{
		addrB + ": dropped subscription pgms_move_sh0003\n",
		addrA + ": dropped slot pg_microsharding_move_sh0004_sub (it retained ",
		addrA + ": dropped publication pg_microsharding_move_sh0004_pub\n",
		addrA + ": dropped schema sh0001old20200101000000 (",
		addrB + ": dropped schema sh0003new (",
		"Dropped 5 of 5 objects; the slots dropped had retained ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("cleanup output lacks %q:\n%s", want, r.stdout)
		}
	}
	if left := leftovers(); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
	for _, s := range []string{recent, "sh0001older", "renew", "sh0001"} {
		if !has(t, a, "pg_namespace", "nspname", s) {
			t.Errorf("schema %s dropped", s)
		}
	}
	if !has(t, a, "pg_replication_slots", "slot_name", "my_slot") || !has(t, a, "pg_publication", "pubname", "my_pub") {
		t.Error("user replication objects dropped")
	}

	r = pgms(t, "", append(args, "--yes")...).must(t)
	if !strings.HasSuffix(r.stdout, "Nothing to clean up.\n") {
		t.Errorf("second run:\n%s", r.stdout)
	}
	// A retention of zero lets the recent renamed source go.
	r = pgms(t, "", append(args, "--yes", "--retain=0s")...).must(t)
	if !strings.Contains(r.stdout, "dropped schema "+recent) || has(t, a, "pg_namespace", "nspname", recent) {
		t.Errorf("--retain=0s:\n%s", r.stdout)
	}
}

func TestCleanupCommandUnreachableNode(t *testing.T) {
	db := pgtest.Database(t)
	pgms(t, "", "install", "--dsn", db.DSN).must(t)
	conn := pgtest.Connect(t, db.DSN)
	pgtest.Exec(t, conn, "CREATE SCHEMA sh0001new")
	pgtest.Exec(t, conn, "SELECT pg_create_logical_replication_slot('pgms_move_sh0001', 'pgoutput')")
	bad := "postgres://app:hunter2@127.0.0.1:1/nowhere?connect_timeout=2"
	r := pgms(t, "", "cleanup", "--dsn", db.DSN, "--dsn", bad, "--yes")
	if r.code != 1 || strings.Contains(r.stdout+r.stderr, "hunter2") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"node 127.0.0.1:1/nowhere could not be read and may use it",
		"dropped schema sh0001new",
		"Dropped 1 of 1 objects.",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "node 127.0.0.1:1/nowhere: cannot connect") || !strings.Contains(r.stderr, "1 of 2 nodes could not be read") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if !has(t, conn, "pg_replication_slots", "slot_name", "pgms_move_sh0001") {
		t.Error("slot dropped although a node that may use it could not be read")
	}
}
