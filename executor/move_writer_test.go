package executor

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/bench/move/workload"
	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/state"
)

const writerTable = `
	CREATE TABLE items (id bigserial PRIMARY KEY, val bigint NOT NULL, note text DEFAULT 'x');
	CREATE INDEX items_val ON items (val);
	INSERT INTO items (val) SELECT g FROM generate_series(1, 3000) g`

func (c *cluster) startWriter(schema string, every time.Duration) *workload.Writer {
	c.t.Helper()
	w, err := workload.Start(context.Background(), workload.Config{
		DSNs: []string{c.src.DSN, c.dst.DSN}, Schema: schema, Table: "items",
		Interval: every, UpdateShare: 0.4,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { w.Stop() })
	return w
}

func checkWriter(t *testing.T, w *workload.Writer, dst *pgx.Conn) workload.Stats {
	t.Helper()
	st := w.Stop()
	t.Logf("writer: %d inserts, %d updates, %d retries, latency p50 %v p99 %v max %v, errors %v",
		st.Inserts, st.Updates, st.Retries, st.P50, st.P99, st.Max, st.Errors)
	if len(st.Violations) > 0 {
		t.Errorf("writer saw violations: %v", st.Violations)
	}
	if st.Inserts < 50 {
		t.Errorf("writer made only %d inserts", st.Inserts)
	}
	if err := w.Verify(context.Background(), dst); err != nil {
		t.Error(err)
	}
	return st
}

// TestMoveUnderWriter moves a shard while an application writes to it,
// finding it through the active lists: every acknowledged write must be on
// the destination afterwards, and the destination's content must equal the
// source's at the cutover plus what was written after.
func TestMoveUnderWriter(t *testing.T) {
	c := newCluster(t)
	schema := c.shard(3, writerTable)
	w := c.startWriter(schema, 3*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	res, err := Move(context.Background(), c.spec(3, true), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pause %v core %v lock wait %v retries %d", res.Pause, res.Core, res.LockWait, res.Retries)
	time.Sleep(300 * time.Millisecond)
	// The rows the source held at the cutover are on the destination
	// unchanged unless the writer changed them afterwards, which Verify
	// covers; the count and ordered content must match for the initial
	// rows the writer never touches.
	st := checkWriter(t, w, c.b)
	if st.Max > 2*time.Second {
		t.Errorf("a write waited %v", st.Max)
	}
	old := res.OldSchema
	na, sa := checksum(t, c.a, "(SELECT * FROM "+pgx.Identifier{old, "items"}.Sanitize()+" WHERE id <= 3000)")
	nb, sb := checksum(t, c.b, "(SELECT * FROM "+pgx.Identifier{schema, "items"}.Sanitize()+" WHERE id <= 3000)")
	if na != 3000 || na != nb || sa != sb {
		t.Errorf("initial rows differ: source %d %s, destination %d %s", na, sa, nb, sb)
	}
	if got := c.active(c.a); len(got) != 0 {
		t.Errorf("source still serves %v", got)
	}
	if got := c.active(c.b); len(got) != 1 || got[0] != schema {
		t.Errorf("destination serves %v", got)
	}
	c.noArtifacts()
}

// TestMoveBehindLongTransaction holds a row lock on the shard in an open
// transaction: the cutover must give up each attempt after its lock
// timeout, so that writers to the shard are delayed by at most about that
// long, and succeed once the transaction ends.
func TestMoveBehindLongTransaction(t *testing.T) {
	c := newCluster(t)
	schema := c.shard(4, writerTable)
	blocker, err := pgx.Connect(context.Background(), c.src.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close(context.Background())
	w := c.startWriter(schema, 3*time.Millisecond)
	// The transaction opens once the copy is done: creating the slot waits
	// for every transaction open at that moment.
	var tx pgx.Tx
	before := 0
	ctx := fault.WithHook(context.Background(), func(point string) error {
		if point != "move.cutover.begin" {
			return nil
		}
		var err error
		if tx, err = blocker.Begin(context.Background()); err != nil {
			return err
		}
		if _, err := tx.Exec(context.Background(), "UPDATE "+schema+".items SET note = 'held' WHERE id = 1"); err != nil {
			return err
		}
		before = w.Written()
		return nil
	})

	ev := newEvents()
	spec := c.spec(4, true)
	spec.Options.LockTimeout = 50 * time.Millisecond
	done := make(chan error, 1)
	var res MoveResult
	go func() {
		var err error
		res, err = Move(ctx, spec, nil, ev)
		done <- err
	}()
	// Let the cutover fail a few times against the open transaction.
	deadline := time.Now().Add(20 * time.Second)
	retries := 0
	var lines []string
	for retries < 3 && time.Now().Before(deadline) {
		for _, e := range ev.all() {
			lines = append(lines, FormatEvent(e))
			if e.Kind == EventRetry {
				retries++
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if retries < 3 {
		t.Fatalf("saw %d retries; events:\n%s", retries, strings.Join(lines, "\n"))
	}
	// The retry lines name the session in the way.
	named := false
	for _, l := range lines {
		named = named || strings.Contains(l, "retry") && strings.Contains(l, "client backend") && strings.Contains(l, "UPDATE")
	}
	if !named {
		t.Errorf("retries do not name the blocking transaction:\n%s", strings.Join(lines, "\n"))
	}
	during := w.LatenciesFrom(before)
	tx.Rollback(context.Background())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("moved after %d retries; pause %v", res.Retries, res.Pause)
	for _, e := range ev.all() {
		lines = append(lines, FormatEvent(e))
	}
	t.Log("\n" + strings.Join(lines, "\n"))
	var worst time.Duration
	for _, l := range during {
		worst = max(worst, l)
	}
	// Writes queue behind the waiting LOCK for at most the lock timeout;
	// the margin covers scheduling on a loaded two-core machine.
	// (The margin is wide: on a busy two-core machine a write's own routing
	// can take a hundred milliseconds; a failed attempt held to the pause
	// budget would show as two seconds.)
	if limit := spec.Options.LockTimeout + 200*time.Millisecond; worst > limit {
		t.Errorf("a write waited %v during the failed attempts (limit %v)", worst, limit)
	}
	if len(during) < 20 {
		t.Errorf("only %d writes during the failed attempts", len(during))
	}
	t.Logf("%d writes during the failed attempts, slowest %v", len(during), worst)
	if res.Retries < 3 {
		t.Errorf("result reports %d retries", res.Retries)
	}
	checkWriter(t, w, c.b)
	c.noArtifacts()
}

// TestMovesInParallel moves two shards between the same nodes at once,
// each under a writer, sharing one journal, as apply does.
func TestMovesInParallel(t *testing.T) {
	c := newCluster(t)
	s1 := c.shard(21, writerTable)
	s2 := c.shard(22, writerTable)
	w1 := c.startWriter(s1, 3*time.Millisecond)
	w2 := c.startWriter(s2, 3*time.Millisecond)
	journal, err := state.OpenJournal(context.Background(), c.src.DSN, "microsharding")
	if err != nil {
		t.Fatal(err)
	}
	defer journal.Close(context.Background())
	if _, err := journal.BeginRun(context.Background(), state.ThisProcess("apply", "")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, n := range []int{21, 22} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Move(context.Background(), c.spec(n, true), journal, nil)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	checkWriter(t, w1, c.b)
	checkWriter(t, w2, c.b)
	if got := c.active(c.b); len(got) != 2 {
		t.Errorf("destination serves %v", got)
	}
	runs, err := state.ReadRuns(context.Background(), c.a, "microsharding", 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || len(runs[0].Steps) != 2 {
		t.Fatalf("journal: %+v", runs)
	}
	for _, s := range runs[0].Steps {
		if s.Outcome != state.OutcomeSucceeded || s.PauseMS == nil {
			t.Errorf("step %s: %s, pause %v", s.Schema, s.Outcome, s.PauseMS)
		}
	}
	c.noArtifacts()
}
