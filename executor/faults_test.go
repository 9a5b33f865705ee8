package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// TestSecondMoveOfAShardIsRefused: while a move of a shard copies, a second
// move of the same shard — to another destination, or out of the first
// move's destination — is refused at once, naming the first, and touches
// nothing; the first finishes without losing a write. (Two moves once
// raced here: the second dropped the first's slot and publication and made
// new ones under the same names, and the first subscribed to them, losing
// every write committed between the two snapshots.)
func TestSecondMoveOfAShardIsRefused(t *testing.T) {
	c := newCluster(t)
	schema := c.shard(15, writerTable)
	third := pgtest.Database(t)
	if _, err := sql.Install(context.Background(), pgtest.Connect(t, third.DSN), sql.Options{}); err != nil {
		t.Fatal(err)
	}
	w := c.startWriter(schema, 3*time.Millisecond)
	ctx, p := pauseAt("move.backfill.copied")
	first := runMove(ctx, c.spec(15, true), nil)
	p.wait(t)

	slotsBefore := c.schemas(c.a, "%") // any change on the source shows below
	for _, spec := range []MoveSpec{
		{Shard: 15, Activate: true, From: Endpoint{Name: "a", DSN: c.src.DSN}, To: Endpoint{Name: "c", DSN: third.DSN}},
		{Shard: 15, Activate: true, From: Endpoint{Name: "b", DSN: c.dst.DSN}, To: Endpoint{Name: "c", DSN: third.DSN}},
	} {
		began := time.Now()
		_, err := Move(context.Background(), spec, nil, nil)
		if !errors.Is(err, state.ErrClaimHeld) || time.Since(began) > 5*time.Second {
			t.Fatalf("second move %s → %s: %v (after %v)", spec.From.Name, spec.To.Name, err, time.Since(began))
		}
		if !strings.Contains(err.Error(), "shard 15 is claimed on node") || !strings.Contains(err.Error(), "move a → b") {
			t.Errorf("the refusal does not name the running move: %v", err)
		}
	}
	var slots int
	c.a.QueryRow(context.Background(), "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'pgms_move_sh0015_%'").Scan(&slots)
	if slots != 1 || len(c.schemas(c.a, "%")) != len(slotsBefore) {
		t.Errorf("the refused moves changed the source: %d slots", slots)
	}
	if got := c.schemas(pgtest.Connect(t, third.DSN), "sh%"); len(got) != 0 {
		t.Errorf("the refused moves created %v", got)
	}
	p.go_()
	(<-first).must(t)
	checkWriter(t, w, c.b)
	c.noArtifacts()
}

// TestMoveRefusesTablesChangedDuringTheMove: a table created in the shard
// during the move, or a column added to one, is neither copied nor
// published; the move stops before the cutover, naming the change, and
// never switches: the rows written there stay served by the source. Run
// again, the move takes them along. Writers are not stalled meanwhile.
func TestMoveRefusesTablesChangedDuringTheMove(t *testing.T) {
	for _, tt := range []struct {
		name, ddl, want string
	}{
		{"new table", `CREATE TABLE %[1]s.newt (id bigserial PRIMARY KEY, v int); INSERT INTO %[1]s.newt (v) SELECT g FROM generate_series(1, 500) g`,
			`table "%s"."newt" was created on a after the copy began`},
		{"new column", `ALTER TABLE %[1]s.items ADD COLUMN extra int NOT NULL DEFAULT 7; UPDATE %[1]s.items SET extra = 8 WHERE id <= 10`,
			`table "%s"."items" changed on a after the copy began (now: id bigint, val bigint, note text, extra integer`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t)
			schema := c.shard(9, writerTable)
			w := c.startWriter(schema, 3*time.Millisecond)
			ctx := hookAt("move.catch-up.end", func() error {
				_, err := c.a.Exec(context.Background(), fmt.Sprintf(tt.ddl, schema))
				time.Sleep(300 * time.Millisecond) // writers go on meanwhile
				return err
			})
			before := w.Written()
			_, err := Move(ctx, c.spec(9, true), nil, nil)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf(tt.want, schema)) || !strings.Contains(err.Error(), "starts over") {
				t.Fatalf("move: %v", err)
			}
			var worst time.Duration
			for _, l := range w.LatenciesFrom(before) {
				worst = max(worst, l)
			}
			if worst > 500*time.Millisecond {
				t.Errorf("a write waited %v while the move found the change", worst)
			}
			if got := c.active(c.a); len(got) != 1 {
				t.Errorf("source serves %v", got)
			}
			if got := c.schemas(c.b, "sh%"); len(got) != 0 {
				t.Errorf("destination kept %v", got)
			}
			c.noArtifacts()
			// Run again: the new definition moves along.
			res, err := Move(context.Background(), c.spec(9, true), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkWriter(t, w, c.b)
			if strings.HasPrefix(tt.name, "new table") {
				c.sameContent(res.OldSchema, schema, "newt")
			}
			c.noArtifacts()
		})
	}
}

// TestCleanupSparesARunningMove: pgms cleanup during a move leaves the
// move's slot, publication, subscription and copy alone (a running run
// holds the shard), and the move finishes.
func TestCleanupSparesARunningMove(t *testing.T) {
	c := newCluster(t)
	schema := c.shard(16, writerTable)
	w := c.startWriter(schema, 5*time.Millisecond)
	ctx, p := pauseAt("move.backfill.copied")
	move := runMove(ctx, c.spec(16, true), nil)
	p.wait(t)
	nodes := []state.NodeSpec{{Name: "a", DSN: c.src.DSN}, {Name: "b", DSN: c.dst.DSN}}
	live := state.Refresh(context.Background(), nodes, state.RefreshOptions{})
	verdicts := live.Triage(state.CleanupPolicy{RetainOld: time.Hour})
	kept := 0
	for _, v := range verdicts {
		if v.Leftover.Shard == 16 {
			if v.Drop || !strings.Contains(v.Reason, "holds shard 16") {
				t.Errorf("%s on %s: drop %v (%s)", v.Leftover, v.Node, v.Drop, v.Reason)
			}
			kept++
		}
	}
	if kept < 3 { // slot, publication, copy
		t.Errorf("cleanup saw %d objects of the move: %+v", kept, verdicts)
	}
	// Even a cleanup told to drop them refuses: it cannot claim the shard.
	var all []state.Verdict
	for _, v := range verdicts {
		v.Drop = true
		all = append(all, v)
	}
	na, nb := openNode(t, c.src.DSN), openNode(t, c.dst.DSN)
	outcomes, err := CleanupAll(context.Background(), map[string]*pgutil.Node{"a": na, "b": nb}, all, CleanupSpec{RetainOld: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range outcomes {
		if o.Dropped {
			t.Errorf("cleanup dropped %s on %s during the move", o.Leftover, o.Node)
		}
	}
	p.go_()
	(<-move).must(t)
	checkWriter(t, w, c.b)
	c.noArtifacts()
}

// TestUndoSurvivesLostSessions: the move's sessions on the destination are
// ended just as it fails; the undo reconnects, takes its claim back and
// removes everything, and says so only after checking.
func TestUndoSurvivesLostSessions(t *testing.T) {
	c := newCluster(t)
	c.shard(17, writerTable)
	ev := newEvents()
	ctx := hookAt("move.backfill.copied", func() error {
		terminate(t, c.b, pgmsSessions(t, c.b, "%"))
		return errors.New("injected failure")
	})
	_, err := Move(ctx, c.spec(17, true), nil, ev)
	if err == nil || !strings.Contains(err.Error(), "injected failure") || strings.Contains(err.Error(), "undo failed") {
		t.Fatalf("move: %v\n%s", err, ev.text())
	}
	if !strings.Contains(ev.text(), "undone: sh0017 is on a as before (active), and nothing of the move is left on either node") {
		t.Errorf("undo not verified:\n%s", ev.text())
	}
	if got := c.schemas(c.b, "sh%"); len(got) != 0 {
		t.Errorf("destination kept %v", got)
	}
	c.noArtifacts()
}

// TestCutoverSurvivesALostSession: the cutover's session is ended while it
// holds the lock: the server rolls the attempt back, and the move tries
// again without redoing the copy.
func TestCutoverSurvivesALostSession(t *testing.T) {
	c := newCluster(t)
	schema := c.shard(18, writerTable)
	w := c.startWriter(schema, 3*time.Millisecond)
	ev := newEvents()
	ctx := hookAt("move.cutover.locked", func() error {
		var pid int32
		err := c.a.QueryRow(context.Background(), `SELECT pid FROM pg_locks WHERE relation = $1::regclass AND mode = 'ExclusiveLock' AND granted`,
			pgx.Identifier{schema, "items"}.Sanitize()).Scan(&pid)
		if err != nil {
			return err
		}
		terminate(t, c.a, []int32{pid})
		return nil
	})
	res, err := Move(ctx, c.spec(18, true), nil, ev)
	if err != nil {
		t.Fatalf("move: %v\n%s", err, ev.text())
	}
	if res.Retries < 1 || strings.Contains(ev.text(), "undo") || strings.Count(ev.text(), "copying 2 tables") > 1 {
		t.Errorf("retries %d, events:\n%s", res.Retries, ev.text())
	}
	checkWriter(t, w, c.b)
	c.noArtifacts()
}

// TestSlotInvalidatedDuringTheCopy: the source invalidates the move's slot
// (max_slot_wal_keep_size) while the copy runs: the move says so at once
// and undoes itself, instead of waiting for a stream that cannot come.
func TestSlotInvalidatedDuringTheCopy(t *testing.T) {
	c := newCluster(t)
	c.shard(19, writerTable)
	admin := pgtest.Connect(t, pgtest.Servers(t)[0].DSN("postgres"))
	pgtest.Exec(t, admin, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
	pgtest.Exec(t, admin, "SELECT pg_reload_conf()")
	t.Cleanup(func() {
		pgtest.Exec(t, admin, "ALTER SYSTEM RESET max_slot_wal_keep_size")
		pgtest.Exec(t, admin, "SELECT pg_reload_conf()")
	})
	ctx := hookAt("move.backfill.copied", func() error {
		// Writes elsewhere push the slot past what the source keeps.
		for range 3 {
			if _, err := admin.Exec(context.Background(), `CREATE TEMPORARY TABLE IF NOT EXISTS filler AS SELECT 1 AS x;
				INSERT INTO filler SELECT g FROM generate_series(1, 200000) g; SELECT pg_switch_wal(); CHECKPOINT`); err != nil {
				return err
			}
		}
		return nil
	})
	began := time.Now()
	_, err := Move(ctx, c.spec(19, true), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "was invalidated") || !strings.Contains(err.Error(), "max_slot_wal_keep_size") {
		t.Fatalf("move: %v", err)
	}
	if time.Since(began) > 60*time.Second {
		t.Errorf("took %v to notice", time.Since(began))
	}
	if got := c.active(c.a); len(got) != 1 {
		t.Errorf("source serves %v", got)
	}
	c.noArtifacts()
}

// TestDestinationDownAfterCommit: the destination stops right after the
// cutover committed: activation is retried until it comes back, and the
// outage is reported for what it is.
func TestDestinationDownAfterCommit(t *testing.T) {
	c := newCluster(t)
	schema := c.shard(20, writerTable)
	w := c.startWriter(schema, 3*time.Millisecond)
	dst := pgtest.Servers(t)[1]
	ev := newEvents()
	ctx := hookAt("move.cutover.committed", func() error {
		dst.Crash()
		go func() {
			time.Sleep(3 * time.Second)
			if err := dst.Restart(context.Background()); err != nil {
				t.Error(err)
			}
		}()
		return nil
	})
	res, err := Move(ctx, c.spec(20, true), nil, ev)
	if err != nil {
		t.Fatalf("move: %v\n%s", err, ev.text())
	}
	if res.Outage < 2*time.Second || !strings.Contains(ev.text(), "served by no node for") {
		t.Errorf("outage %v; events:\n%s", res.Outage, ev.text())
	}
	t.Logf("outage %v, writers blocked at most %v", res.Outage, res.Blocked)
	c.b = pgtest.Connect(t, c.dst.DSN)
	checkWriter(t, w, c.b)
	c.noArtifacts()
}
