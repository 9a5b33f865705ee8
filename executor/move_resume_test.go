package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/bench/move/workload"
	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/names"
)

// TestContinueInterruptedCopy interrupts a fast copy of a multi-table
// shard at several points, with and without changes on the source, and
// runs the move again: the kept copy is compared with a fresh snapshot,
// only what differs is copied again, the gate verifies the result, and
// the moved shard equals the source with nothing left behind. A copy
// interrupted once it streams keeps its subscription and continues from
// the catch-up; a second interruption, during the comparison, is
// continued too.
func TestContinueInterruptedCopy(t *testing.T) {
	smallChunks(t)
	for i, tc := range []struct {
		name   string
		points []string // one interruption per point, then a run to the end
		churn  bool
		ranges bool // page ranges: tables are left half-copied
	}{
		{name: "quiet, tables half-copied", points: []string{"move.backfill.table"}, ranges: true},
		{name: "rows copied", points: []string{"move.backfill.copied"}, churn: true},
		{name: "indexed", points: []string{"move.backfill.indexed"}, churn: true, ranges: true},
		{name: "streaming", points: []string{"move.backfill.end"}, churn: true},
		{name: "twice", points: []string{"move.backfill.table", "move.backfill.replaced"}, churn: true, ranges: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			n := 71 + i
			schema := c.shard(n, churnShard+"; ANALYZE")
			var churn *workload.Churn
			if tc.churn {
				var err error
				churn, err = workload.StartChurn(context.Background(), workload.ChurnConfig{
					DSN: c.src.DSN, Statements: churnStatements(schema), MaxArg: 4000, Interval: 2 * time.Millisecond,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer churn.Stop()
			}
			spec := c.spec(n, true)
			spec.Options.KeepCopyBytes = 1
			spec.Options.CopyWorkers = 2
			if tc.ranges {
				spec.Options.CopyRangeBytes = 32 << 10
			}
			for _, point := range tc.points {
				ctx, cancel := context.WithCancel(context.Background())
				ev := newEvents()
				_, err := Move(fault.WithHook(ctx, func(at string) error {
					if at == point {
						cancel()
					}
					return nil
				}), spec, nil, ev)
				cancel()
				if !errors.Is(err, ErrInterrupted) {
					t.Fatalf("interrupted at %s: %v\n%s", point, err, ev.text())
				}
				if !strings.Contains(ev.text(), "kept") {
					t.Errorf("interrupted at %s, the copy was not kept:\n%s", point, ev.text())
				}
				var comment string
				if err := c.b.QueryRow(context.Background(), "SELECT obj_description(to_regnamespace($1), 'pg_namespace')", schema).Scan(&comment); err != nil || !names.IsCopyMark(comment) {
					t.Fatalf("after an interruption at %s the copy on b is gone or unmarked (%q, %v)", point, comment, err)
				}
				var subs int
				c.b.QueryRow(context.Background(), "SELECT count(*) FROM pg_subscription").Scan(&subs)
				if want := map[bool]int{true: 1, false: 0}[point == "move.backfill.end"]; subs != want {
					t.Errorf("after an interruption at %s: %d subscriptions, want %d", point, subs, want)
				}
				if got := c.active(c.a); fmt.Sprint(got) != "["+schema+"]" {
					t.Errorf("active on a: %v", got)
				}
			}
			ev := newEvents()
			res, err := Move(context.Background(), spec, nil, ev)
			if err != nil {
				t.Fatalf("%v\n%s", err, ev.text())
			}
			if churn != nil {
				ops, _ := churn.Stop()
				t.Logf("%d changes on the source", ops)
			}
			switch {
			case tc.points[0] == "move.backfill.end":
				if res.Resume != nil {
					t.Errorf("a streaming copy was compared again: %s", res.Resume)
				}
			case res.Resume == nil:
				t.Fatalf("the copy was not continued:\n%s", ev.text())
			default:
				t.Log(res.Resume)
				if res.Verify == nil || res.Verify.Skipped != "" {
					t.Errorf("not verified: %+v", res.Verify)
				}
				// Without changes on the source, only what the
				// interruption cut through is copied again.
				if !tc.churn && (res.Resume.Kept == 0 || res.Resume.ReplacedBytes > res.Resume.KeptBytes) {
					t.Errorf("without changes on the source most of the kept copy stays: %s", res.Resume)
				}
			}
			c.sameContent(res.OldSchema, schema, churnTables...)
			for _, tbl := range churnTables {
				var dups int
				name := pgx.Identifier{schema, tbl}.Sanitize()
				if err := c.b.QueryRow(context.Background(), "SELECT count(*) - count(DISTINCT x) FROM "+name+" x").Scan(&dups); err != nil || dups != 0 {
					t.Errorf("%s: %d duplicate rows (%v)", name, dups, err)
				}
			}
			// Every index and constraint is there once.
			var indexes int
			c.b.QueryRow(context.Background(), "SELECT count(*) FROM pg_indexes WHERE schemaname = $1", schema).Scan(&indexes)
			var want int
			c.a.QueryRow(context.Background(), "SELECT count(*) FROM pg_indexes WHERE schemaname = $1", res.OldSchema).Scan(&want)
			if indexes != want {
				t.Errorf("%d indexes on the destination, %d on the source", indexes, want)
			}
			c.noArtifacts()
		})
	}
}
