package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestRollbackCrashAtEveryPhase moves a shard with a rollback window and
// rolls it back, under a writer that routes through the active lists,
// killing pgms (SIGKILL) at one point of the move's window set-up or of
// the rollback and running the same command again: every acknowledged
// write, those made on the new home included, must end on the old home,
// which alone serves the shard, with nothing of either stream left.
func TestRollbackCrashAtEveryPhase(t *testing.T) {
	bin := pgmsBinary(t)
	tests := []struct {
		point    string
		rollback bool // the kill is in the rollback, not in the move
	}{
		{"move.window.prepared", false},
		{"move.cutover.committed", false},
		{"move.finish.end", false},
		{"move.cleanup.end", false},
		{"move.window.advanced", false},
		{"move.preflight.end", true},
		{"move.catch-up.end", true},
		{"move.cutover.locked", true},
		{"move.cutover.before-commit", true},
		{"move.cutover.committed", true},
		{"move.finish.end", true},
		{"move.cleanup.end", true},
	}
	for _, tt := range tests {
		name := "move/" + tt.point
		if tt.rollback {
			name = "rollback/" + tt.point
		}
		t.Run(name, func(t *testing.T) {
			src, dst, a, b := moveNodes(t)
			w := startItemsWriter(t, src, dst)
			defer w.Stop()
			move := append(moveArgsFor(src, dst), "--rollback-window=1h", "--lock-timeout=30s")
			back := []string{"rollback", "--shard=1", "--dsn=" + src.DSN, "--dsn=" + dst.DSN, "--lock-timeout=30s"}
			killedAt := func(args []string) {
				t.Helper()
				cmd := exec.Command(bin, args...)
				cmd.Env = append(os.Environ(), "PGMS_FAULT="+tt.point)
				out, err := cmd.CombinedOutput()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || !exit.Sys().(syscall.WaitStatus).Signaled() {
					t.Fatalf("pgms %s was not killed at %s: %v\n%s", args[0], tt.point, err, out)
				}
				time.Sleep(50 * time.Millisecond)
			}
			run := func(args []string) string {
				t.Helper()
				out, err := exec.Command(bin, args...).CombinedOutput()
				if err != nil {
					t.Fatalf("pgms %s failed: %v\n%s", args[0], err, out)
				}
				return string(out)
			}
			if !tt.rollback {
				killedAt(move)
			}
			run(move)
			windowOpen(t, a)
			// Writes on the new home, which the stream carries back.
			before := w.Written()
			time.Sleep(300 * time.Millisecond)
			if w.Written()-before < 20 {
				t.Errorf("only %d writes on the new home", w.Written()-before)
			}
			if tt.rollback {
				killedAt(back)
			}
			out, err := exec.Command(bin, back...).CombinedOutput()
			switch {
			case tt.point == "move.cleanup.end" && tt.rollback:
				// Killed once all was done: nothing is left to find.
				if err == nil || !strings.Contains(string(out), "no open rollback window") {
					t.Errorf("rollback again after it finished: %v\n%s", err, out)
				}
			case err != nil || !strings.Contains(string(out), "rolled sh0001 back") && !strings.Contains(string(out), "already served"):
				t.Errorf("rollback: %v\n%s", err, out)
			}
			time.Sleep(100 * time.Millisecond)
			st := w.Stop()
			if len(st.Violations) > 0 {
				t.Errorf("writer violations: %v", st.Violations)
			}
			if err := w.Verify(context.Background(), a); err != nil {
				t.Errorf("after a kill at %s: %v", tt.point, err)
			}
			assertRolledBack(t, a, b)
		})
	}
}

// windowOpen checks that the old home holds the shard fenced and
// subscribed to its new home.
func windowOpen(t *testing.T, a *pgx.Conn) {
	t.Helper()
	var marked, subscribed bool
	err := a.QueryRow(context.Background(), `SELECT starts_with(obj_description('sh0001'::regnamespace, 'pg_namespace'), 'pgms: rollback window'),
		EXISTS (SELECT FROM pg_subscription WHERE subname = 'pgms_move_sh0001')`).Scan(&marked, &subscribed)
	if err != nil || !marked || !subscribed {
		t.Fatalf("no open window on the old home: marked %v, subscribed %v, %v", marked, subscribed, err)
	}
}

func assertRolledBack(t *testing.T, a, b *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	var srcActive, dstActive, dstSchemas []string
	a.QueryRow(ctx, "SELECT microsharding.microsharding_list_active_shards()::text[]").Scan(&srcActive)
	b.QueryRow(ctx, "SELECT microsharding.microsharding_list_active_shards()::text[]").Scan(&dstActive)
	b.QueryRow(ctx, "SELECT COALESCE(array_agg(nspname::text), '{}') FROM pg_namespace WHERE nspname LIKE 'sh0001%'").Scan(&dstSchemas)
	if len(srcActive) != 1 || srcActive[0] != "sh0001" || len(dstActive) != 0 {
		t.Errorf("active on the old home %v, on the new home %v", srcActive, dstActive)
	}
	if len(dstSchemas) != 1 || !strings.HasPrefix(dstSchemas[0], "sh0001old") {
		t.Errorf("the new home holds %v; want its renamed copy only", dstSchemas)
	}
	var fences int
	a.QueryRow(ctx, "SELECT count(*) FROM pg_trigger WHERE tgname = 'pgms_rollback_fence'").Scan(&fences)
	if fences != 0 {
		t.Errorf("%d fence triggers left on the old home", fences)
	}
	for _, c := range []*pgx.Conn{a, b} {
		var n int
		c.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_replication_slots WHERE database = current_database())
			+ (SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()))`).Scan(&n)
		if n != 0 {
			t.Errorf("%d replication objects left on port %d", n, c.Config().Port)
		}
	}
}
