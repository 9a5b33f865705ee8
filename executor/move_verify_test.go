package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/internal/bench/move/workload"
	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/names"
)

// smallChunks cuts even the tests' small tables into several chunks.
func smallChunks(t *testing.T) {
	old, oldResume := verifyChunkBytes, resumeChunkBytes
	verifyChunkBytes, resumeChunkBytes = 16<<10, 8<<10
	t.Cleanup(func() { verifyChunkBytes, resumeChunkBytes = old, oldResume })
}

// TestVerifyCatchesTampering changes the destination's copy after its rows
// are in and before the gate compares it (as a stray writer, or a bug of
// the copy, would): the move must stop before streaming, name the table
// and the chunk, keep the copy for inspection and leave the source
// serving, without slot or publication. Running the move again starts a
// fresh copy, which passes.
func TestVerifyCatchesTampering(t *testing.T) {
	smallChunks(t)
	for i, tc := range []struct {
		name   string
		level  string
		tamper string // on the destination, S. the shard
		caught bool
	}{
		{"inserted", VerifyFull, `INSERT INTO S.items (id, val) VALUES (2500, 7)`, true},
		{"deleted", VerifyFull, `DELETE FROM S.items WHERE id = 1700`, true},
		{"altered", VerifyFull, `UPDATE S.items SET note = 'changed' WHERE id = 2200`, true},
		{"inserted, counted", VerifyCount, `INSERT INTO S.items (id, val) VALUES (2500, 7)`, true},
		// Counting cannot see a changed value: that is what full is for.
		{"altered, counted", VerifyCount, `UPDATE S.items SET note = 'changed' WHERE id = 2200`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			n := 51 + i
			schema := c.shard(n, `CREATE TABLE items (id bigint PRIMARY KEY, val bigint NOT NULL, note text);
				INSERT INTO items SELECT g, g, 'n' || g FROM generate_series(1, 3000) g WHERE g <> 2500;
				ANALYZE items`)
			ctx := fault.WithHook(context.Background(), func(point string) error {
				if point == "move.backfill.indexed" {
					_, err := c.b.Exec(context.Background(), strings.ReplaceAll(tc.tamper, "S.", schema+"."))
					return err
				}
				return nil
			})
			spec := c.spec(n, true)
			spec.Options.Verify = tc.level
			ev := newEvents()
			_, err := Move(ctx, spec, nil, ev)
			if !tc.caught {
				if err != nil {
					t.Fatalf("%v\n%s", err, ev.text())
				}
				return
			}
			var mismatch *MismatchError
			if !errors.As(err, &mismatch) {
				t.Fatalf("want a verification mismatch, got %v\n%s", err, ev.text())
			}
			if len(mismatch.Chunks) != 1 || mismatch.Chunks[0].Table != "items" || mismatch.Chunks[0].Of < 2 {
				t.Errorf("want one chunk of items out of several, got %+v", mismatch.Chunks)
			}
			for _, want := range []string{`table "items" chunk `, "kept on b", "still served by a"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			t.Log(err)
			// Both copies are there; only the source serves the shard, and
			// nothing streams into the copy.
			if got := c.active(c.a); len(got) != 1 || got[0] != schema {
				t.Errorf("active on a: %v", got)
			}
			if got := c.active(c.b); len(got) != 0 {
				t.Errorf("active on b: %v", got)
			}
			var comment string
			if err := c.b.QueryRow(context.Background(), "SELECT obj_description(to_regnamespace($1), 'pg_namespace')", schema).Scan(&comment); err != nil || !names.IsCopyMark(comment) {
				t.Errorf("the copy on b is gone or unmarked (%q, %v)", comment, err)
			}
			var objects int
			c.a.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication)").Scan(&objects)
			var subs int
			c.b.QueryRow(context.Background(), "SELECT count(*) FROM pg_subscription").Scan(&subs)
			if objects+subs != 0 {
				t.Errorf("%d slots and publications on a, %d subscriptions on b", objects, subs)
			}
			// Again, untampered: a fresh copy, verified, switched.
			res, err := Move(context.Background(), spec, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verify == nil || res.Verify.Skipped != "" || res.Verify.Rows != 2999 {
				t.Errorf("the second run's verification: %+v", res.Verify)
			}
			c.noArtifacts()
		})
	}
}

// TestVerifyUnderChurn runs the gate 20 times while every table of a shard
// with every kind of column changes on the source, with pauses that put
// changes between the snapshot, the copy, the index builds and the
// comparison: it must never report a difference. The move stops right
// after the comparison, which is all that is tested here.
func TestVerifyUnderChurn(t *testing.T) {
	smallChunks(t)
	c := newCluster(t)
	const n = 61
	schema := c.shard(n, churnShard+"; ANALYZE")
	churn, err := workload.StartChurn(context.Background(), workload.ChurnConfig{
		DSN: c.src.DSN, Statements: churnStatements(schema), MaxArg: 4000, Interval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer churn.Stop()
	errStop := errors.New("stop after the verification")
	points := []string{"move.replicate.slot", "move.backfill.table", "move.backfill.copied", "move.backfill.indexed", "move.backfill.verify"}
	var chunks, typed int
	for run := range 20 {
		pause := points[run%len(points)]
		ctx := fault.WithHook(context.Background(), func(point string) error {
			switch point {
			case pause:
				time.Sleep(30 * time.Millisecond)
			case "move.backfill.verified":
				return errStop
			}
			return nil
		})
		spec := c.spec(n, true)
		spec.Options.Verify = VerifyFull
		if run%2 == 1 {
			spec.Options.CopyRangeBytes = 32 << 10 // page ranges too
		}
		ev := newEvents()
		res, err := Move(ctx, spec, nil, ev)
		if !errors.Is(err, errStop) {
			t.Fatalf("run %d (pause at %s): %v\n%s", run, pause, err, ev.text())
		}
		if res.Verify == nil || res.Verify.Chunks < len(churnTables) {
			t.Fatalf("run %d: verification %+v", run, res.Verify)
		}
		chunks += res.Verify.Chunks
		typed++
	}
	ops, _ := churn.Stop()
	t.Logf("20 runs, %d chunks compared, %d changes on the source meanwhile", chunks, ops)
	if ops < 200 {
		t.Errorf("only %d changes on the source", ops)
	}
	c.noArtifacts()
	if got := c.active(c.a); fmt.Sprint(got) != "["+schema+"]" {
		t.Errorf("active on a: %v", got)
	}
}
