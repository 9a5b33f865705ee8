package sql

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, 2)) }

// installed returns a connection to a fresh database with the library
// installed and search_path set to it.
func installed(t *testing.T) *pgx.Conn {
	t.Helper()
	conn := pgtest.Connect(t, pgtest.Database(t).DSN)
	if _, err := Install(context.Background(), conn, Options{}); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, conn, "SET search_path = microsharding, public")
	return conn
}

func strs(t *testing.T, conn *pgx.Conn, query string, args ...any) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var v any
		if err := r.Scan(&v); err != nil {
			return "", err
		}
		return fmt.Sprint(v), nil
	})
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out
}

func one(t *testing.T, conn *pgx.Conn, query string, args ...any) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), query, args...).Scan(&s); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

func pgErr(t *testing.T, conn *pgx.Conn, query string) *pgconn.PgError {
	t.Helper()
	_, err := conn.Exec(context.Background(), query)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("%s: want a database error, got %v", query, err)
	}
	return pe
}

func TestScriptVersionMatches(t *testing.T) {
	v, err := scriptVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v != Version {
		t.Fatalf("library.sql declares version %d, Version is %d", v, Version)
	}
}

func TestEnsureFunctions(t *testing.T) {
	conn := installed(t)
	if got := strs(t, conn, "SELECT s::text FROM microsharding_ensure_exist(0, 3) s"); !slices.Equal(got, []string{"sh0000", "sh0001", "sh0002", "sh0003"}) {
		t.Fatalf("ensure_exist(0,3) = %v", got)
	}
	// Only the newly created are returned; shard_to defaults to shard_from.
	if got := strs(t, conn, "SELECT s::text FROM microsharding_ensure_exist(2, 4) s"); !slices.Equal(got, []string{"sh0004"}) {
		t.Fatalf("ensure_exist(2,4) = %v", got)
	}
	if got := strs(t, conn, "SELECT s::text FROM microsharding_ensure_exist(4) s"); len(got) != 0 {
		t.Fatalf("ensure_exist(4) again = %v", got)
	}
	if got := one(t, conn, "SELECT microsharding_list_active_shards()::text"); got != "{}" {
		t.Fatalf("new shards must be inactive, list = %s", got)
	}
	if got := strs(t, conn, "SELECT s::text FROM microsharding_ensure_active(1, 3) s"); !slices.Equal(got, []string{"sh0001", "sh0002", "sh0003"}) {
		t.Fatalf("ensure_active = %v", got)
	}
	strs(t, conn, "SELECT microsharding_ensure_active(0)")
	if got := one(t, conn, "SELECT microsharding_list_active_shards()::text"); got != "{sh0000,sh0001,sh0002,sh0003}" {
		t.Fatalf("list = %s", got)
	}
	// ensure_inactive returns only those that were active.
	if got := strs(t, conn, "SELECT s::text FROM microsharding_ensure_inactive(3, 4) s"); !slices.Equal(got, []string{"sh0003"}) {
		t.Fatalf("ensure_inactive(3,4) = %v", got)
	}
	if got := one(t, conn, "SELECT microsharding_list_active_shards()::text"); got != "{sh0000,sh0001,sh0002}" {
		t.Fatalf("list after deactivation = %s", got)
	}
	// Activating a missing schema names it.
	e := pgErr(t, conn, "SELECT microsharding_ensure_active(7, 8)")
	if !strings.Contains(e.Message, "No such schema: sh0007, sh0008") {
		t.Errorf("ensure_active of missing: %s", e.Message)
	}
	// A schema dropped behind the library's back disappears from the list.
	pgtest.Exec(t, conn, "DROP SCHEMA sh0002")
	if got := one(t, conn, "SELECT microsharding_list_active_shards()::text"); got != "{sh0000,sh0001}" {
		t.Fatalf("list after external drop = %s", got)
	}
	// ensure_absent drops empty schemas and returns them.
	if got := strs(t, conn, "SELECT s FROM microsharding_ensure_absent(3, 4) s"); !slices.Equal(got, []string{"sh0003", "sh0004"}) {
		t.Fatalf("ensure_absent = %v", got)
	}
}

func TestActiveListIsBakedIntoAnImmutableFunction(t *testing.T) {
	conn := installed(t)
	strs(t, conn, "SELECT microsharding_ensure_exist(1, 3)")
	strs(t, conn, "SELECT microsharding_ensure_active(1, 3)")
	var volatile, body string
	err := conn.QueryRow(context.Background(), `
		SELECT p.provolatile::text, p.prosrc FROM pg_proc p
		WHERE p.proname = 'microsharding_active_shards_' AND p.pronamespace = 'microsharding'::regnamespace`).Scan(&volatile, &body)
	if err != nil {
		t.Fatal(err)
	}
	if volatile != "i" {
		t.Errorf("microsharding_active_shards_ volatility = %s, want immutable", volatile)
	}
	if !regexp.MustCompile(`^\s*SELECT '\{sh0001,sh0002,sh0003\}'::text\[\];?\s*$`).MatchString(body) {
		t.Errorf("active list body is not a literal: %q", body)
	}
	// The list reads no user table: a table in the library schema named like
	// anything the function could use does not change the answer.
	if got := one(t, conn, "SELECT microsharding_list_active_shards()::text"); got != "{sh0001,sh0002,sh0003}" {
		t.Errorf("list = %s", got)
	}
}

func TestRangeValidation(t *testing.T) {
	conn := installed(t)
	tests := []struct {
		call, message string
	}{
		{"microsharding_ensure_exist(-1, 2)", "cannot be negative"},
		{"microsharding_ensure_exist(5, 3)", "shard_from is greater than shard_to"},
		{"microsharding_ensure_exist(9999, 10000)", "does not fit the schema naming (the largest is 9999)"},
		{"microsharding_ensure_active(12345)", "does not fit"},
		{"microsharding_ensure_inactive(3, 1)", "greater than"},
		{"microsharding_ensure_absent(-5)", "negative"},
		{"microsharding_ensure_exist(NULL)", "must not be NULL"},
	}
	for _, tt := range tests {
		e := pgErr(t, conn, "SELECT "+tt.call)
		if !strings.Contains(e.Message, tt.message) || e.Code != "22023" {
			t.Errorf("%s: %s (%s), want %q", tt.call, e.Message, e.Code, tt.message)
		}
	}
	if e := pgErr(t, conn, "SELECT microsharding_ensure_exist(5, 3)"); e.Hint != "Did you mean 3..5?" {
		t.Errorf("reversed range hint = %q", e.Hint)
	}
	if got := one(t, conn, "SELECT count(*)::text FROM pg_namespace WHERE nspname LIKE 'sh%'"); got != "0" {
		t.Errorf("invalid ranges created %s schemas", got)
	}
}

func TestEnsureAbsentRefusesNonEmpty(t *testing.T) {
	conn := installed(t)
	strs(t, conn, "SELECT microsharding_ensure_exist(1, 3)")
	pgtest.Exec(t, conn, `CREATE TABLE sh0002.users (id int PRIMARY KEY); CREATE SEQUENCE sh0002."Odd seq"`)
	e := pgErr(t, conn, "SELECT microsharding_ensure_absent(1, 3)")
	if e.Code != "2BP01" || !strings.Contains(e.Message, "sh0002") || !strings.Contains(e.Message, "sh0002.users") || !strings.Contains(e.Message, `sh0002."Odd seq"`) {
		t.Errorf("ensure_absent on non-empty: %s (%s)", e.Message, e.Code)
	}
	// The whole call failed: sh0001 is still there.
	if got := one(t, conn, "SELECT count(*)::text FROM pg_namespace WHERE nspname IN ('sh0001', 'sh0002', 'sh0003')"); got != "3" {
		t.Errorf("schemas left = %s, want 3", got)
	}
}

func TestReinstallKeepsActiveList(t *testing.T) {
	conn := installed(t)
	ctx := context.Background()
	strs(t, conn, "SELECT microsharding_ensure_exist(0, 5)")
	strs(t, conn, "SELECT microsharding_ensure_active(1, 4)")
	res, err := Install(ctx, conn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed() {
		t.Errorf("re-install reports a change: %+v", res)
	}
	if got := one(t, conn, "SELECT microsharding_list_active_shards()::text"); got != "{sh0001,sh0002,sh0003,sh0004}" {
		t.Fatalf("list after re-install = %s", got)
	}
	// An older library (version 0 here) is upgraded in place.
	pgtest.Exec(t, conn, "CREATE OR REPLACE FUNCTION microsharding.microsharding_version() RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 0'")
	res, err = Install(ctx, conn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.FromVersion != 0 || res.ToVersion != Version {
		t.Errorf("upgrade result %+v", res)
	}
	if got := one(t, conn, "SELECT microsharding_list_active_shards()::text"); got != "{sh0001,sh0002,sh0003,sh0004}" {
		t.Fatalf("list after upgrade = %s", got)
	}
	// A newer library is not replaced unless asked.
	pgtest.Exec(t, conn, "CREATE OR REPLACE FUNCTION microsharding.microsharding_version() RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 99'")
	if _, err := Install(ctx, conn, Options{}); !errors.Is(err, ErrNewerInstalled) {
		t.Errorf("install over newer: %v", err)
	}
	if _, err := Install(ctx, conn, Options{AllowDowngrade: true}); err != nil {
		t.Errorf("install with AllowDowngrade: %v", err)
	}
}

// A node set up by pg-microsharding has the same function names, no version
// function and its own active list: taking it over keeps the list.
func TestTakeOverPgMicroshardingInstall(t *testing.T) {
	db := pgtest.Database(t)
	conn := pgtest.Connect(t, db.DSN)
	ctx := context.Background()
	pgtest.Exec(t, conn, `
		CREATE SCHEMA microsharding;
		SET search_path = microsharding;
		CREATE SCHEMA sh0000; CREATE SCHEMA sh0007; CREATE SCHEMA sh0008;
		CREATE FUNCTION microsharding_active_shards_() RETURNS text[] LANGUAGE sql IMMUTABLE
		  SET search_path FROM CURRENT AS $$ SELECT '{sh0007,sh0000,sh0009}'::text[]; $$;
		CREATE FUNCTION microsharding_schema_name_(shard integer) RETURNS text LANGUAGE sql IMMUTABLE
		  SET search_path FROM CURRENT AS $$ SELECT 'sh' || lpad(shard::text, 4, '0'); $$;
		CREATE FUNCTION microsharding_list_active_shards() RETURNS regnamespace[] LANGUAGE sql
		  SET search_path FROM CURRENT AS $$
		    SELECT COALESCE(array_agg(nspname::regnamespace ORDER BY nspname), '{}')
		    FROM pg_namespace WHERE nspname = ANY(microsharding_active_shards_()) $$;
		CREATE FUNCTION microsharding_ensure_inactive(shard_from integer, shard_to integer = NULL)
		  RETURNS SETOF regnamespace LANGUAGE sql AS $$ SELECT NULL::regnamespace WHERE false $$;
		RESET search_path;`)
	if v, err := InstalledVersion(ctx, conn, DefaultSchema); err != nil || v != 0 {
		t.Fatalf("InstalledVersion = %d, %v; want 0 (pg-microsharding)", v, err)
	}
	// An application connected through the take-over, with the old
	// function in its prepared statement.
	app := newAppSession(t, db.DSN)
	app.expect(t, "pg-microsharding", "{sh0000,sh0007}")
	res, err := Install(ctx, conn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Fresh || res.FromVersion != 0 {
		t.Errorf("result %+v", res)
	}
	if got := one(t, conn, "SELECT microsharding.microsharding_list_active_shards()::text"); got != "{sh0000,sh0007}" {
		t.Fatalf("active list after take-over = %s", got)
	}
	pgtest.Exec(t, conn, "SET search_path = microsharding")
	strs(t, conn, "SELECT microsharding_ensure_active(8)")
	if got := one(t, conn, "SELECT microsharding_list_active_shards()::text"); got != "{sh0000,sh0007,sh0008}" {
		t.Fatalf("active list = %s", got)
	}
	app.expect(t, "taken over", "{sh0000,sh0007,sh0008}")
	pgtest.Exec(t, conn, "DROP SCHEMA sh0007")
	app.expect(t, "DROP SCHEMA after the take-over", "{sh0000,sh0008}")
}

func TestConcurrentInstalls(t *testing.T) {
	db := pgtest.Database(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := pgtest.Connect(t, db.DSN)
			_, errs[i] = Install(context.Background(), conn, Options{})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestCustomNaming(t *testing.T) {
	conn := pgtest.Connect(t, pgtest.Database(t).DSN)
	ctx := context.Background()
	if _, err := Install(ctx, conn, Options{Schema: "Shard Lib", Naming: &Naming{Prefix: "part_", Digits: 2}}); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, conn, `SET search_path = "Shard Lib"`)
	if got := strs(t, conn, "SELECT s::text FROM microsharding_ensure_exist(8, 10) s"); !slices.Equal(got, []string{"part_08", "part_09", "part_10"}) {
		t.Fatalf("ensure_exist = %v", got)
	}
	if e := pgErr(t, conn, "SELECT microsharding_ensure_exist(100)"); !strings.Contains(e.Message, "largest is 99") {
		t.Errorf("width check: %s", e.Message)
	}
	strs(t, conn, "SELECT microsharding_ensure_active(8)")
	// Re-install without naming keeps it.
	if _, err := Install(ctx, conn, Options{Schema: "Shard Lib"}); err != nil {
		t.Fatal(err)
	}
	if got := one(t, conn, "SELECT microsharding_schema_name_(3)"); got != "part_03" {
		t.Errorf("naming after re-install: %s", got)
	}
	// Changing the naming with active shards is refused.
	_, err := Install(ctx, conn, Options{Schema: "Shard Lib", Naming: &Naming{Prefix: "sh", Digits: 4}})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55006" || !strings.Contains(pe.Message, "1 shards are active") {
		t.Errorf("naming change with active shards: %v", err)
	}
	if Naming := (Naming{Prefix: "part_", Digits: 2}); Naming.SchemaName(7) != "part_07" || Naming.MaxShard() != 99 {
		t.Errorf("Go naming: %s %d", Naming.SchemaName(7), Naming.MaxShard())
	}
}

func TestDoOnEach(t *testing.T) {
	conn := installed(t)
	strs(t, conn, "SELECT microsharding_ensure_exist(0, 3)")
	strs(t, conn, "SELECT microsharding_ensure_active(0, 2)")
	pgtest.Exec(t, conn, "SELECT microsharding_do_on_each('CREATE TABLE items (id int PRIMARY KEY, note text)')")
	if got := one(t, conn, "SELECT string_agg(n.nspname, ',' ORDER BY n.nspname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'items'"); got != "sh0001,sh0002" {
		t.Fatalf("items created in %s; shard 0 and inactive shards must be skipped", got)
	}
	rows := strs(t, conn, "SELECT shard::text || '=' || row_count FROM microsharding_do_on_each($$INSERT INTO items SELECT g, 'x' FROM generate_series(1, CASE WHEN current_schema() = 'sh0001' THEN 2 ELSE 0 END) g$$)")
	if !slices.Equal(rows, []string{"sh0001=2", "sh0002="}) {
		t.Errorf("do_on_each rows = %v", rows)
	}
	var notices []string
	cfg := conn.Config().Copy()
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	c2, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(context.Background())
	_, err = c2.Exec(context.Background(), "SELECT * FROM microsharding.microsharding_do_on_each('INSERT INTO items VALUES (1)')")
	if err == nil || !slices.ContainsFunc(notices, func(n string) bool { return strings.Contains(n, "sh0001") }) {
		t.Errorf("failing statement: err=%v notices=%v", err, notices)
	}
}

func TestDebugViews(t *testing.T) {
	conn := installed(t)
	strs(t, conn, "SELECT microsharding_ensure_exist(1, 3)")
	strs(t, conn, "SELECT microsharding_ensure_active(1, 3)")
	pgtest.Exec(t, conn, `
		CREATE TABLE sh0001.users (id int PRIMARY KEY, name text);
		CREATE TABLE sh0002.users (id int PRIMARY KEY, name text, email text);
		CREATE TABLE sh0003.users (id int PRIMARY KEY, age int);
		CREATE TABLE sh0001."Odd ""Table"" name" (id int, "Mixed Col" text);
		CREATE TABLE sh0003."Odd ""Table"" name" (id int);
		INSERT INTO sh0001.users VALUES (1, 'ann');
		INSERT INTO sh0002.users VALUES (2, 'bob', 'b@x');
		INSERT INTO sh0003.users VALUES (3, 42);
		INSERT INTO sh0001."Odd ""Table"" name" VALUES (10, 'v');
		CREATE TABLE sh0002.counters (id int, n bigint);
		CREATE TABLE sh0003.counters (id int, n text);
		INSERT INTO sh0002.counters VALUES (1, 7);
		INSERT INTO sh0003.counters VALUES (2, 'seven');
		CREATE TABLE public.notmine (x int);
		CREATE TABLE sh0002.notmine (id int);`)
	created := strs(t, conn, "SELECT microsharding_debug_views_create()")
	slices.Sort(created)
	if !slices.Equal(created, []string{`public."Odd ""Table"" name"`, "public.counters", "public.users"}) {
		t.Fatalf("created = %v (a user table named notmine must be skipped)", created)
	}
	// Types that differ between shards read as text.
	if got := strs(t, conn, "SELECT n FROM public.counters ORDER BY id"); !slices.Equal(got, []string{"7", "seven"}) {
		t.Errorf("counters = %v", got)
	}
	got := strs(t, conn, "SELECT format('%s|%s|%s|%s|%s', shard, id, age, email, name) FROM public.users ORDER BY id")
	want := []string{"sh0001|1|<nil>|<nil>|ann", "sh0002|2|<nil>|b@x|bob", "sh0003|3|42|<nil>|<nil>"}
	for i := range want {
		want[i] = strings.ReplaceAll(want[i], "<nil>", "")
	}
	if !slices.Equal(got, want) {
		t.Errorf("users view rows = %v, want %v", got, want)
	}
	if cols := strs(t, conn, "SELECT attname FROM pg_attribute WHERE attrelid = 'public.users'::regclass AND attnum > 0 ORDER BY attnum"); !slices.Equal(cols, []string{"shard", "id", "age", "email", "name"}) {
		t.Errorf("view columns = %v, want shard, id, then alphabetical", cols)
	}
	if got := one(t, conn, `SELECT "Mixed Col" FROM public."Odd ""Table"" name" WHERE shard = 'sh0001'`); got != "v" {
		t.Errorf("odd table view = %s", got)
	}
	// Unchanged shards: nothing is re-created.
	if again := strs(t, conn, "SELECT microsharding_debug_views_create()"); len(again) != 0 {
		t.Errorf("second create re-created %v", again)
	}
	// A new column changes the text of one view only.
	pgtest.Exec(t, conn, "ALTER TABLE sh0001.users ADD COLUMN zip text")
	if again := strs(t, conn, "SELECT microsharding_debug_views_create()"); !slices.Equal(again, []string{"public.users"}) {
		t.Errorf("after a new column, re-created %v", again)
	}
	dropped := strs(t, conn, "SELECT microsharding_debug_views_drop()")
	slices.Sort(dropped)
	if !slices.Equal(dropped, []string{`public."Odd ""Table"" name"`, "public.counters", "public.users"}) {
		t.Errorf("dropped = %v", dropped)
	}
	if got := one(t, conn, "SELECT count(*)::text FROM pg_class WHERE relname = 'notmine'"); got != "2" {
		t.Errorf("user tables touched: %s left", got)
	}
}

func TestDebugFDWAgainstSecondServer(t *testing.T) {
	dbs := pgtest.Databases(t, 2)
	ctx := context.Background()
	local := pgtest.Connect(t, dbs[0].DSN)
	remote := pgtest.Connect(t, dbs[1].DSN)
	for _, c := range []*pgx.Conn{local, remote} {
		if _, err := Install(ctx, c, Options{}); err != nil {
			t.Fatal(err)
		}
	}
	pgtest.Exec(t, remote, `
		SET search_path = microsharding;
		SELECT microsharding_ensure_exist(5, 6);
		SELECT microsharding_ensure_active(5, 6);
		CREATE TABLE sh0005.orders (id int PRIMARY KEY, total int);
		CREATE TABLE sh0006.orders (id int PRIMARY KEY, total int);
		INSERT INTO sh0005.orders VALUES (1, 100);
		INSERT INTO sh0006.orders VALUES (2, 250);`)
	pgtest.Exec(t, local, "SET search_path = microsharding, public")
	host := fmt.Sprintf("%s:%d", dbs[1].Server.Host, dbs[1].Server.Port)
	rows := strs(t, local, "SELECT server || '=' || shard_count FROM microsharding_debug_fdw_create('dbg', ARRAY[$1])", host)
	wantServer := "dbg_" + regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(host, "_")
	if !slices.Equal(rows, []string{wantServer + "=2"}) {
		t.Fatalf("fdw_create = %v", rows)
	}
	if got := one(t, local, "SELECT sum(total)::text FROM dbg_sh0005.orders"); got != "100" {
		t.Errorf("foreign table read = %s", got)
	}
	// Debug views over the foreign schemas label rows with the shard.
	strs(t, local, "SELECT microsharding_debug_views_create('dbg_views', 'dbg')")
	if got := strs(t, local, "SELECT shard || ':' || total FROM dbg_views.orders ORDER BY id"); !slices.Equal(got, []string{"sh0005:100", "sh0006:250"}) {
		t.Errorf("views over fdw = %v", got)
	}
	strs(t, local, "SELECT microsharding_debug_views_drop('dbg_views')")
	// A server not made by create survives drop.
	pgtest.Exec(t, local, "CREATE SERVER dbg_mine FOREIGN DATA WRAPPER postgres_fdw")
	if dropped := strs(t, local, "SELECT microsharding_debug_fdw_drop('dbg')"); !slices.Equal(dropped, []string{wantServer}) {
		t.Errorf("fdw_drop = %v", dropped)
	}
	if got := one(t, local, "SELECT count(*)::text FROM pg_namespace WHERE nspname LIKE 'dbg_sh%'"); got != "0" {
		t.Errorf("%s foreign schemas left", got)
	}
	if got := one(t, local, "SELECT string_agg(srvname, ',') FROM pg_foreign_server"); got != "dbg_mine" {
		t.Errorf("servers left: %s", got)
	}
}

// Activations from many sessions at once all land: the changes of the
// active list are serialised, none fails and none starts from a stale list.
func TestConcurrentActivations(t *testing.T) {
	db := pgtest.Database(t)
	setup := pgtest.Connect(t, db.DSN)
	if _, err := Install(context.Background(), setup, Options{}); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, setup, "SELECT microsharding.microsharding_ensure_exist(1, 40)")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn := pgtest.Connect(t, db.DSN)
			for n := w + 1; n <= 40; n += len(errs) {
				if _, err := conn.Exec(context.Background(), "SELECT microsharding.microsharding_ensure_active($1)", n); err != nil {
					errs[w] = err
					return
				}
				if n%3 == 0 {
					if _, err := conn.Exec(context.Background(), "SELECT microsharding.microsharding_ensure_inactive($1)", n); err != nil {
						errs[w] = err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := one(t, setup, "SELECT cardinality(microsharding.microsharding_list_active_shards())::text"); got != "27" {
		t.Errorf("%s shards active, want 27 (40 activated, 13 deactivated)", got)
	}
}
