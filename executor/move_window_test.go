package executor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

// windowTables are the writer's table and a partitioned one, whose fence
// must hold for writes through the parent and into a partition.
const windowTables = writerTable + `;
	CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
	CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
	INSERT INTO events VALUES (1, '2026-05-01')`

// rollbackSpec is the move back from b to a that a rollback is.
func (c *cluster) rollbackSpec(n int) MoveSpec {
	s := c.spec(n, true)
	s.From, s.To, s.Rollback = s.To, s.From, true
	return s
}

// TestRollbackWindow moves a shard with a rollback window under a writer
// that routes through the active lists, lets it write on the new home,
// then either rolls back (every acknowledged write must be on the old
// home, which alone serves the shard) or closes the window (the old home's
// copy is renamed and the new home keeps serving). Nothing of the reverse
// stream may be left either way.
func TestRollbackWindow(t *testing.T) {
	tests := []struct {
		name     string
		rollback bool
	}{
		{"rollback", true},
		{"close", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			c := newCluster(t)
			schema := c.shard(3, windowTables)
			pgtest.Exec(t, c.a, "COMMENT ON SCHEMA "+schema+" IS 'orders; region 4'")
			w := c.startWriter(schema, 3*time.Millisecond)
			time.Sleep(200 * time.Millisecond)
			spec := c.spec(3, true)
			spec.Options.RollbackWindow = time.Hour
			res, err := Move(ctx, spec, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("move: pause %v, writers blocked %v", res.Pause, res.Blocked)
			if res.OldSchema != schema {
				t.Errorf("the source was renamed to %q; a window keeps its name", res.OldSchema)
			}
			c.checkWindow(schema, "b")
			if got := c.active(c.b); len(got) != 1 || got[0] != schema {
				t.Errorf("b serves %v", got)
			}
			time.Sleep(400 * time.Millisecond)

			if !tt.rollback {
				renamed, err := CloseWindow(ctx, c.rollbackSpec(3), nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(renamed, schema+"old") {
					t.Errorf("closed window renamed the source to %q", renamed)
				}
				if got := c.schemas(c.a, schema+"%"); len(got) != 1 || got[0] != renamed {
					t.Errorf("a holds %v after the window closed", got)
				}
				c.comment(c.a, renamed, "orders; region 4")
				c.noArtifacts()
				checkWriter(t, w, c.b)
				return
			}

			back, err := Move(ctx, c.rollbackSpec(3), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("rollback: pause %v, writers blocked %v, lock wait %v", back.Pause, back.Blocked, back.LockWait)
			time.Sleep(200 * time.Millisecond)
			checkWriter(t, w, c.a)
			if got := c.active(c.a); len(got) != 1 || got[0] != schema {
				t.Errorf("a serves %v after the rollback", got)
			}
			if got := c.active(c.b); len(got) != 0 {
				t.Errorf("b still serves %v after the rollback", got)
			}
			if got := c.schemas(c.b, schema+"%"); len(got) != 1 || !strings.HasPrefix(got[0], schema+"old") {
				t.Errorf("b holds %v after the rollback; want the renamed copy only", got)
			}
			c.comment(c.a, schema, "orders; region 4")
			// The fence is gone: the application writes on a again.
			pgtest.Exec(t, c.a, "INSERT INTO "+schema+".events VALUES (2, '2026-06-01')")
			c.noArtifacts()
		})
	}
}

// checkWindow checks that the source on a is in its rollback window:
// inactive, marked, fenced against writes through every path, and
// subscribed to the new home.
func (c *cluster) checkWindow(schema, to string) {
	c.t.Helper()
	ctx := context.Background()
	var comment string
	if err := c.a.QueryRow(ctx, "SELECT obj_description($1::regnamespace, 'pg_namespace')", schema).Scan(&comment); err != nil {
		c.t.Fatal(err)
	}
	w, ok := names.ParseWindowMark(comment)
	if !ok || w.To != to || w.Until.Sub(w.Since) != time.Hour {
		c.t.Errorf("window mark %q", comment)
	}
	if got := c.active(c.a); len(got) != 0 {
		c.t.Errorf("a serves %v during the window", got)
	}
	for _, stmt := range []string{
		"INSERT INTO " + schema + ".items (val) VALUES (1)",
		"UPDATE " + schema + ".items SET val = 0 WHERE id = 1",
		"DELETE FROM " + schema + ".items WHERE id = 1",
		"TRUNCATE " + schema + ".items",
		"INSERT INTO " + schema + ".events VALUES (9, '2026-02-01')",
		"INSERT INTO " + schema + ".events_2026 VALUES (9, '2026-02-01')",
	} {
		_, err := c.a.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "25006" || !strings.Contains(pgErr.Message, "moved to "+to) {
			c.t.Errorf("%s during the window: %v; want the fence's error", stmt, err)
		}
	}
	var subs int
	if err := c.a.QueryRow(ctx, "SELECT count(*) FROM pg_subscription WHERE subname = $1", names.MoveSubscription(schema)).Scan(&subs); err != nil || subs != 1 {
		c.t.Errorf("reverse subscription on a: %d (%v)", subs, err)
	}
}

func (c *cluster) comment(conn *pgx.Conn, schema, want string) {
	c.t.Helper()
	var got *string
	if err := conn.QueryRow(context.Background(), "SELECT obj_description($1::regnamespace, 'pg_namespace')", pgx.Identifier{schema}.Sanitize()).Scan(&got); err != nil {
		c.t.Fatal(err)
	}
	if got == nil || *got != want {
		c.t.Errorf("comment of %s = %v, want %q", schema, got, want)
	}
}

// TestRollbackAfterSchemaChange: a column added on the new home during the
// window stops the stream back (logical replication carries no DDL). The
// rollback must refuse, saying how to go on, and succeed once the same
// change is made on the old home, with the rows written in between.
func TestRollbackAfterSchemaChange(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	schema := c.shard(4, writerTable)
	spec := c.spec(4, true)
	spec.Options.RollbackWindow = time.Hour
	if _, err := Move(ctx, spec, nil, nil); err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, c.b, "ALTER TABLE "+schema+".items ADD COLUMN extra text; INSERT INTO "+schema+".items (val, extra) VALUES (7, 'after')")
	back := c.rollbackSpec(4)
	back.Options.StallTimeout = 10 * time.Second
	_, err := Move(ctx, back, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "Make the same change to "+schema+" on a") || !strings.Contains(err.Error(), "--close") {
		t.Fatalf("rollback after a column was added on b: %v", err)
	}
	if got := c.active(c.b); len(got) != 1 || got[0] != schema {
		t.Errorf("b serves %v after the refused rollback", got)
	}
	pgtest.Exec(t, c.a, "ALTER TABLE "+schema+".items ADD COLUMN extra text")
	if _, err := Move(ctx, back, nil, nil); err != nil {
		t.Fatalf("rollback after the same change on a: %v", err)
	}
	var note string
	if err := c.a.QueryRow(ctx, "SELECT extra FROM "+schema+".items WHERE val = 7 AND extra IS NOT NULL").Scan(&note); err != nil || note != "after" {
		t.Errorf("the row written on b after the change: %q (%v)", note, err)
	}
	c.noArtifacts()
}
