package sql

import (
	"context"
	_ "embed"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgtest"
)

// The library as pgms installed it at version 2, kept to test upgrades from
// it.
//
//go:embed testdata/library_v2.sql
var libraryV2 string

// installScript installs an older library script the way Install does:
// the script with search_path set to the schema, then a re-bake of the list.
func installScript(t *testing.T, conn *pgx.Conn, script string) {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	for _, q := range []string{
		"CREATE SCHEMA IF NOT EXISTS microsharding",
		"SELECT set_config('search_path', 'microsharding', true)",
		script,
		"SELECT microsharding_ensure_active_shards_()",
	} {
		if _, err := tx.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatalf("install old library: %v", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// appSession is an application's connection that keeps asking for the list
// in the ways applications do: a prepared statement (planned once, its plan
// cached), the simple query protocol (planned on every call) and from a
// PL/pgSQL function of its own (whose plan PL/pgSQL caches).
type appSession struct {
	conn *pgx.Conn
}

func newAppSession(t *testing.T, dsn string) *appSession {
	t.Helper()
	conn := pgtest.Connect(t, dsn)
	ctx := context.Background()
	if _, err := conn.Prepare(ctx, "list_active", "SELECT microsharding.microsharding_list_active_shards()"); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, conn, `
		CREATE OR REPLACE FUNCTION public.app_list_active() RETURNS text LANGUAGE plpgsql AS $$
		BEGIN
		  RETURN microsharding.microsharding_list_active_shards()::text;
		END;
		$$`)
	return &appSession{conn: conn}
}

// expect checks every way of asking, several times, so that each one has
// reached its cached plan.
func (a *appSession) expect(t *testing.T, step, want string) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		var prepared, simple, plpgsql string
		if err := a.conn.QueryRow(ctx, "list_active").Scan(&prepared); err != nil {
			t.Fatalf("%s: prepared: %v", step, err)
		}
		if err := a.conn.QueryRow(ctx, "SELECT microsharding.microsharding_list_active_shards()", pgx.QueryExecModeSimpleProtocol).Scan(&simple); err != nil {
			t.Fatalf("%s: simple protocol: %v", step, err)
		}
		if err := a.conn.QueryRow(ctx, "SELECT public.app_list_active()").Scan(&plpgsql); err != nil {
			t.Fatalf("%s: from PL/pgSQL: %v", step, err)
		}
		if prepared != want || simple != want || plpgsql != want {
			t.Fatalf("%s: another session sees prepared %s, simple %s, from PL/pgSQL %s; want %s", step, prepared, simple, plpgsql, want)
		}
	}
}

// The list is computed when its plan is made and then served from the plan:
// every change that matters must reach sessions that already hold a plan.
func TestListActiveShardsFollowsChangesFromOtherSessions(t *testing.T) {
	admin := installed(t)
	ctx := context.Background()
	strs(t, admin, "SELECT microsharding_ensure_exist(0, 5)")
	strs(t, admin, "SELECT microsharding_ensure_active(1, 3)")
	app := newAppSession(t, admin.Config().ConnString())
	app.expect(t, "start", "{sh0001,sh0002,sh0003}")

	strs(t, admin, "SELECT microsharding_ensure_active(4)")
	app.expect(t, "after activation", "{sh0001,sh0002,sh0003,sh0004}")
	strs(t, admin, "SELECT microsharding_ensure_inactive(2)")
	app.expect(t, "after deactivation", "{sh0001,sh0003,sh0004}")

	// Behind the library's back: the plan holding sh0003's OID must not
	// survive, or the OID would print as a number.
	pgtest.Exec(t, admin, "DROP SCHEMA sh0003")
	app.expect(t, "after DROP SCHEMA of an active shard", "{sh0001,sh0004}")
	// The list holds names, as pg-microsharding's does: a schema of that
	// name made again (a restore, say) is active again, with its new OID.
	pgtest.Exec(t, admin, "CREATE SCHEMA sh0003")
	app.expect(t, "after CREATE SCHEMA of a listed name", "{sh0001,sh0003,sh0004}")
	pgtest.Exec(t, admin, "ALTER SCHEMA sh0004 RENAME TO sh0004old")
	app.expect(t, "after renaming an active shard", "{sh0001,sh0003}")

	// Uncommitted changes are not seen elsewhere, are seen by their own
	// session, and are forgotten by it after a rollback.
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"DROP SCHEMA sh0001", "SELECT microsharding_ensure_active(5)"} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var inside string
	if err := tx.QueryRow(ctx, "SELECT microsharding_list_active_shards()::text").Scan(&inside); err != nil {
		t.Fatal(err)
	}
	if inside != "{sh0003,sh0005}" {
		t.Errorf("inside the changing transaction: %s, want {sh0003,sh0005}", inside)
	}
	app.expect(t, "while another session's change is uncommitted", "{sh0001,sh0003}")
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := one(t, admin, "SELECT microsharding_list_active_shards()::text"); got != "{sh0001,sh0003}" {
		t.Errorf("after rollback, the rolling-back session sees %s", got)
	}
	app.expect(t, "after another session's rollback", "{sh0001,sh0003}")

	// Switching search_path between calls (to a shard, say) changes nothing.
	for _, path := range []string{"sh0001", "sh0003, public", "public"} {
		pgtest.Exec(t, app.conn, "SET search_path = "+path)
		app.expect(t, "search_path "+path, "{sh0001,sh0003}")
	}

	// The application's own session changes the list.
	pgtest.Exec(t, app.conn, "SELECT microsharding.microsharding_ensure_active(0)")
	app.expect(t, "after activation in the same session", "{sh0000,sh0001,sh0003}")
	pgtest.Exec(t, app.conn, "SELECT microsharding.microsharding_ensure_absent(0)")
	app.expect(t, "after ensure_absent in the same session", "{sh0001,sh0003}")
}

// The point of the design: the catalog is read when the plan is made, not
// on every call. track_functions counts the calls of the function that
// reads pg_namespace, which the planner makes when it folds it.
func TestListActiveShardsReadsTheCatalogOnlyWhenReplanned(t *testing.T) {
	admin := installed(t)
	strs(t, admin, "SELECT microsharding_ensure_exist(1, 3)")
	strs(t, admin, "SELECT microsharding_ensure_active(1, 3)")
	ctx := context.Background()
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // the test changes nothing it keeps
	calls := func(step string, list, reads int) {
		t.Helper()
		if _, err := tx.Exec(ctx, `DO $$ BEGIN
			FOR i IN 1..100 LOOP PERFORM microsharding_list_active_shards(); END LOOP;
		END $$`); err != nil {
			t.Fatal(err)
		}
		var gotList, gotReads int
		err := tx.QueryRow(ctx, `
			SELECT COALESCE(sum(calls) FILTER (WHERE funcname = 'microsharding_list_active_shards'), 0),
			       COALESCE(sum(calls) FILTER (WHERE funcname = 'microsharding_existing_shards_'), 0)
			FROM pg_stat_xact_user_functions WHERE schemaname = 'microsharding'`).Scan(&gotList, &gotReads)
		if err != nil {
			t.Fatal(err)
		}
		if gotList != list || gotReads != reads {
			t.Errorf("%s: %d calls read the catalog %d times; want %d and %d", step, gotList, gotReads, list, reads)
		}
	}
	if _, err := tx.Exec(ctx, "SET LOCAL track_functions = 'all'"); err != nil {
		t.Fatal(err)
	}
	calls("first 100 calls", 100, 1)
	calls("next 100 calls", 200, 1)
	if _, err := tx.Exec(ctx, "CREATE TABLE public.unrelated (id int)"); err != nil {
		t.Fatal(err)
	}
	calls("after CREATE TABLE", 300, 1)
	if _, err := tx.Exec(ctx, "CREATE SCHEMA unrelated"); err != nil {
		t.Fatal(err)
	}
	calls("after CREATE SCHEMA", 400, 2)
	if _, err := tx.Exec(ctx, "SELECT microsharding_ensure_inactive(2)"); err != nil {
		t.Fatal(err)
	}
	calls("after a change of the list", 500, 3)
}

// Whatever the baked list holds (an install by pg-microsharding keeps it
// unsorted and may name missing schemas), the answer is sorted, unique and
// only lists schemas that exist.
func TestListActiveShardsSortsAndFilters(t *testing.T) {
	conn := installed(t)
	strs(t, conn, "SELECT microsharding_ensure_exist(1, 3)")
	pgtest.Exec(t, conn, `CREATE SCHEMA "Odd Shard"`)
	pgtest.Exec(t, conn, `
		CREATE OR REPLACE FUNCTION microsharding.microsharding_active_shards_() RETURNS text[]
		  LANGUAGE sql IMMUTABLE AS $$ SELECT '{sh0003,sh0001,nosuch,sh0003,"Odd Shard"}'::text[] $$`)
	if got := one(t, conn, "SELECT microsharding_list_active_shards()::text"); got != `{"\"Odd Shard\"",sh0001,sh0003}` {
		t.Errorf("list = %s", got)
	}
	if got := one(t, conn, "SELECT array_agg(s::oid = to_regnamespace('sh0001')::oid)::text FROM unnest(microsharding_list_active_shards()) s WHERE s::text = 'sh0001'"); got != "{t}" {
		t.Errorf("sh0001 does not resolve to its schema: %s", got)
	}
}

// Upgrading from version 2 keeps the list, and sessions that prepared the
// old function go on working with the new one.
func TestUpgradeFromVersion2(t *testing.T) {
	db := pgtest.Database(t)
	conn := pgtest.Connect(t, db.DSN)
	ctx := context.Background()
	installScript(t, conn, libraryV2)
	if v, err := InstalledVersion(ctx, conn, DefaultSchema); err != nil || v != 2 {
		t.Fatalf("InstalledVersion = %d, %v; want 2", v, err)
	}
	pgtest.Exec(t, conn, "SET search_path = microsharding")
	strs(t, conn, "SELECT microsharding_ensure_exist(0, 4)")
	strs(t, conn, "SELECT microsharding_ensure_active(0, 2)")
	app := newAppSession(t, db.DSN)
	app.expect(t, "version 2", "{sh0000,sh0001,sh0002}")

	res, err := Install(ctx, conn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.FromVersion != 2 || res.ToVersion != Version || res.Fresh {
		t.Errorf("upgrade result %+v", res)
	}
	app.expect(t, "upgraded", "{sh0000,sh0001,sh0002}")
	strs(t, conn, "SELECT microsharding_ensure_active(3)")
	app.expect(t, "activation after the upgrade", "{sh0000,sh0001,sh0002,sh0003}")
	pgtest.Exec(t, conn, "DROP SCHEMA sh0001")
	app.expect(t, "DROP SCHEMA after the upgrade", "{sh0000,sh0002,sh0003}")
	if res, err := Install(ctx, conn, Options{}); err != nil || res.Changed() {
		t.Errorf("re-install: %+v, %v", res, err)
	}
	app.expect(t, "re-installed", "{sh0000,sh0002,sh0003}")
}

// Nothing here needs a superuser (managed services give none): a role that
// may only create in its database installs the library and runs shards,
// and another role, allowed only to use the library, is never shown a
// dropped shard.
func TestListActiveShardsWithoutSuperuser(t *testing.T) {
	db := pgtest.Database(t)
	super := pgtest.Connect(t, db.DSN)
	ctx := context.Background()
	owner, app := db.Name+"_owner", db.Name+"_app"
	for _, role := range []string{owner, app} {
		pgtest.Exec(t, super, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()+" LOGIN NOSUPERUSER")
	}
	t.Cleanup(func() {
		// Before the database goes: roles owning objects cannot be dropped.
		for _, role := range []string{owner, app} {
			id := pgx.Identifier{role}.Sanitize()
			super.Exec(ctx, "DROP OWNED BY "+id)
			super.Exec(ctx, "DROP ROLE "+id)
		}
	})
	pgtest.Exec(t, super, "GRANT CREATE ON DATABASE "+pgx.Identifier{db.Name}.Sanitize()+" TO "+pgx.Identifier{owner}.Sanitize())
	connectAs := func(role string) *pgx.Conn {
		cfg, err := pgx.ParseConfig(db.DSN)
		if err != nil {
			t.Fatal(err)
		}
		cfg.User = role
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		return conn
	}
	ownerConn := connectAs(owner)
	if _, err := Install(ctx, ownerConn, Options{}); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, ownerConn, "SET search_path = microsharding")
	strs(t, ownerConn, "SELECT microsharding_ensure_exist(1, 3)")
	strs(t, ownerConn, "SELECT microsharding_ensure_active(1, 3)")
	pgtest.Exec(t, ownerConn, "GRANT USAGE ON SCHEMA microsharding TO "+pgx.Identifier{app}.Sanitize())

	appConn := connectAs(app)
	if _, err := appConn.Prepare(ctx, "list_active", "SELECT microsharding.microsharding_list_active_shards()::text"); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		var s string
		if err := appConn.QueryRow(ctx, "list_active").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got := read(); got != "{sh0001,sh0002,sh0003}" {
		t.Fatalf("list as an unprivileged role: %s", got)
	}
	pgtest.Exec(t, ownerConn, "DROP SCHEMA sh0002")
	if got := read(); got != "{sh0001,sh0003}" {
		t.Errorf("after DROP SCHEMA: %s", got)
	}
	strs(t, ownerConn, "SELECT microsharding_ensure_inactive(3)")
	if got := read(); got != "{sh0001}" {
		t.Errorf("after deactivation: %s", got)
	}
}
