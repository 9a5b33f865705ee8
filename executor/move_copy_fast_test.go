package executor

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/bench/move/workload"
	"github.com/pgms-dev/pgms/internal/fault"
)

// churnShard is a shard with what a copy can get wrong: an enum, a domain,
// arrays, jsonb and a generated column (binary COPY), an array of an enum
// and a composite (text COPY), a foreign key with cascading deletes, a
// trigger that would change rows if it fired during the copy, a partial
// unique index, a partitioned table, quoted names.
const churnShard = `
	CREATE TYPE mood AS ENUM ('calm', 'busy', 'odd ''one''');
	CREATE DOMAIN positive AS bigint CHECK (VALUE > 0);
	CREATE TYPE pair AS (x int, y text);
	CREATE TABLE items (id bigserial PRIMARY KEY, val bigint NOT NULL, note text);
	CREATE INDEX items_val ON items (val);
	CREATE UNIQUE INDEX "items note; unique" ON items (note) WHERE note IS NOT NULL;
	CREATE TABLE "Typed ""T""" (k bigint, "Sub Key" text, m mood, d positive, a int[], j jsonb,
	  g bigint GENERATED ALWAYS AS (d * 2) STORED, PRIMARY KEY (k, "Sub Key"));
	CREATE INDEX typed_j ON "Typed ""T""" USING gin (j);
	CREATE TABLE texty (id bigint PRIMARY KEY, moods mood[], p pair);
	CREATE TABLE child (id bigserial PRIMARY KEY, item bigint REFERENCES items ON DELETE CASCADE, tag text);
	CREATE FUNCTION mark() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.tag := NEW.tag || '!'; RETURN NEW; END$$;
	CREATE TRIGGER mark BEFORE INSERT ON child FOR EACH ROW EXECUTE FUNCTION mark();
	CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, what text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
	CREATE INDEX events_what ON events (what);
	CREATE TABLE "ev 2025" PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
	CREATE TABLE ev_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
	INSERT INTO items (val, note) SELECT g, 'n' || g FROM generate_series(1, 3000) g;
	INSERT INTO "Typed ""T""" (k, "Sub Key", m, d, a, j)
	  SELECT g, 's' || g, 'calm', g, ARRAY[g::int, -1], jsonb_build_object('g', g, 'f', g / 7.0) FROM generate_series(1, 1500) g;
	INSERT INTO texty SELECT g, ARRAY['calm', 'odd ''one''']::mood[], ROW(g, 'p' || g)::pair FROM generate_series(1, 800) g;
	INSERT INTO child (item, tag) SELECT 1 + g % 3000, 't' FROM generate_series(1, 2000) g;
	INSERT INTO events SELECT g, DATE '2025-06-01' + (g % 400), 'e' FROM generate_series(1, 1500) g`

// churnTables are the tables of churnShard holding rows.
var churnTables = []string{"items", `Typed "T"`, "texty", "child", "ev 2025", "ev_2026"}

// churnStatements change every table of churnShard, $1 a bigint.
func churnStatements(schema string) []string {
	q := func(s string) string { return strings.ReplaceAll(s, "S.", pgx.Identifier{schema}.Sanitize()+".") }
	return []string{
		q(`INSERT INTO S.items (val) VALUES ($1::bigint)`),
		q(`UPDATE S.items SET val = val + 1, note = 'u' || id WHERE id = $1::bigint`),
		q(`DELETE FROM S.items WHERE id = $1::bigint`),
		q(`INSERT INTO S."Typed ""T""" (k, "Sub Key", m, d, a, j) VALUES ($1::bigint, 'w', 'busy', $1, ARRAY[$1::int, 2], jsonb_build_object('w', $1)) ON CONFLICT DO NOTHING`),
		q(`UPDATE S."Typed ""T""" SET d = d + 1, j = j || '{"u": [1, "x"]}', m = 'odd ''one''' WHERE k = $1::bigint`),
		q(`DELETE FROM S."Typed ""T""" WHERE k = $1::bigint`),
		q(`INSERT INTO S.texty VALUES ($1::bigint, ARRAY['busy']::S.mood[], ROW($1, 'w')::S.pair) ON CONFLICT (id) DO UPDATE SET p = ROW(texty.id + 1, 'q')::S.pair`),
		q(`DELETE FROM S.texty WHERE id = $1::bigint`),
		q(`INSERT INTO S.child (item, tag) SELECT id, 'w' FROM S.items WHERE id = $1::bigint`),
		q(`UPDATE S.child SET tag = tag || '+' WHERE id = $1::bigint`),
		q(`DELETE FROM S.child WHERE id = $1::bigint`),
		q(`INSERT INTO S.events VALUES ($1::bigint + 100000, DATE '2025-06-01' + ($1::bigint % 400)::int, 'w')`),
		q(`UPDATE S.events SET what = what || '+' WHERE id = $1::bigint`),
		q(`DELETE FROM S.events WHERE id = $1::bigint`),
	}
}

// TestCopyUnderChurn moves a shard while every table of it changes on the
// source (inserts, updates, deletes, cascades) until the cutover, with
// pauses at the points of the copy so that changes fall after the
// snapshot, during the copy, between copy and index build, between index
// build and subscription, and as streaming starts. Afterwards the renamed
// source and the destination must hold the same rows, table by table, and
// the destination's log no error.
func TestCopyUnderChurn(t *testing.T) {
	for i, tc := range []struct {
		strategy string
		pauses   []string
		opts     func(*MoveOptions)
	}{
		{strategy: "fast", pauses: []string{"move.replicate.slot", "move.backfill.table", "move.backfill.copied", "move.backfill.indexed", "move.backfill.end"}},
		// Page ranges: the tables of the shard are cut into several.
		{strategy: "fast", pauses: []string{"move.backfill.table"}, opts: func(o *MoveOptions) { o.CopyRangeBytes = 32 << 10; o.CopyWorkers = 3 }},
		{strategy: "native", pauses: []string{"move.replicate.slot", "move.backfill.end"}},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.strategy, i), func(t *testing.T) {
			c := newCluster(t)
			n := 31 + i
			schema := c.shard(n, churnShard)
			logFrom := len(c.dst.Server.Log())
			churn, err := workload.StartChurn(context.Background(), workload.ChurnConfig{
				DSN: c.src.DSN, Statements: churnStatements(schema), MaxArg: 4000, Interval: 2 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer churn.Stop()
			time.Sleep(100 * time.Millisecond)

			var mu sync.Mutex
			during := map[string]int{}
			ctx := fault.WithHook(context.Background(), func(point string) error {
				// A point several workers pass (one per table) is
				// counted at its first pass only: a later pass must not
				// reset what the first measured.
				mu.Lock()
				_, seen := during[point]
				if !seen {
					during[point] = 0
				}
				mu.Unlock()
				for _, p := range tc.pauses {
					if p == point && !seen {
						before := churn.Ops()
						time.Sleep(150 * time.Millisecond)
						mu.Lock()
						during[point] = churn.Ops() - before
						mu.Unlock()
					}
				}
				return nil
			})
			spec := c.spec(n, true)
			spec.Options.Strategy = tc.strategy
			if tc.opts != nil {
				tc.opts(&spec.Options)
			}
			ev := newEvents()
			res, err := Move(ctx, spec, nil, ev)
			log := ev.text()
			if err != nil {
				t.Fatalf("%v\n%s", err, log)
			}
			ops, errs := churn.Stop()
			t.Logf("%d changes on the source; errors: %v; changes while paused: %v", ops, errs, during)
			for _, p := range tc.pauses {
				if during[p] == 0 {
					t.Errorf("no change on the source while the move paused at %s", p)
				}
			}
			for msg := range errs {
				if !strings.Contains(msg, "does not exist") && !strings.Contains(msg, "duplicate key") {
					t.Errorf("unexpected error on the source: %s", msg)
				}
			}
			// Before PostgreSQL 14 (no TID range scan) tables are copied whole.
			if tc.strategy == "fast" && tc.opts != nil {
				want := `copying 6 tables in [1-9][0-9] parts, 3 at a time`
				if c.src.Server.Version < 14 {
					want = `copying 6 tables, 3 at a time`
				}
				if !regexp.MustCompile(want).MatchString(log) {
					t.Errorf("the copy did not run in ranges as planned:\n%s", log)
				}
			}
			if tc.strategy == "fast" && !strings.Contains(log, `copying as text (their column types have no binary form that is the same in both databases): "texty" (column "moods" is `+schema+`.mood[])`) {
				t.Errorf("texty not copied as text, or not only texty:\n%s", log)
			}
			c.sameContent(res.OldSchema, schema, churnTables...)
			for _, tbl := range churnTables {
				var dups int
				name := pgx.Identifier{schema, tbl}.Sanitize()
				if err := c.b.QueryRow(context.Background(), "SELECT count(*) - count(DISTINCT x) FROM "+name+" x").Scan(&dups); err != nil || dups != 0 {
					t.Errorf("%s: %d duplicate rows (%v)", name, dups, err)
				}
			}
			// The trigger fired on the source only, once per row.
			var marked int
			c.b.QueryRow(context.Background(), "SELECT count(*) FROM "+schema+".child WHERE tag LIKE '%!!%'").Scan(&marked)
			if marked > 0 {
				t.Errorf("%d rows of child were changed by the trigger on the destination", marked)
			}
			if errLines := serverErrors(c.dst.Server.Log()[logFrom:]); errLines != "" {
				t.Errorf("errors in the destination's log:\n%s", errLines)
			}
			// Every index, constraint and trigger arrived.
			for _, q := range []string{
				`INSERT INTO S.child (item, tag) VALUES (999999, 'x')`,
				`INSERT INTO S.items (val, note) SELECT 1, note FROM S.items WHERE note IS NOT NULL LIMIT 1`,
				`INSERT INTO S."Typed ""T""" (k, "Sub Key", d) VALUES (1, 's1', 0)`,
			} {
				q = strings.ReplaceAll(q, "S.", schema+".")
				if _, err := c.b.Exec(context.Background(), q); err == nil {
					t.Errorf("accepted on the destination: %s", q)
				}
			}
			c.noArtifacts()
		})
	}
}

// serverErrors returns the ERROR, FATAL and PANIC lines of a server log,
// but for the end of the apply worker that DROP SUBSCRIPTION causes.
func serverErrors(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "terminating logical replication worker due to administrator command") {
			continue
		}
		if strings.Contains(l, "ERROR:") || strings.Contains(l, "FATAL:") || strings.Contains(l, "PANIC:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestCopyFallsBackToNative: where no replication connection can be opened
// (a pooler in the way, say), the move uses the native copy and says why.
func TestCopyFallsBackToNative(t *testing.T) {
	c := newCluster(t)
	schema := c.shard(40, writerTable+`; CREATE TABLE other (id int PRIMARY KEY, ref bigint REFERENCES items (id)); INSERT INTO other VALUES (1, 1)`)
	ctx := fault.WithHook(context.Background(), func(point string) error {
		if point == "move.replicate.connect" {
			return errors.New("replication connections are not supported")
		}
		return nil
	})
	ev := newEvents()
	res, err := Move(ctx, c.spec(40, true), nil, ev)
	log := ev.text()
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if !strings.Contains(log, "the fast copy cannot run: no replication connection") || !strings.Contains(log, "replication connections are not supported") || !strings.Contains(log, "using the native copy") {
		t.Errorf("fallback not reported:\n%s", log)
	}
	c.sameContent(res.OldSchema, schema, "items", "other")
	if _, err := c.b.Exec(context.Background(), "INSERT INTO "+schema+".other VALUES (2, 123456)"); err == nil {
		t.Error("foreign key missing on the destination")
	}
	c.noArtifacts()
}

// TestCopyKeptOnInterrupt: an interrupted fast copy kept for a later run is
// handed over to the subscription, which the next run waits for.
func TestCopyKeptOnInterrupt(t *testing.T) {
	c := newCluster(t)
	schema := c.shard(41, writerTable)
	spec := c.spec(41, true)
	spec.Options.KeepOnInterrupt = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hooked := fault.WithHook(ctx, func(at string) error {
		if at == "move.backfill.copied" {
			cancel()
		}
		return nil
	})
	ev := newEvents()
	if _, err := Move(hooked, spec, nil, ev); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v", err)
	}
	if log := ev.text(); !strings.Contains(log, "handing it over to the subscription") {
		t.Errorf("hand-over not reported:\n%s", log)
	}
	var subs int
	c.b.QueryRow(context.Background(), "SELECT count(*) FROM pg_subscription").Scan(&subs)
	if subs != 1 {
		t.Fatalf("%d subscriptions after the hand-over", subs)
	}
	res, err := Move(context.Background(), spec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Resumed {
		t.Errorf("not resumed: %+v", res)
	}
	c.sameContent(res.OldSchema, schema, "items")
	c.noArtifacts()
}
