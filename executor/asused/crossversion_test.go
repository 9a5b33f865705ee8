package asused

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/bench/move/workload"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/sql"
)

// upgrades are the moves tested, each from an older major to a newer one:
// every major from 13 to 18 is the source or the destination of one, and
// 13 → 17 and 15 → 18 are the jumps users make from the oldest supported
// versions.
var upgrades = []struct{ from, to int }{
	{13, 17}, {14, 16}, {15, 18}, {16, 17}, {17, 18},
}

// selected says whether the upgrade from major runs in this test run:
// every one when no version is chosen (make test), else those whose source
// is the chosen version, so that make test-matrix runs each once.
func selected(from int) bool {
	v := os.Getenv(pgtest.EnvVersion)
	return v == "" || v == strconv.Itoa(from)
}

// shardDDL is a shard with the column types whose binary form differs
// between databases or versions (enums, arrays of them, composites, jsonb,
// numeric), generated and identity columns, a partitioned table, a
// foreign key, indexes of several kinds and a free sequence.
const shardDDL = `
	CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
	CREATE TYPE pair AS (a int, b text);
	CREATE TABLE items (id bigserial PRIMARY KEY, val bigint NOT NULL, note text DEFAULT 'x');
	CREATE INDEX items_val ON items (val);
	CREATE TABLE docs (
	  id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	  item bigint REFERENCES items (id),
	  body jsonb, tags text[], moods mood[], p pair,
	  price numeric(12,2), at timestamptz DEFAULT '2026-01-01 12:00:00+00', raw bytea,
	  len int GENERATED ALWAYS AS (length(body::text)) STORED,
	  UNIQUE (price, id));
	CREATE INDEX docs_body ON docs USING gin (body);
	CREATE TABLE events (id bigint, day date, kind text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
	CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
	CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
	CREATE SEQUENCE free_seq START 100;
	INSERT INTO items (val) SELECT g FROM generate_series(1, 2000) g;
	INSERT INTO docs (item, body, tags, moods, p, price, raw)
	  SELECT g, jsonb_build_object('n', g, 'k', ARRAY[g, g + 1]), ARRAY['a' || g, 'b'], ARRAY['ok', 'happy']::mood[],
	         ROW(g, 'x' || g)::pair, g / 7.0, decode(md5(g::text), 'hex')
	  FROM generate_series(1, 1500) g;
	INSERT INTO events SELECT g, DATE '2025-06-01' + (g % 400), 'k' || (g % 5) FROM generate_series(1, 1500) g;
	SELECT nextval('free_seq'), nextval('free_seq')`

// tables are the tables compared after a move.
var tables = []string{"items", "docs", "events_2025", "events_2026"}

// TestMoveToNewerMajor moves shards from a server of an older major to one
// of a newer major, with the pg_dump of the newer major: one shard with
// the fast copy under a concurrent writer (every table goes as text COPY,
// since binary forms are only shared within a major), one with the native
// copy. Every acknowledged write, the tables' content and the sequences
// must arrive, and nothing may be left behind.
func TestMoveToNewerMajor(t *testing.T) {
	ran := false
	for _, u := range upgrades {
		if !selected(u.from) {
			continue
		}
		ran = true
		t.Run(fmt.Sprintf("%d_to_%d", u.from, u.to), func(t *testing.T) {
			t.Parallel()
			testUpgrade(t, u.from, u.to)
		})
	}
	if !ran {
		t.Skipf("no upgrade from PostgreSQL %s is tested: it is the newest major", os.Getenv(pgtest.EnvVersion))
	}
}

func testUpgrade(t *testing.T, from, to int) {
	pgDump := newerPgDump(t, from, to)
	servers := append(pgtest.StartServers(t, 1, pgtest.Options{Version: from}), pgtest.StartServers(t, 1, pgtest.Options{Version: to})...)
	dbs := pgtest.DatabasesOn(t, servers)
	src, dst := pgtest.Connect(t, dbs[0].DSN), pgtest.Connect(t, dbs[1].DSN)
	ctx := context.Background()
	for _, conn := range []*pgx.Conn{src, dst} {
		if _, err := sql.Install(ctx, conn, sql.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{1, 2} {
		schema := sql.DefaultNaming.SchemaName(n)
		pgtest.Exec(t, src, fmt.Sprintf("SELECT microsharding.microsharding_ensure_exist(%d)", n))
		pgtest.Exec(t, src, "SET search_path = "+schema+"; "+shardDDL+"; RESET search_path")
		pgtest.Exec(t, src, fmt.Sprintf("SELECT microsharding.microsharding_ensure_active(%d)", n))
	}
	spec := func(n int, strategy string) executor.MoveSpec {
		return executor.MoveSpec{
			Shard: n, Activate: true,
			From: executor.Endpoint{Name: fmt.Sprintf("pg%d", from), DSN: dbs[0].DSN},
			To:   executor.Endpoint{Name: fmt.Sprintf("pg%d", to), DSN: dbs[1].DSN},
			Options: executor.MoveOptions{
				Strategy: strategy, PgDump: pgDump, PollInterval: 50 * time.Millisecond,
			},
		}
	}

	// The fast copy, under a writer routing by the active lists.
	w, err := workload.Start(ctx, workload.Config{
		DSNs: []string{dbs[0].DSN, dbs[1].DSN}, Schema: "sh0001", Table: "items",
		Interval: 3 * time.Millisecond, UpdateShare: 0.3,
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	ev := &events{}
	res, err := executor.Move(ctx, spec(1, "fast"), nil, ev)
	if err != nil {
		t.Fatalf("fast copy %d → %d: %v\n%s", from, to, err, ev.text())
	}
	time.Sleep(200 * time.Millisecond)
	st := w.Stop()
	if len(st.Violations) > 0 || st.Inserts < 20 {
		t.Errorf("writer: %d inserts, violations %v", st.Inserts, st.Violations)
	}
	if err := w.Verify(ctx, dst); err != nil {
		t.Error(err)
	}
	wantText := fmt.Sprintf("every table (pg%d runs PostgreSQL %d, pg%d %d)", from, from, to, to)
	if !strings.Contains(ev.text(), wantText) {
		t.Errorf("the move does not say it copies as text (%q):\n%s", wantText, ev.text())
	}
	t.Logf("fast copy %d → %d: backfill %v, pause %v, %d rows; writer %d inserts %d updates, max latency %v",
		from, to, res.Backfill.Round(time.Millisecond), res.Pause.Round(10*time.Microsecond), res.Rows, st.Inserts, st.Updates, st.Max.Round(time.Millisecond))
	// The writer's rows are checked by Verify; the others must be equal.
	sameContent(t, src, dst, res.OldSchema, "sh0001", "", "docs", "events_2025", "events_2026")
	sameContent(t, src, dst, res.OldSchema, "sh0001", "x.id <= 2000", "items")

	// The native copy of the other shard.
	res, err = executor.Move(ctx, spec(2, "native"), nil, nil)
	if err != nil {
		t.Fatalf("native copy %d → %d: %v", from, to, err)
	}
	sameContent(t, src, dst, res.OldSchema, "sh0002", "", tables...)

	var active []string
	if err := dst.QueryRow(ctx, "SELECT microsharding.microsharding_list_active_shards()::text[]").Scan(&active); err != nil {
		t.Fatal(err)
	}
	if strings.Join(active, ",") != "sh0001,sh0002" {
		t.Errorf("active on the destination: %v", active)
	}
	for _, schema := range []string{"sh0001", "sh0002"} {
		var next int64
		if err := dst.QueryRow(ctx, "SELECT nextval($1)", schema+".free_seq").Scan(&next); err != nil || next != 102 {
			t.Errorf("%s.free_seq on the destination: nextval %d, %v (want 102)", schema, next, err)
		}
		// Identity and generated columns work on the destination.
		if _, err := dst.Exec(ctx, "INSERT INTO "+schema+".docs (body) VALUES ('{\"new\": true}')"); err != nil {
			t.Errorf("insert into %s.docs on the destination: %v", schema, err)
		}
	}
	noArtifacts(t, src, dst)
}

// newerPgDump returns the pg_dump of the destination's major (or the
// oldest cached one newer than it): the documented way to dump for an
// upgrade.
func newerPgDump(t *testing.T, from, to int) string {
	t.Helper()
	dir := pgtest.CachedClientDir(to)
	if dir == "" {
		msg := fmt.Sprintf("no pg_dump of version %d or newer in the cache (scripts/pg-versions.sh install client-%d)", to, max(to, 17))
		if os.Getenv(pgtest.EnvRequireVersions) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return filepath.Join(dir, "pg_dump")
}

// sameContent compares tables of the renamed source and the destination
// (only the rows where the condition holds, when given): row count and an
// md5 of the ordered text of the rows.
func sameContent(t *testing.T, src, dst *pgx.Conn, old, schema, where string, tables ...string) {
	t.Helper()
	for _, tbl := range tables {
		var na, nb int64
		var sa, sb *string
		q := func(s string) string {
			q := "SELECT count(*), md5(string_agg(x::text, ',' ORDER BY x::text)) FROM " + pgx.Identifier{s, tbl}.Sanitize() + " AS x"
			if where != "" {
				q += " WHERE " + where
			}
			return q
		}
		if err := src.QueryRow(context.Background(), q(old)).Scan(&na, &sa); err != nil {
			t.Fatalf("source %s: %v", tbl, err)
		}
		if err := dst.QueryRow(context.Background(), q(schema)).Scan(&nb, &sb); err != nil {
			t.Fatalf("destination %s: %v", tbl, err)
		}
		if na == 0 || na != nb || *sa != *sb {
			t.Errorf("%s.%s differs: source %d rows, destination %d rows", schema, tbl, na, nb)
		}
	}
}

// noArtifacts fails the test if a publication, slot or subscription is
// left on either server.
func noArtifacts(t *testing.T, conns ...*pgx.Conn) {
	t.Helper()
	for i, conn := range conns {
		var n int
		err := conn.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_publication)
			+ (SELECT count(*) FROM pg_replication_slots WHERE database = current_database())
			+ (SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()))`).Scan(&n)
		if err != nil || n != 0 {
			t.Errorf("server %d: %d replication objects left (%v)", i, n, err)
		}
	}
}

// events collects a move's events.
type events struct {
	mu   sync.Mutex
	list []executor.Event
}

func (e *events) Report(ev executor.Event) {
	e.mu.Lock()
	e.list = append(e.list, ev)
	e.mu.Unlock()
}

func (e *events) text() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for _, ev := range e.list {
		b.WriteString(executor.FormatEvent(ev) + "\n")
	}
	return b.String()
}
