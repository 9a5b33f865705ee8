package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/bench/move/workload"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// pgmsBinary builds the pgms binary once for the crash tests: only a real
// process can be killed mid-move.
func pgmsBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pgms-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "pgms")
		out, err := exec.Command("go", "build", "-o", buildOnce.path, ".").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// moveNodes prepares a source with shard 1 (a table the writer uses, a
// sequence, a foreign key) and an empty destination.
func moveNodes(t *testing.T) (src, dst pgtest.DB, a, b *pgx.Conn) {
	t.Helper()
	dbs := pgtest.Databases(t, 2)
	src, dst = dbs[0], dbs[1]
	a, b = pgtest.Connect(t, src.DSN), pgtest.Connect(t, dst.DSN)
	for _, c := range []*pgx.Conn{a, b} {
		if _, err := sql.Install(context.Background(), c, sql.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	pgtest.Exec(t, a, `SELECT microsharding.microsharding_ensure_exist(1);
		CREATE TABLE sh0001.items (id bigserial PRIMARY KEY, val bigint NOT NULL, note text);
		CREATE TABLE sh0001.tags (id serial PRIMARY KEY, item bigint REFERENCES sh0001.items (id), tag text);
		INSERT INTO sh0001.items (val) SELECT g FROM generate_series(1, 2000) g;
		INSERT INTO sh0001.tags (item, tag) SELECT g, 't' FROM generate_series(1, 500) g;
		SELECT microsharding.microsharding_ensure_active(1)`)
	return src, dst, a, b
}

func moveArgsFor(src, dst pgtest.DB) []string {
	return []string{"move", "--shard=1", "--from=" + src.DSN, "--to=" + dst.DSN, "--activate-on-destination=yes", "--progress=100ms"}
}

// TestMoveCrashAtEveryPhase kills pgms (SIGKILL) at a point of every phase
// while an application keeps writing, then runs the same command again: the
// move must end as if nothing happened, without a lost write or a leftover.
func TestMoveCrashAtEveryPhase(t *testing.T) {
	bin := pgmsBinary(t)
	points := []string{
		"move.preflight.end",
		"move.ddl.end",
		"move.replicate.slot",
		"move.replicate.end",
		"move.backfill.table",   // mid-copy: a table copied, others not yet
		"move.backfill.copied",  // rows copied, no index built
		"move.backfill.indexed", // indexes built, no subscription
		"move.backfill.end",
		"move.catch-up.end",
		"move.cutover.locked",
		"move.cutover.before-commit",
		"move.cutover.committed",
		"move.finish.end",
		"move.cleanup.end",
	}
	for _, point := range points {
		t.Run(point, func(t *testing.T) {
			src, dst, a, b := moveNodes(t)
			w := startItemsWriter(t, src, dst)
			defer w.Stop()

			cmd := exec.Command(bin, moveArgsFor(src, dst)...)
			cmd.Env = append(os.Environ(), "PGMS_FAULT="+point)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || !exit.Sys().(syscall.WaitStatus).Signaled() {
				t.Fatalf("pgms was not killed at %s: %v\n%s", point, err, out)
			}
			time.Sleep(50 * time.Millisecond)
			out, err = exec.Command(bin, moveArgsFor(src, dst)...).CombinedOutput()
			if err != nil {
				t.Fatalf("re-run failed: %v\n%s", err, out)
			}
			time.Sleep(100 * time.Millisecond)
			st := w.Stop()
			if len(st.Violations) > 0 {
				t.Errorf("writer violations: %v", st.Violations)
			}
			if err := w.Verify(context.Background(), b); err != nil {
				t.Errorf("after a crash at %s: %v\n%s", point, err, out)
			}
			assertMoved(t, a, b)
			t.Logf("writer: %d inserts, %d updates, %d retries, max latency %v, errors %q", st.Inserts, st.Updates, st.Retries, st.Max, st.Errors)
		})
	}
}

// assertMoved checks the end state of a move of sh0001: renamed and
// inactive on the source, active on the destination with the same initial
// rows, and no replication object left on either node.
func assertMoved(t *testing.T, a, b *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	var old string
	if err := a.QueryRow(ctx, `SELECT nspname FROM pg_namespace WHERE nspname LIKE 'sh0001old%'`).Scan(&old); err != nil {
		t.Fatalf("no renamed source: %v", err)
	}
	var srcActive, dstActive []string
	a.QueryRow(ctx, "SELECT microsharding.microsharding_list_active_shards()::text[]").Scan(&srcActive)
	b.QueryRow(ctx, "SELECT microsharding.microsharding_list_active_shards()::text[]").Scan(&dstActive)
	if len(srcActive) != 0 || len(dstActive) != 1 || dstActive[0] != "sh0001" {
		t.Errorf("active on source %v, on destination %v", srcActive, dstActive)
	}
	for _, q := range []string{
		"SELECT count(*) || ' ' || md5(string_agg(x::text, ',' ORDER BY id)) FROM %s.tags x",
		"SELECT count(*) || ' ' || md5(string_agg(x::text, ',' ORDER BY id)) FROM %s.items x WHERE id <= 2000 AND val <= 2000",
	} {
		var ra, rb string
		a.QueryRow(ctx, fmt.Sprintf(q, old)).Scan(&ra)
		b.QueryRow(ctx, fmt.Sprintf(q, "sh0001")).Scan(&rb)
		if ra != rb || ra == "" {
			t.Errorf("content differs: source %q, destination %q (%s)", ra, rb, q)
		}
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

// TestMoveCommand runs the command in-process: a move that succeeds and
// records itself, a second move refused while another run holds the lock,
// and pgms status after both.
func TestMoveCommand(t *testing.T) {
	src, dst, a, b := moveNodes(t)
	ctx := context.Background()

	// Another run holds the lock on the state node (the source).
	other, _, err := state.AcquireRunLock(ctx, src.DSN, sql.DefaultSchema, state.Invocation{Command: "move", Args: "--shard=7", Host: "ci-7", PID: 4242, User: "deploy"}, state.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	r := pgms(t, "", moveArgsFor(src, dst)...)
	if r.code != exitError || time.Since(began) > 5*time.Second {
		t.Fatalf("exit %d after %v:\n%s", r.code, time.Since(began), r.stderr)
	}
	for _, want := range []string{"another pgms run holds the lock", "pid 4242 on host ci-7", "user deploy", "`move --shard=7`", "pgms force-unlock"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	other.Release(ctx)

	r = pgms(t, "", moveArgsFor(src, dst)...).must(t)
	for _, want := range []string{"moved sh0001 from", "write pause", "source schema renamed to sh0001old"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "cutover: switching over") || !strings.Contains(r.stderr, "finish: sh0001 active on") {
		t.Errorf("progress lines missing:\n%s", r.stderr)
	}
	assertMoved(t, a, b)

	r = pgms(t, "", "status", "--dsn", src.DSN).must(t)
	for _, want := range []string{"Lock: free", "move --shard=1", "succeeded", "write pause", "copy (fast): 2/2 tables ready"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	r = pgms(t, "", "status", "--dsn", src.DSN, "--format", "json").must(t)
	if !strings.Contains(r.stdout, `"pause_ms"`) || !strings.Contains(r.stdout, `"outcome": "succeeded"`) {
		t.Errorf("status --format json:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, "password") {
		t.Errorf("a password may have leaked")
	}

	// Again: nothing to do.
	r = pgms(t, "", moveArgsFor(src, dst)...).must(t)
	if !strings.Contains(r.stdout, "already active") {
		t.Errorf("second move: %s", r.stdout)
	}
}

func TestMoveCommandUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"move", "--from=x", "--to=y", "--activate-on-destination=yes"}, "--shard is required"},
		{[]string{"move", "--shard=1", "--to=y", "--activate-on-destination=yes"}, "--from and --to are required"},
		{[]string{"move", "--shard=1", "--from=postgres://h/a", "--to=postgres://h2/a"}, "--activate-on-destination is required"},
		{[]string{"move", "--shard=1", "--from=postgres://h/a", "--to=postgres://h2/a", "--activate-on-destination=maybe"}, "use yes or no"},
		{[]string{"move", "--shard=1", "--from=postgres://h/a", "--to=postgres://h/a", "--activate-on-destination=yes"}, "same database"},
		{[]string{"move", "--shard=1", "--from=postgres://h/a", "--to=postgres://h2/a", "--activate-on-destination=yes", "--copy=quick"}, "--copy=quick: use fast or native"},
	} {
		r := pgms(t, "", tc.args...)
		if r.code != exitError || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

func TestForceUnlockCommand(t *testing.T) {
	db := pgtest.Database(t)
	conn := pgtest.Connect(t, db.DSN)
	if _, err := sql.Install(context.Background(), conn, sql.Options{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := pgms(t, "", "force-unlock", "--dsn", db.DSN).must(t)
	if !strings.Contains(r.stdout, "free; nothing to do") {
		t.Errorf("free lock: %s", r.stdout)
	}
	live, _, err := state.AcquireRunLock(ctx, db.DSN, sql.DefaultSchema, state.Invocation{Command: "move", Host: "h", PID: 9}, state.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Release(ctx)
	r = pgms(t, "", "force-unlock", "--dsn", db.DSN)
	if r.code != exitError || !strings.Contains(r.stderr, "live session") || !strings.Contains(r.stderr, "--terminate") {
		t.Errorf("live lock: exit %d %s", r.code, r.stderr)
	}
	r = pgms(t, "n\n", "force-unlock", "--dsn", db.DSN, "--terminate").must(t)
	if !strings.Contains(r.stdout, "Not terminated") {
		t.Errorf("declined: %s", r.stdout)
	}
	r = pgms(t, "yes\n", "force-unlock", "--dsn", db.DSN, "--terminate").must(t)
	if !strings.Contains(r.stdout, "Terminated session") || !strings.Contains(r.stdout, "Cleared the holder row") {
		t.Errorf("terminate: %s", r.stdout)
	}
}

func TestMoveCommandErrors(t *testing.T) {
	src, dst, _, b := moveNodes(t)
	r := pgms(t, "", "move", "--shard=9", "--from="+src.DSN, "--to="+dst.DSN, "--activate-on-destination=yes")
	if r.code != exitError || !strings.Contains(r.stderr, "schema sh0009 exists on neither") {
		t.Errorf("missing shard: exit %d: %s", r.code, r.stderr)
	}
	pgtest.Exec(t, b, "DROP SCHEMA microsharding CASCADE")
	r = pgms(t, "", moveArgsFor(src, dst)...)
	if r.code != exitError || !strings.Contains(r.stderr, `library is not installed in schema "microsharding"; run pgms install`) {
		t.Errorf("no library on the destination: exit %d: %s", r.code, r.stderr)
	}
}

// TestMoveCommandInterrupt sends SIGINT to pgms during the copy: it exits
// with 130 after undoing the move.
func TestMoveCommandInterrupt(t *testing.T) {
	bin := pgmsBinary(t)
	src, dst, a, b := moveNodes(t)
	pgtest.Exec(t, a, "INSERT INTO sh0001.items (val) SELECT g FROM generate_series(1, 300000) g")
	cmd := exec.Command(bin, moveArgsFor(src, dst)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "backfill: copying") {
			cmd.Process.Signal(os.Interrupt)
			break
		}
	}
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitInterrupted {
		t.Fatalf("exit %v, want %d\n%s", err, exitInterrupted, log.String())
	}
	st, err := state.ReadLock(context.Background(), a, sql.DefaultSchema)
	if err != nil || st.Held || st.Holder != nil {
		t.Errorf("lock after an interrupted run: %+v, %v", st, err)
	}
	if !strings.Contains(log.String(), "undone: sh0001 is on") {
		t.Errorf("no undo reported:\n%s", log.String())
	}
	if testing.Verbose() {
		t.Log(log.String())
	}
	for i, c := range []*pgx.Conn{a, b} {
		var n int
		c.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_replication_slots WHERE database = current_database())
			+ (SELECT count(*) FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()))
			+ (SELECT count(*) FROM pg_namespace WHERE nspname = 'sh0001' AND $1)`, i == 1).Scan(&n)
		if n != 0 {
			t.Errorf("%d leftovers on port %d", n, c.Config().Port)
		}
	}
}

// TestMoveCrashMidCopyUnderChurn kills pgms in the middle of the fast copy
// while every table of the shard changes on the source (inserts, updates,
// deletes, cascades), then runs the move again: the second run must
// discard the partial copy, say so, copy again from a new snapshot, and end
// with the destination holding exactly the rows of the renamed source.
func TestMoveCrashMidCopyUnderChurn(t *testing.T) {
	bin := pgmsBinary(t)
	dbs := pgtest.Databases(t, 2)
	src, dst := dbs[0], dbs[1]
	a, b := pgtest.Connect(t, src.DSN), pgtest.Connect(t, dst.DSN)
	for _, c := range []*pgx.Conn{a, b} {
		if _, err := sql.Install(context.Background(), c, sql.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	pgtest.Exec(t, a, `SELECT microsharding.microsharding_ensure_exist(1);
		SET search_path = sh0001;
		CREATE TYPE kind AS ENUM ('a', 'b');
		CREATE TABLE items (id bigserial PRIMARY KEY, val bigint NOT NULL, note text);
		CREATE INDEX items_val ON items (val);
		CREATE TABLE tags (id bigserial PRIMARY KEY, item bigint REFERENCES items ON DELETE CASCADE, tag text);
		CREATE TABLE "Odd ""T""" (k bigint PRIMARY KEY, kind kind, j jsonb, a int[], g bigint GENERATED ALWAYS AS (k * 3) STORED);
		CREATE TABLE events (id bigint NOT NULL, at date NOT NULL, what text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
		CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
		CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
		INSERT INTO items (val, note) SELECT g, 'n' FROM generate_series(1, 20000) g;
		INSERT INTO tags (item, tag) SELECT 1 + g % 20000, 't' FROM generate_series(1, 5000) g;
		INSERT INTO "Odd ""T""" (k, kind, j, a) SELECT g, 'a', jsonb_build_object('g', g), ARRAY[g::int] FROM generate_series(1, 3000) g;
		INSERT INTO events SELECT g, DATE '2025-06-01' + (g % 400), 'e' FROM generate_series(1, 3000) g;
		RESET search_path;
		SELECT microsharding.microsharding_ensure_active(1)`)
	churn, err := workload.StartChurn(context.Background(), workload.ChurnConfig{
		DSN: src.DSN, MaxArg: 25000, Interval: 2 * time.Millisecond,
		Statements: []string{
			`INSERT INTO sh0001.items (val) VALUES ($1::bigint)`,
			`UPDATE sh0001.items SET val = val + 1, note = 'u' WHERE id = $1::bigint`,
			`DELETE FROM sh0001.items WHERE id = $1::bigint`,
			`INSERT INTO sh0001.tags (item, tag) SELECT id, 'w' FROM sh0001.items WHERE id = $1::bigint`,
			`DELETE FROM sh0001.tags WHERE id = $1::bigint`,
			`INSERT INTO sh0001."Odd ""T""" (k, kind, j, a) VALUES ($1::bigint, 'b', '{"w": 1}', ARRAY[1, 2]) ON CONFLICT (k) DO UPDATE SET j = "Odd ""T""".j || '{"u": 2}'`,
			`DELETE FROM sh0001."Odd ""T""" WHERE k = $1::bigint`,
			`INSERT INTO sh0001.events VALUES ($1::bigint + 100000, DATE '2025-06-01' + ($1::bigint % 400)::int, 'w')`,
			`UPDATE sh0001.events SET what = what || '+' WHERE id = $1::bigint`,
			`DELETE FROM sh0001.events WHERE id = $1::bigint`,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer churn.Stop()
	logFrom := len(dst.Server.Log())
	time.Sleep(100 * time.Millisecond)

	cmd := exec.Command(bin, moveArgsFor(src, dst)...)
	cmd.Env = append(os.Environ(), "PGMS_FAULT=move.backfill.table")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !exit.Sys().(syscall.WaitStatus).Signaled() {
		t.Fatalf("pgms was not killed mid-copy: %v\n%s", err, out)
	}
	var copied int64
	b.QueryRow(context.Background(), "SELECT count(*) FROM sh0001.items").Scan(&copied)
	t.Logf("killed mid-copy; the destination's partial copy holds %d items", copied)
	time.Sleep(100 * time.Millisecond)
	out, err = exec.Command(bin, moveArgsFor(src, dst)...).CombinedOutput()
	if err != nil {
		t.Fatalf("re-run failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "the copy starts over") {
		t.Errorf("the re-run does not say that the copy starts over:\n%s", out)
	}
	ops, errs := churn.Stop()
	t.Logf("%d changes on the source, errors %v", ops, errs)
	if ops < 100 {
		t.Errorf("only %d changes on the source", ops)
	}
	var old string
	if err := a.QueryRow(context.Background(), `SELECT nspname FROM pg_namespace WHERE nspname LIKE 'sh0001old%'`).Scan(&old); err != nil {
		t.Fatalf("no renamed source: %v", err)
	}
	for _, tbl := range []string{"items", "tags", `Odd "T"`, "events_2025", "events_2026"} {
		q := "SELECT count(*) || ' ' || count(DISTINCT x) || ' ' || COALESCE(md5(string_agg(x::text, ',' ORDER BY x::text)), '') FROM %s x"
		var ra, rb string
		a.QueryRow(context.Background(), fmt.Sprintf(q, pgx.Identifier{old, tbl}.Sanitize())).Scan(&ra)
		b.QueryRow(context.Background(), fmt.Sprintf(q, pgx.Identifier{"sh0001", tbl}.Sanitize())).Scan(&rb)
		if ra != rb || ra == "" {
			t.Errorf("%s differs: source %q, destination %q", tbl, ra, rb)
		}
	}
	// The killed run's COPY sessions end with an error on the destination;
	// anything else is a failure, an apply error above all.
	for _, l := range strings.Split(dst.Server.Log()[logFrom:], "\n") {
		if strings.Contains(l, "ERROR:") && !strings.Contains(l, "unexpected EOF on client connection") {
			t.Errorf("destination log: %s", l)
		}
	}
	assertMoved(t, a, b)
}

// startItemsWriter starts a writer on shard 1's items table that routes
// through the active lists of src and dst, and lets it write a moment
// before the test acts.
func startItemsWriter(t *testing.T, src, dst pgtest.DB) *workload.Writer {
	t.Helper()
	w, err := workload.Start(context.Background(), workload.Config{
		DSNs: []string{src.DSN, dst.DSN}, Schema: "sh0001", Table: "items", Interval: 3 * time.Millisecond, UpdateShare: 0.4,
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	return w
}
