package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/state"
)

// nodesBlock declares nodes named by letters, each from its PGMS_DSN_*
// variable.
func nodesBlock(names ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster {\n  migrate_command = [%q]\n}\n", migratePath)
	for _, n := range names {
		fmt.Fprintf(&b, "node %q { dsn = env(%q) }\n", n, config.DSNVariable(n))
	}
	return b.String()
}

var migratePath string

func init() {
	if abs, err := os.Getwd(); err == nil {
		migratePath = abs + "/../../examples/demo/migrate.sh"
	}
}

// TestDeletingANodeBlockMovesItsShards: a node block deleted from the
// files, its shards placed elsewhere, gives moves, never second homes; a
// deleted node that cannot be reached blocks the plan with a message that
// says why; retiring the node is explicit and happens once it is empty.
func TestDeletingANodeBlockMovesItsShards(t *testing.T) {
	dbs := freshCluster(t)
	dir := t.TempDir()
	writeTopology(t, dir, "topology.pgms.hcl", nodesBlock("a", "b", "c")+"shards \"1-2\" { node = \"a\" }\nshards \"5-8\" { node = \"b\" }\n")
	pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
	b := pgtest.Connect(t, dbs[1].DSN)
	pgtest.Exec(t, b, "INSERT INTO sh0005.users (name, email) SELECT 'u' || g, g || '@x' FROM generate_series(1, 300) g")

	// Node b's block goes; its shards are placed on c.
	writeTopology(t, dir, "topology.pgms.hcl", nodesBlock("a", "c")+"shards \"1-2\" { node = \"a\" }\nshards \"5-8\" { node = \"c\" }\n")
	pgms(t, "", "validate", "--config", dir).must(t)
	r := pgms(t, "", "plan", "--config", dir)
	if r.code != 0 || strings.Count(r.stdout, "~ move shard") != 4 || strings.Contains(r.stdout, "allocate") ||
		!strings.Contains(r.stdout, "lives on b, a node registered but no longer in the files") || !strings.Contains(r.stdout, "node b is not in the files, but registered") {
		t.Fatalf("plan without node b: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// While b cannot be reached, nothing is planned, and the message says
	// why, never "remove the node".
	a := pgtest.Connect(t, dbs[0].DSN)
	c := pgtest.Connect(t, dbs[2].DSN)
	pgtest.Exec(t, a, "UPDATE microsharding.pgms_nodes SET dsn = 'postgres://postgres@127.0.0.1:1/app' WHERE name = 'b'")
	pgtest.Exec(t, c, "UPDATE microsharding.pgms_nodes SET dsn = 'postgres://postgres@127.0.0.1:1/app' WHERE name = 'b'")
	r = pgms(t, "", "plan", "--config", dir)
	if r.code != 1 || !strings.Contains(r.stdout, "cannot read node b, which is registered but not in the files") ||
		!strings.Contains(r.stdout, "lost = true") || strings.Contains(r.stdout, "remove the node from the files") {
		t.Fatalf("plan with b unreachable: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	pgtest.Exec(t, a, "UPDATE microsharding.pgms_nodes SET dsn = $1 WHERE name = 'b'", dbs[1].DSN)
	pgtest.Exec(t, c, "UPDATE microsharding.pgms_nodes SET dsn = $1 WHERE name = 'b'", dbs[1].DSN)

	pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
	for i, want := range []string{"{sh0001,sh0002}", "{}", "{sh0005,sh0006,sh0007,sh0008}"} {
		if got := count1(t, dbs[i].DSN, "SELECT microsharding.microsharding_list_active_shards()::text"); got != want {
			t.Errorf("active on %s: %s, want %s", []string{"a", "b", "c"}[i], got, want)
		}
	}
	if got := count1(t, dbs[2].DSN, "SELECT count(*)::text FROM sh0005.users"); got != "300" {
		t.Errorf("rows of sh0005 on c: %s", got)
	}
	// Retiring b: explicit, and only once it holds nothing (its renamed
	// sources go first, with cleanup_after 0).
	writeTopology(t, dir, "topology.pgms.hcl", strings.Replace(nodesBlock("a", "c"), "cluster {", "cluster {\n  cleanup_after = \"0s\"", 1)+
		"removed { node = \"b\" }\nshards \"1-2\" { node = \"a\" }\nshards \"5-8\" { node = \"c\" }\n")
	r = pgms(t, "", "plan", "--config", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "- retire node b") {
		t.Fatalf("plan retiring b: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
	r = pgms(t, "", "plan", "--config", dir, "-detailed-exitcode")
	if r.code != 0 || !strings.Contains(r.stdout, "node b is already retired") {
		t.Errorf("after retiring: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestPlanAndApplyDuringAnApply: while an apply moves a shard, plan names
// the holder and shows the move in progress (no error, no advice to drop a
// copy); a second apply fails at once naming it, or waits with
// -lock-timeout and then finds nothing left to do.
func TestPlanAndApplyDuringAnApply(t *testing.T) {
	bin := pgmsBinary(t)
	dbs := freshCluster(t)
	dir := t.TempDir()
	writeTopology(t, dir, "topology.pgms.hcl", nodesBlock("a", "b", "c")+"shards \"1-4\" { node = \"a\" }\n")
	pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
	writeTopology(t, dir, "topology.pgms.hcl", nodesBlock("a", "b", "c")+"shards \"1-3\" { node = \"a\" }\nshards \"4\" { node = \"c\" }\n")

	first := exec.Command(bin, "apply", "--config", dir, "--auto-approve")
	first.Env = append(os.Environ(), "PGMS_FAULT_PAUSE=move.backfill.copied", "PGMS_FAULT_PAUSE_FOR=8s")
	var firstOut strings.Builder
	first.Stdout, first.Stderr = &firstOut, &firstOut
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	waitRunning(t, dbs[0].DSN, "move")

	r := pgms(t, "", "plan", "--config", dir, "-detailed-exitcode")
	if r.code != 2 || !strings.Contains(r.stdout, "another pgms run holds the run lock") || !strings.Contains(r.stdout, "running: move shard 4 a → c") ||
		!strings.Contains(r.stdout, "shard 4 on a: move a → c (source)") || strings.Contains(r.stdout, "drop the stale one") {
		t.Fatalf("plan during apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = pgms(t, "", "plan", "--config", dir, "-format", "json")
	var p planner.Plan
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.Running == nil || len(p.InProgress) != 2 {
		t.Errorf("json plan during apply: %v\n%s", err, r.stdout)
	}
	began := time.Now()
	r = pgms(t, "", "apply", "--config", dir, "--auto-approve")
	if r.code != 1 || time.Since(began) > 5*time.Second || !strings.Contains(r.stderr, "another pgms run holds the lock") || !strings.Contains(r.stderr, "`apply --config") {
		t.Fatalf("second apply: exit %d after %v\n%s%s", r.code, time.Since(began), r.stdout, r.stderr)
	}
	r = pgms(t, "", "apply", "--config", dir, "--auto-approve", "-lock-timeout=90s")
	if r.code != 0 || !strings.Contains(r.stderr, "Waiting up to 1m30s for the run lock") || !strings.Contains(r.stdout, "No changes") {
		t.Errorf("waiting apply: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first apply: %v\n%s", err, firstOut.String())
	}
	if got := count1(t, dbs[2].DSN, "SELECT microsharding.microsharding_list_active_shards()::text"); got != "{sh0004}" {
		t.Errorf("active on c: %s", got)
	}
}

// waitRunning waits until the journal on the state node shows a running
// step of kind.
func waitRunning(t *testing.T, stateDSN, kind string) {
	t.Helper()
	conn := pgtest.Connect(t, stateDSN)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		st, err := state.ReadLock(context.Background(), conn, "microsharding")
		if err == nil {
			for _, s := range st.Steps {
				if s.Kind == kind {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no running %s step", kind)
}

// TestLockTimeoutMeansTheRunLock: -lock-timeout waits for the run lock, as
// in Terraform; the cutover's wait is --cutover-lock-timeout, refused above
// its maximum because every writer queues behind it; and what writers
// felt is reported as such.
func TestLockTimeoutMeansTheRunLock(t *testing.T) {
	freshCluster(t)
	dir := t.TempDir()
	writeTopology(t, dir, "topology.pgms.hcl", nodesBlock("a", "b", "c")+"shards \"1\" { node = \"a\" }\n")
	r := pgms(t, "", "apply", "--config", dir, "--auto-approve", "--cutover-lock-timeout=20s")
	if r.code != 1 || !strings.Contains(r.stderr, "above the maximum of 1s") || !strings.Contains(r.stderr, "blocks the application") {
		t.Fatalf("cutover lock timeout 20s: exit %d\n%s", r.code, r.stderr)
	}
	pgms(t, "", "apply", "--config", dir, "--auto-approve", "-lock-timeout=20s").must(t)
	writeTopology(t, dir, "topology.pgms.hcl", nodesBlock("a", "b", "c")+"shards \"1\" { node = \"b\" }\n")
	r = pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
	if !strings.Contains(r.stdout, "writers blocked at most") {
		t.Errorf("apply summary:\n%s", r.stdout)
	}
	r = pgms(t, "", "status", "--config", dir).must(t)
	if !strings.Contains(r.stdout, "writers blocked") {
		t.Errorf("status:\n%s", r.stdout)
	}
}

// TestDrainIsVisible: drain = true on a node that the files still place
// shards on is a warning with the command to run, and a pending change.
func TestDrainIsVisible(t *testing.T) {
	freshCluster(t)
	dir := t.TempDir()
	writeTopology(t, dir, "topology.pgms.hcl", nodesBlock("a", "b", "c")+"shards \"1-4\" { node = \"b\" }\n")
	pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
	writeTopology(t, dir, "topology.pgms.hcl", strings.Replace(nodesBlock("a", "b", "c"), `node "b" { dsn = env("PGMS_DSN_B") }`,
		"node \"b\" {\n  dsn   = env(\"PGMS_DSN_B\")\n  drain = true\n}", 1)+"shards \"1-4\" { node = \"b\" }\n")
	r := pgms(t, "", "plan", "--config", dir, "-detailed-exitcode")
	if r.code != 2 || !strings.Contains(r.stdout, "node b is drained but still holds 4 shards") || !strings.Contains(r.stdout, "pgms rebalance --write") {
		t.Errorf("plan with a drain: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = pgms(t, "", "plan", "--config", dir, "-format", "markdown")
	if !strings.Contains(r.stdout, "drained") {
		t.Errorf("markdown:\n%s", r.stdout)
	}
}

// TestReferenceHalfDoneMove builds what pg-microsharding leaves when killed
// during its copy (source active, an inactive copy on the destination, its
// publication, subscription and slot) and has apply finish the move when
// the files place the shard on the destination, or undo it when they keep
// it home.
func TestReferenceHalfDoneMove(t *testing.T) {
	for _, finish := range []bool{true, false} {
		t.Run(map[bool]string{true: "finish", false: "undo"}[finish], func(t *testing.T) {
			dbs := freshCluster(t)
			dir := t.TempDir()
			writeTopology(t, dir, "topology.pgms.hcl", nodesBlock("a", "b", "c")+"shards \"1\" { node = \"a\" }\n")
			pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
			a, b := pgtest.Connect(t, dbs[0].DSN), pgtest.Connect(t, dbs[1].DSN)
			pgtest.Exec(t, a, "INSERT INTO sh0001.users (name, email) SELECT 'u' || g, g || '@x' FROM generate_series(1, 1000) g")
			pgms(t, "", "install", "--dsn", dbs[1].DSN).must(t)
			pgtest.Exec(t, a, "CREATE PUBLICATION pg_microsharding_move_sh0001_pub FOR TABLE sh0001.users")
			pgtest.Exec(t, b, "CREATE SCHEMA sh0001; CREATE TABLE sh0001.users (id bigserial PRIMARY KEY, name text, email text, created_at timestamptz DEFAULT now())")
			pgtest.Exec(t, b, fmt.Sprintf("CREATE SUBSCRIPTION pg_microsharding_move_sh0001_sub CONNECTION '%s' PUBLICATION pg_microsharding_move_sh0001_pub", dbs[0].DSN))
			where := "a"
			if finish {
				where = "b"
			}
			writeTopology(t, dir, "topology.pgms.hcl", nodesBlock("a", "b", "c")+fmt.Sprintf("shards \"1\" { node = %q }\n", where))
			r := pgms(t, "", "plan", "--config", dir)
			want := "pgms takes it over"
			if !finish {
				want = "that pg-microsharding left half-done and the files do not ask for"
			}
			if r.code != 0 || !strings.Contains(r.stdout, want) || strings.Contains(r.stdout, "Error") {
				t.Fatalf("plan: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
			home, other := dbs[1].DSN, dbs[0].DSN
			if !finish {
				home, other = other, home
			}
			if got := count1(t, home, "SELECT count(*)::text FROM sh0001.users"); got != "1000" {
				t.Errorf("rows at home: %s", got)
			}
			if got := count1(t, home, "SELECT microsharding.microsharding_list_active_shards()::text"); got != "{sh0001}" {
				t.Errorf("active at home: %s", got)
			}
			if got := count1(t, other, "SELECT count(*)::text FROM pg_namespace WHERE nspname = 'sh0001'"); got != "0" {
				t.Errorf("sh0001 left on the other node")
			}
			for _, d := range []string{dbs[0].DSN, dbs[1].DSN} {
				if got := count1(t, d, `SELECT ((SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_replication_slots WHERE database = current_database())
					+ (SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())))::text`); got != "0" {
					t.Errorf("%s replication objects left", got)
				}
			}
			pgms(t, "", "plan", "--config", dir, "-detailed-exitcode").must(t)
		})
	}
}

// TestSignalExitCodes: SIGINT exits 130, SIGTERM 143, both at a safe point
// with the move undone.
func TestSignalExitCodes(t *testing.T) {
	bin := pgmsBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		dbs := freshCluster(t)
		dir := t.TempDir()
		writeTopology(t, dir, "topology.pgms.hcl", nodesBlock("a", "b", "c")+"shards \"1\" { node = \"a\" }\n")
		pgms(t, "", "apply", "--config", dir, "--auto-approve").must(t)
		writeTopology(t, dir, "topology.pgms.hcl", nodesBlock("a", "b", "c")+"shards \"1\" { node = \"b\" }\n")
		cmd := exec.Command(bin, "apply", "--config", dir, "--auto-approve")
		cmd.Env = append(os.Environ(), "PGMS_FAULT_PAUSE=move.backfill.copied", "PGMS_FAULT_PAUSE_FOR=60s")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitRunning(t, dbs[0].DSN, "move")
		time.Sleep(200 * time.Millisecond)
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		var exit *exec.ExitError
		want := map[syscall.Signal]int{syscall.SIGINT: 130, syscall.SIGTERM: 143}[sig]
		if !errors.As(err, &exit) || exit.ExitCode() != want || !strings.Contains(out.String(), "interrupted at a safe point") {
			t.Errorf("%v: %v\n%s", sig, err, out.String())
		}
		if got := count1(t, dbs[0].DSN, "SELECT microsharding.microsharding_list_active_shards()::text"); got != "{sh0001}" {
			t.Errorf("%v: active on a: %s", sig, got)
		}
	}
}
