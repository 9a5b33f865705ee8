package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgtest"
)

// TestApplyAsUsed runs the declarative workflow (install, allocation with
// a migration, activation, moves, cleanup of the moved shards' old
// schemas) as PostgreSQL is run in production: every node requires TLS,
// verified against a CA made for the test (sslmode=verify-full), and a
// SCRAM password for every role but the harness's superuser; pgms connects
// as a role with exactly the grants of examples/least-privilege/grants.sql,
// a superuser nowhere, except before PostgreSQL 16 on the node receiving
// the shards, where only superusers create subscriptions. The password
// must show nowhere: not in any command's output, the plan in any format
// or its file, the status, the journal, the registry or the servers' logs.
func TestApplyAsUsed(t *testing.T) {
	ca := pgtest.NewTLS(t)
	servers := pgtest.StartServers(t, 3, ca.ServerOptions(t, pgtest.Options{
		Settings: map[string]string{"password_encryption": "scram-sha-256", "log_statement": "ddl"},
		HBA:      append(append([]string(nil), pgtest.SuperuserTrustRules...), "hostssl all all 127.0.0.1/32 scram-sha-256"),
	}))
	major := servers[0].Version
	dbs := pgtest.DatabasesOn(t, servers)
	const pw = "Apply-S3cret-pw"
	root, err := servers[0].WriteFile("root.crt", ca.CA)
	if err != nil {
		t.Fatal(err)
	}
	grants, err := os.ReadFile("../../examples/least-privilege/grants.sql")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admins := make([]*pgx.Conn, 3)
	dsns := make([]string, 3)
	for i, db := range dbs {
		admins[i] = pgtest.Connect(t, db.Server.DSN(db.Name))
		pgtest.Exec(t, admins[i], "SET log_statement = 'none'") // the test's own CREATE ROLE holds the password
		pgtest.Exec(t, admins[i], "CREATE ROLE pgms LOGIN PASSWORD '"+pw+"'")
		pgtest.Exec(t, admins[i], "RESET log_statement")
		pgtest.Exec(t, admins[i], string(grants))
		if i == 2 && major < 16 {
			pgtest.Exec(t, admins[i], "ALTER ROLE pgms SUPERUSER")
		}
		u := url.URL{Scheme: "postgres", User: url.UserPassword("pgms", pw), Host: db.Server.Addr(), Path: "/" + db.Name,
			RawQuery: "sslmode=verify-full&sslrootcert=" + url.QueryEscape(root)}
		dsns[i] = u.String()
		t.Setenv("PGMS_DSN_"+string(rune('A'+i)), dsns[i])
	}

	dir := t.TempDir()
	topology := func(shards string) string {
		return fmt.Sprintf(`cluster {
  migrate_command = [%q]
  cleanup_after   = "0s"
}
node "a" { dsn = env("PGMS_DSN_A") }
node "b" { dsn = env("PGMS_DSN_B") }
node "c" { dsn = env("PGMS_DSN_C") }
%s`, migrateScript(t), shards)
	}
	var printed strings.Builder
	run := func(args ...string) result {
		t.Helper()
		r := pgms(t, "", args...)
		printed.WriteString(r.stdout + r.stderr)
		return r
	}

	// Install, allocate with the migration, activate.
	writeTopology(t, dir, "topology.pgms.hcl", topology("shards \"1-4\" { node = \"a\" }\nshards \"5-6\" { node = \"b\" }\n"))
	run("apply", "--config", dir, "--auto-approve").must(t)
	app := pgtest.Connect(t, dsns[0])
	pgtest.Exec(t, app, "INSERT INTO sh0001.users (name, email) SELECT 'u' || g, g || '@x' FROM generate_series(1, 300) g")

	// Grants missing for a move and an allocation stop the apply before
	// its first step, each named with its node and the statement that
	// grants it, and nothing changes.
	moves := "shards \"1-2\" { node = \"c\" }\nshards \"3-4\" { node = \"a\" }\nshards \"5\" { node = \"c\" }\nshards \"6\" { node = \"b\" }\n"
	writeTopology(t, dir, "topology.pgms.hcl", topology(moves+"shards \"7\" { node = \"b\" }\n"))
	pgtest.Exec(t, admins[0], "ALTER ROLE pgms NOREPLICATION")
	pgtest.Exec(t, admins[1], "REVOKE CREATE ON DATABASE "+pgx.Identifier{dbs[1].Name}.Sanitize()+" FROM pgms")
	r := run("apply", "--config", dir, "--auto-approve")
	for _, want := range []string{
		"checked before the first step", "nothing was changed",
		`node a (PostgreSQL`, `role "pgms" lacks what the move's source (moving sh0001 from a to c) needs: the REPLICATION attribute`, `ALTER ROLE "pgms" REPLICATION`,
		`node b (PostgreSQL`, `lacks what allocating shard 7 needs: CREATE on the database`, "GRANT CREATE ON DATABASE",
	} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("apply without the grants: exit %d, want %q in\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "sh0002 from a to c") {
		t.Errorf("the missing REPLICATION is named once per node:\n%s", r.stderr)
	}
	t.Logf("apply without the grants:\n%s", r.stderr)
	// With the allocation's grant back, the allocation could run, yet the
	// move that would fail after it keeps it from running.
	pgtest.Exec(t, admins[1], "GRANT CREATE ON DATABASE "+pgx.Identifier{dbs[1].Name}.Sanitize()+" TO pgms")
	if r := run("apply", "--config", dir, "--auto-approve"); r.code != 1 || !strings.Contains(r.stderr, "the REPLICATION attribute") {
		t.Errorf("apply without REPLICATION on a: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var allocated bool
	if err := admins[1].QueryRow(ctx, "SELECT to_regnamespace('sh0007') IS NOT NULL").Scan(&allocated); err != nil || allocated {
		t.Errorf("shard 7 allocated on b (%v) by an apply that lacked grants", err)
	}
	pgtest.Exec(t, admins[0], "ALTER ROLE pgms REPLICATION")

	// Moves into c, from a saved plan.
	writeTopology(t, dir, "topology.pgms.hcl", topology(moves))
	run("plan", "--config", dir, "--format", "json").must(t)
	run("plan", "--config", dir, "--format", "markdown").must(t)
	planFile := filepath.Join(dir, "moves.plan")
	run("plan", "--config", dir, "--out", planFile).must(t)
	run("show", planFile).must(t)
	r = run("apply", planFile, "--auto-approve").must(t)
	if strings.Count(r.stdout, ": write pause") != 3 {
		t.Errorf("apply of the moves:\n%s", r.stdout)
	}

	// The old schemas go (cleanup_after 0s); then nothing is left to do.
	r = run("plan", "--config", dir).must(t)
	if !strings.Contains(r.stdout, "PGMS-D01") {
		t.Errorf("no cleanup of the moved shards' old schemas planned:\n%s", r.stdout)
	}
	run("apply", "--config", dir, "--auto-approve").must(t)
	if r := run("plan", "--config", dir, "--detailed-exitcode"); r.code != 0 {
		t.Errorf("not converged: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	run("status", "--config", dir).must(t)
	run("status", "--config", dir, "--format", "json").must(t)
	run("list", "--dsn", dsns[0], "--dsn", dsns[1], "--dsn", dsns[2], "--format", "json").must(t)

	for i, want := range []string{"{sh0003,sh0004}", "{sh0006}", "{sh0001,sh0002,sh0005}"} {
		var got string
		if err := admins[i].QueryRow(ctx, "SELECT microsharding.microsharding_list_active_shards()::text").Scan(&got); err != nil || got != want {
			t.Errorf("active on node %d: %s (%v), want %s", i, got, err, want)
		}
		var old int
		if err := admins[i].QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname ~ '^sh[0-9]+old'").Scan(&old); err != nil || old != 0 {
			t.Errorf("node %d keeps %d old schemas (%v)", i, old, err)
		}
		var super bool
		admins[i].QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = 'pgms'").Scan(&super)
		if super != (i == 2 && major < 16) {
			t.Errorf("node %d: pgms superuser = %v", i, super)
		}
	}
	var users int
	if err := admins[2].QueryRow(ctx, "SELECT count(*) FROM sh0001.users").Scan(&users); err != nil || users != 300 {
		t.Errorf("sh0001.users on c: %d rows (%v)", users, err)
	}

	// Where the password must not be.
	secret := regexp.MustCompile(regexp.QuoteMeta(pw))
	if secret.MatchString(printed.String()) {
		t.Errorf("a command printed the password")
	}
	if data, err := os.ReadFile(planFile); err != nil || secret.Match(data) {
		t.Errorf("the plan file holds the password (%v)", err)
	}
	for i, a := range admins {
		for _, table := range []string{"pgms_runs", "pgms_steps", "pgms_lock", "pgms_nodes", "pgms_node", "pgms_claims"} {
			var text *string
			var missing bool
			if err := a.QueryRow(ctx, "SELECT to_regclass($1) IS NULL", "microsharding."+table).Scan(&missing); err != nil || missing {
				continue
			}
			q := "SELECT string_agg(x::text, E'\\n') FROM microsharding." + table + " x"
			if err := a.QueryRow(ctx, q).Scan(&text); err != nil {
				t.Fatalf("node %d: read %s: %v", i, table, err)
			}
			if text != nil && secret.MatchString(*text) {
				t.Errorf("node %d: %s holds the password", i, table)
			}
		}
		if secret.MatchString(servers[i].Log()) {
			t.Errorf("the log of node %d holds the password", i)
		}
	}
}
