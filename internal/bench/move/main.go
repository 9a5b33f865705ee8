// Command move benchmarks pgms's online shard move on two local servers:
//
//	go run ./internal/bench/move [-size 1GB] [-moves 2] [-copy native,fast] [-write-rate 200]
//
// It fills a shard of about -size (three tables with a secondary index
// each) and measures two floors of copying that data: pg_dump | psql of the
// shard's schema (what a person would do by hand, one stream, indexes built
// after the data) and a raw parallel COPY TO STDOUT | COPY FROM STDIN per
// table into the same table definitions. Then it moves the shard back and
// forth with the pgms binary, -moves rounds of one move per copy strategy,
// while a writer inserts and updates rows of the shard at -write-rate,
// routing by the nodes' active lists. It prints per move the wall time, the
// backfill against both floors, the write-pause window and its
// lock-to-commit core (from the journal), CPU time of pgms (its rusage) and
// of both servers (every process of each postmaster, from /proc), pgms's
// peak memory, and what the writer saw; at the end it checks that no
// acknowledged write was lost.
//
// A strategy may name the verification level of the move's gate after a
// colon (-copy fast:off,fast:count,fast:full): the report then gives each
// verification's time against the copy it checked, and the pauses by
// level; and the fast copy's range size after an at sign (fast@64MB).
//
// -rollback 3 then runs three rounds of a fast move with a rollback window
// and, after -rollback-hold of writes on the new home, pgms rollback, and
// reports both pauses, the writes the stream carried back, and whether
// every acknowledged write is on the old home at the end.
//
// -interrupt 0.8 then interrupts one more fast move with SIGINT once the
// destination holds that share of the shard, runs it again, and reports
// what the second run kept, compared and copied again, against the copy
// time of an uninterrupted fast move of the same run.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/bench/move/workload"
	"github.com/pgms-dev/pgms/internal/pgbin"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/sql"
)

// tableDDL creates the shard's tables in schema %[1]s; indexes come after
// the fill.
var tableDDL = []struct{ name, create, index string }{
	{"orders", `CREATE TABLE %[1]s.orders (id bigint PRIMARY KEY, customer bigint NOT NULL, amount numeric(12,2),
		status text NOT NULL, created timestamptz NOT NULL, note text)`, `CREATE INDEX orders_customer ON %[1]s.orders (customer)`},
	{"events", `CREATE TABLE %[1]s.events (id bigint PRIMARY KEY, order_id bigint NOT NULL, kind text NOT NULL,
		at timestamptz NOT NULL, data text)`, `CREATE INDEX events_order ON %[1]s.events (order_id)`},
	{"items", `CREATE TABLE %[1]s.items (id bigserial PRIMARY KEY, val bigint NOT NULL, note text)`,
		`CREATE INDEX items_val ON %[1]s.items (val)`},
}

// fill inserts rows worth about share of the size into each table.
var fill = []struct {
	table  string
	share  float64
	rowLen int64 // heap bytes per row, measured
	insert string
}{
	{"orders", 0.45, 110, `INSERT INTO %[1]s.orders SELECT g, g %% 100000, (g %% 10000) / 7.0, 'paid', '2026-01-01'::timestamptz + g * interval '1 second', md5(g::text)
		FROM generate_series($1::bigint, $2::bigint) g`},
	{"events", 0.45, 140, `INSERT INTO %[1]s.events SELECT g, g / 3, 'shipped', '2026-01-01'::timestamptz + g * interval '1 second', md5(g::text) || md5((g + 1)::text)
		FROM generate_series($1::bigint, $2::bigint) g`},
	{"items", 0.10, 70, `INSERT INTO %[1]s.items (val, note) SELECT g, 'n' || g FROM generate_series($1::bigint, $2::bigint) g`},
}

func main() {
	sizeFlag := flag.String("size", "1GB", "approximate heap size of the shard")
	moves := flag.Int("moves", 2, "rounds of moves, one move per copy strategy each, alternating direction")
	copies := flag.String("copy", "native,fast", "copy strategies to compare (pgms move --copy), each optionally with a verification level (fast:full)")
	workers := flag.Int("copy-workers", 0, "pgms move --copy-workers (0: pgms's default)")
	rate := flag.Int("write-rate", 200, "writes per second into the moving shard during the moves")
	interrupt := flag.Float64("interrupt", 0, "then interrupt a fast move once the destination holds this share of the shard, and run it again")
	copyRange := flag.String("copy-range", "", "pgms move --copy-range for the interrupted move and its second run")
	rollbacks := flag.Int("rollback", 0, "then this many rounds of a fast move with a rollback window and its rollback")
	hold := flag.Duration("rollback-hold", 5*time.Second, "how long the writer writes on the new home before each rollback")
	flag.Parse()
	rollbackN, rollbackHold = *rollbacks, *hold
	moveArgs = nil
	if *copyRange != "" {
		moveArgs = append(moveArgs, "--copy-range="+*copyRange)
	}
	interruptAt = *interrupt
	size, err := units.ParseBytes(*sizeFlag)
	if err != nil {
		fail(fmt.Errorf("-size: %w", err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, size, *moves, strings.Split(*copies, ","), *workers, *rate); err != nil {
		fail(err)
	}
}

// moveArgs are added to the interrupted move; interruptAt is -interrupt;
// rollbackN and rollbackHold are -rollback and -rollback-hold.
var (
	moveArgs     []string
	interruptAt  float64
	rollbackN    int
	rollbackHold time.Duration
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

type node struct {
	name string
	dsn  string
	conn *pgx.Conn
	srv  *pgtest.Server
}

func run(ctx context.Context, size int64, moves int, copies []string, workers, rate int) error {
	tmp, err := os.MkdirTemp("", "pgms-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "pgms")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/pgms").CombinedOutput(); err != nil {
		return fmt.Errorf("build pgms (run from the module root): %v\n%s", err, out)
	}

	begin := time.Now()
	cluster, err := pgtest.Start(ctx, 2, pgtest.Options{Settings: map[string]string{
		"shared_buffers":       "512MB",
		"maintenance_work_mem": "256MB",
		"max_wal_size":         "8GB",
		"checkpoint_timeout":   "30min",
	}})
	if err != nil {
		return err
	}
	defer cluster.Close()
	nodes := make([]*node, 2)
	for i, s := range cluster.Servers {
		admin, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err != nil {
			return err
		}
		_, err = admin.Exec(ctx, "CREATE DATABASE bench")
		admin.Close(ctx)
		if err != nil {
			return err
		}
		n := &node{name: string(rune('a' + i)), dsn: s.DSN("bench"), srv: s}
		if n.conn, err = pgx.Connect(ctx, n.dsn); err != nil {
			return err
		}
		defer n.conn.Close(context.Background())
		if _, err := sql.Install(ctx, n.conn, sql.Options{}); err != nil {
			return err
		}
		nodes[i] = n
	}
	a, b := nodes[0], nodes[1]
	fmt.Printf("servers ready in %v; filling a shard of ~%s\n", time.Since(begin).Round(time.Millisecond), units.FormatBytes(float64(size)))
	began := time.Now()
	if err := fillShard(ctx, a, size); err != nil {
		return err
	}
	info, err := shardInfo(ctx, a.conn, "sh0001")
	if err != nil {
		return err
	}
	fmt.Printf("filled in %v: %s heap, %s with indexes, %d rows in %d tables\n", time.Since(began).Round(time.Second),
		units.FormatBytes(float64(info.heap)), units.FormatBytes(float64(info.total)), info.rows, len(tableDDL))

	withIndexes, err := copyFloor(ctx, a, b, true)
	if err != nil {
		return fmt.Errorf("floor copy: %w", err)
	}
	indexesAfter, err := copyFloor(ctx, a, b, false)
	if err != nil {
		return fmt.Errorf("floor copy: %w", err)
	}
	floor := min(withIndexes, indexesAfter)
	fmt.Printf("floor: parallel COPY of every table took %v into tables with their indexes, %v with the indexes built after\n",
		withIndexes.Round(time.Millisecond), indexesAfter.Round(time.Millisecond))
	dump, err := dumpRestore(ctx, a, b)
	if err != nil {
		return fmt.Errorf("pg_dump | psql: %w", err)
	}
	fmt.Printf("floor: pg_dump | psql of the shard took %v (pg_dump and psql %.1f CPU-s, servers %s CPU-s)\n\n",
		dump.wall.Round(time.Millisecond), dump.clientCPU.Seconds(), cpuText(dump.serverCPU))

	w, err := workload.Start(ctx, workload.Config{
		DSNs: []string{a.dsn, b.dsn}, Schema: "sh0001", Table: "items",
		Interval: time.Second / time.Duration(max(rate, 1)), UpdateShare: 0.4,
	})
	if err != nil {
		return err
	}
	defer w.Stop()

	var rows []moveRow
	for i := 0; i < moves*len(copies) && ctx.Err() == nil; i++ {
		from, to := a, b
		if i%2 == 1 {
			from, to = b, a
		}
		strategy := copies[i%len(copies)]
		if err := settle(ctx, from, to); err != nil {
			return err
		}
		before := w.Written()
		r, err := pgmsMove(ctx, bin, from, to, a, strategy, workers)
		if err != nil {
			return fmt.Errorf("move %d: %w", i+1, err)
		}
		r.n, r.dir, r.copy = i+1, from.name+"→"+to.name, strategy
		for _, l := range w.LatenciesFrom(before) {
			r.writerMax = max(r.writerMax, l)
		}
		rows = append(rows, r)
		// The renamed source is a full copy: drop it so that the next
		// move in the other direction starts from the same disk use.
		if _, err := from.conn.Exec(ctx, "DO $$ DECLARE s text; BEGIN FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 'sh0001old%' LOOP EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP; END $$"); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
	var resumed *resumeRun
	if interruptAt > 0 && ctx.Err() == nil {
		from, to := a, b
		if len(rows)%2 == 1 {
			from, to = b, a
		}
		if err := settle(ctx, from, to); err != nil {
			return err
		}
		rr, err := interruptedMove(ctx, bin, from, to, a, workers, interruptAt)
		if err != nil {
			return fmt.Errorf("interrupted move: %w", err)
		}
		resumed = &rr
		rows = append(rows, moveRow{n: len(rows) + 1, dir: from.name + "→" + to.name, copy: "resumed", wall: rr.second.wall, backfill: rr.second.backfill,
			verify: rr.second.verify, bytes: rr.second.bytes, rows: rr.second.rows, pause: rr.second.pause, core: rr.second.core, retries: rr.second.retries,
			maxRSS: rr.second.maxRSS, pgmsCPU: rr.second.pgmsCPU, serverCPU: rr.second.serverCPU})
	}
	var rounds []rollbackRound
	if rollbackN > 0 && ctx.Err() == nil {
		if len(rows)%2 == 1 {
			return errors.New("-rollback needs the shard back on a: use an even number of moves")
		}
		if rounds, err = rollbackRounds(ctx, bin, a, b, w, rollbackN, rollbackHold); err != nil {
			return err
		}
	}
	st := w.Stop()
	final := b
	if len(rows)%2 == 0 {
		final = a
	}
	verifyErr := w.Verify(ctx, final.conn)
	report(os.Stdout, info, floors{raw: floor, withIndexes: withIndexes, indexesAfter: indexesAfter, dump: dump}, copies, rate, rows, st, verifyErr)
	if resumed != nil {
		reportResume(os.Stdout, rows, *resumed)
	}
	if rollbackN > 0 {
		reportRollbacks(os.Stdout, rounds, rollbackHold, st, verifyErr)
	}
	if verifyErr != nil || len(st.Violations) > 0 {
		return errors.New("writes were lost or misrouted")
	}
	return nil
}

func fillShard(ctx context.Context, a *node, size int64) error {
	if _, err := a.conn.Exec(ctx, "SELECT microsharding.microsharding_ensure_exist(1)"); err != nil {
		return err
	}
	for _, t := range tableDDL {
		if _, err := a.conn.Exec(ctx, fmt.Sprintf(t.create, "sh0001")); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(fill))
	for i, f := range fill {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, a.dsn)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close(context.Background())
			total := int64(float64(size)*f.share) / f.rowLen
			const chunk = 500000
			for lo := int64(1); lo <= total; lo += chunk {
				if _, err := c.Exec(ctx, fmt.Sprintf(f.insert, "sh0001"), lo, min(lo+chunk-1, total)); err != nil {
					errs[i] = fmt.Errorf("fill %s: %w", f.table, err)
					return
				}
			}
			for _, t := range tableDDL {
				if t.name == f.table {
					if _, err := c.Exec(ctx, fmt.Sprintf(t.index, "sh0001")); err != nil {
						errs[i] = err
						return
					}
				}
			}
			if f.table == "items" {
				_, err = c.Exec(ctx, "SELECT setval('sh0001.items_id_seq', $1)", total)
			}
			if err == nil {
				_, err = c.Exec(ctx, "VACUUM ANALYZE sh0001."+f.table)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_, err := a.conn.Exec(ctx, "SELECT microsharding.microsharding_ensure_active(1)")
	return err
}

// settle gives every move the same start: the source's tables vacuumed
// (a copy just written has no hint bits set, and the first to read it pays
// for setting them all, which would burden whichever strategy comes next),
// autovacuum given nothing to do, and both servers checkpointed.
func settle(ctx context.Context, from, to *node) error {
	for _, t := range tableDDL {
		if _, err := from.conn.Exec(ctx, "VACUUM ANALYZE sh0001."+t.name); err != nil {
			return err
		}
	}
	for _, n := range []*node{from, to} {
		if _, err := n.conn.Exec(ctx, "CHECKPOINT"); err != nil {
			return err
		}
	}
	return nil
}

type shard struct {
	heap, total, rows int64
}

func shardInfo(ctx context.Context, c *pgx.Conn, schema string) (shard, error) {
	var s shard
	err := c.QueryRow(ctx, `SELECT sum(pg_relation_size(c.oid))::bigint, sum(pg_total_relation_size(c.oid))::bigint, sum(c.reltuples)::bigint
		FROM pg_class c WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r'`, schema).Scan(&s.heap, &s.total, &s.rows)
	return s, err
}

// copyFloor copies every table of the shard from a to b, all in parallel,
// each as a binary COPY TO STDOUT piped into COPY FROM STDIN, into tables
// made from the same definitions, primary keys included. With
// indexesFirst the secondary indexes exist during the copy (as they do for
// the native copy); without, they are built afterwards, one per
// connection, and the time includes that.
// pgx writes one message per row into the pipe; a 256 KiB buffer in front
// of it keeps the pipe from turning into millions of tiny transfers.
func copyFloor(ctx context.Context, a, b *node, indexesFirst bool) (time.Duration, error) {
	if _, err := b.conn.Exec(ctx, "CREATE SCHEMA floor"); err != nil {
		return 0, err
	}
	defer b.conn.Exec(context.Background(), "DROP SCHEMA floor CASCADE") //nolint:errcheck // best effort
	for _, t := range tableDDL {
		if _, err := b.conn.Exec(ctx, fmt.Sprintf(t.create, "floor")); err != nil {
			return 0, err
		}
		if indexesFirst {
			if _, err := b.conn.Exec(ctx, fmt.Sprintf(t.index, "floor")); err != nil {
				return 0, err
			}
		}
	}
	begin := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(tableDDL))
	for i, t := range tableDDL {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = copyTable(ctx, a.dsn, b.dsn, "sh0001."+t.name, "floor."+t.name)
			if errs[i] == nil && !indexesFirst {
				errs[i] = execOn(ctx, b.dsn, fmt.Sprintf(t.index, "floor"))
			}
		}()
	}
	wg.Wait()
	return time.Since(begin), errors.Join(errs...)
}

func execOn(ctx context.Context, dsn, q string) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, q)
	return err
}

func copyTable(ctx context.Context, fromDSN, toDSN, from, to string) error {
	src, err := pgx.Connect(ctx, fromDSN)
	if err != nil {
		return err
	}
	defer src.Close(context.Background())
	dst, err := pgx.Connect(ctx, toDSN)
	if err != nil {
		return err
	}
	defer dst.Close(context.Background())
	pr, pw := io.Pipe()
	buf := bufio.NewWriterSize(pw, 256<<10)
	done := make(chan error, 1)
	go func() {
		_, err := dst.PgConn().CopyFrom(ctx, pr, "COPY "+to+" FROM STDIN (FORMAT binary)")
		pr.CloseWithError(err)
		done <- err
	}()
	_, err = src.PgConn().CopyTo(ctx, buf, "COPY "+from+" TO STDOUT (FORMAT binary)")
	if err == nil {
		err = buf.Flush()
	}
	pw.CloseWithError(err)
	if derr := <-done; err == nil {
		err = derr
	}
	return err
}

type moveRow struct {
	n         int
	dir       string
	copy      string
	wall      time.Duration
	backfill  time.Duration
	bytes     int64
	rows      int64
	pause     time.Duration
	core      time.Duration
	retries   int
	maxRSS    int64 // bytes
	writerMax time.Duration
	pgmsCPU   time.Duration
	serverCPU time.Duration // both servers, -1 when unknown
	// verify is the verification gate's time (0: none), inside backfill.
	verify time.Duration
	// output is what pgms printed.
	output string
	// syncCopy is, for the native copy, the time from the subscription's
	// apply worker starting to the last table synchronisation finishing,
	// from the destination's log: pgms polls the copy once a second, so
	// its backfill time runs up to a second late.
	syncCopy time.Duration
}

// copyTime is the backfill without the verification, or the native
// copy's time from the log.
func (r moveRow) copyTime() time.Duration {
	if r.syncCopy > 0 {
		return r.syncCopy
	}
	return r.backfill - r.verify
}

// verifyTime reads the gate's time from the journal's line ("…; 123.4 ms").
var verifyTime = regexp.MustCompile(`; ([0-9.]+) ms$`)

// tableSyncTime reads the native copy's duration from the destination's
// log, or returns 0.
func tableSyncTime(log string) time.Duration {
	var start, end time.Time
	for _, l := range strings.Split(log, "\n") {
		if len(l) < 27 {
			continue
		}
		at, err := time.Parse("2006-01-02 15:04:05.000 MST", l[:27])
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(l, "logical replication apply worker for subscription") && strings.Contains(l, "has started") && start.IsZero():
			start = at
		case strings.Contains(l, "logical replication table synchronization worker for subscription") && strings.Contains(l, "has finished"):
			end = at
		}
	}
	if start.IsZero() || end.Before(start) {
		return 0
	}
	return end.Sub(start)
}

// pgmsMove runs the pgms binary and reads the step it recorded in the
// journal on the state node.
func pgmsMove(ctx context.Context, bin string, from, to, stateNode *node, strategy string, workers int) (moveRow, error) {
	var r moveRow
	strategy, rangeBytes, _ := strings.Cut(strategy, "@")
	strategy, level, _ := strings.Cut(strategy, ":")
	args := []string{"move", "--shard=1", "--from=" + from.dsn, "--to=" + to.dsn,
		"--activate-on-destination=yes", "--state-dsn=" + stateNode.dsn, "--progress=5s", "--copy=" + strategy}
	if rangeBytes != "" {
		args = append(args, "--copy-range="+rangeBytes)
	}
	if level != "" {
		args = append(args, "--verify="+level)
	}
	if workers > 0 {
		args = append(args, fmt.Sprintf("--copy-workers=%d", workers))
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = io.MultiWriter(&out, prefixed(os.Stderr, "  pgms: "))
	cpu0 := serversCPU(from, to)
	logFrom := len(to.srv.Log())
	begin := time.Now()
	err := cmd.Run()
	r.wall = time.Since(begin)
	r.serverCPU = cpuDelta(cpu0, serversCPU(from, to))
	r.output = out.String()
	if err != nil {
		return r, fmt.Errorf("%v\n%s", err, out.String())
	}
	r.syncCopy = tableSyncTime(to.srv.Log()[logFrom:])
	r.pgmsCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss * 1024
	}
	var backfill, pause, core *float64
	var verify string
	err = stateNode.conn.QueryRow(ctx, `SELECT backfill_ms, pause_ms, core_ms, bytes, rows, retries, COALESCE(verify, '')
		FROM microsharding.pgms_steps ORDER BY id DESC LIMIT 1`).Scan(&backfill, &pause, &core, &r.bytes, &r.rows, &r.retries, &verify)
	if err != nil {
		return r, err
	}
	if m := verifyTime.FindStringSubmatch(verify); m != nil {
		var v float64
		fmt.Sscan(m[1], &v)
		r.verify = time.Duration(v * float64(time.Millisecond))
	}
	ms := func(p *float64) time.Duration {
		if p == nil {
			return 0
		}
		return time.Duration(*p * float64(time.Millisecond))
	}
	r.backfill, r.pause, r.core = ms(backfill), ms(pause), ms(core)
	return r, nil
}

type linePrefixer struct {
	w      io.Writer
	prefix string
	mu     sync.Mutex
	start  bool
}

func prefixed(w io.Writer, prefix string) io.Writer {
	return &linePrefixer{w: w, prefix: prefix, start: true}
}

func (p *linePrefixer) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var sb strings.Builder
	for _, c := range string(b) {
		if p.start {
			sb.WriteString(p.prefix)
			p.start = false
		}
		sb.WriteRune(c)
		if c == '\n' {
			p.start = true
		}
	}
	_, err := io.WriteString(p.w, sb.String())
	return len(b), err
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	switch n := len(s); {
	case n == 0:
		return 0
	case n%2 == 0:
		return (s[n/2-1] + s[n/2]) / 2
	default:
		return s[n/2]
	}
}

// floors are the reference copies of the shard's data.
type floors struct {
	raw, withIndexes, indexesAfter time.Duration
	dump                           dumpRun
}

func report(w io.Writer, info shard, f floors, copies []string, rate int, rows []moveRow, st workload.Stats, verifyErr error) {
	fmt.Fprintf(w, "\nshard: %s heap (%s with indexes), %d rows, 3 tables with a secondary index each; writer at %d writes/s\n",
		units.FormatBytes(float64(info.heap)), units.FormatBytes(float64(info.total)), info.rows, rate)
	fmt.Fprintf(w, "floor pg_dump | psql (one stream, indexes after): %v; pg_dump and psql %.1f CPU-s, servers %s CPU-s\n",
		f.dump.wall.Round(time.Millisecond), f.dump.clientCPU.Seconds(), cpuText(f.dump.serverCPU))
	fmt.Fprintf(w, "floor raw parallel binary COPY (one stream per table, all at once, primary keys in place): %v into tables with their indexes, %v with secondary indexes built after; taking %v\n\n",
		f.withIndexes.Round(time.Millisecond), f.indexesAfter.Round(time.Millisecond), f.raw.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "move\tdir\tcopy\twall\tbackfill\tcopy time\tverify\t× copy\tMB/s\t× pg_dump|psql\t× raw COPY\tpgms CPU\tservers CPU\tpause\tcore\tretries\twriter max\tpgms peak RSS\t")
	byCopy := map[string][]moveRow{}
	var pauses, cores []time.Duration
	for _, r := range rows {
		byCopy[r.copy] = append(byCopy[r.copy], r)
		pauses, cores = append(pauses, r.pause), append(cores, r.core)
		c := r.copyTime()
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.1f s\t%.2f s\t%.2f s\t%.2f s\t%.2f\t%.1f\t%.2f\t%.2f\t%.2f s\t%s s\t%s\t%s\t%d\t%s\t%s\t\n", r.n, r.dir, r.copy, r.wall.Seconds(), r.backfill.Seconds(), c.Seconds(),
			r.verify.Seconds(), r.verify.Seconds()/c.Seconds(), float64(r.bytes)/c.Seconds()/(1<<20), c.Seconds()/f.dump.wall.Seconds(), c.Seconds()/f.raw.Seconds(),
			r.pgmsCPU.Seconds(), cpuText(r.serverCPU), units.FormatMS(r.pause), units.FormatMS(r.core), r.retries, units.FormatMS(r.writerMax), units.FormatBytes(float64(r.maxRSS)))
	}
	tw.Flush()
	fmt.Fprintln(w, "(copy time: the backfill without the verification, but for the native copy the table synchronisation as the destination's log times it, since pgms polls it once a second; verify: the gate's time, × copy its share of the copy time)")

	fmt.Fprintln(w)
	medians := map[string]time.Duration{}
	for _, c := range copies {
		rs := byCopy[c]
		if len(rs) == 0 {
			continue
		}
		var times, pgmsCPU, serverCPU []time.Duration
		for _, r := range rs {
			times, pgmsCPU, serverCPU = append(times, r.copyTime()), append(pgmsCPU, r.pgmsCPU), append(serverCPU, r.serverCPU)
		}
		medians[c] = median(times)
		fmt.Fprintf(w, "%s copy: copy time median %.2f s = %.2f× pg_dump | psql, %.2f× raw parallel COPY; pgms CPU median %.2f s, servers %s s\n",
			c, medians[c].Seconds(), medians[c].Seconds()/f.dump.wall.Seconds(), medians[c].Seconds()/f.raw.Seconds(), median(pgmsCPU).Seconds(), cpuText(median(serverCPU)))
		var verifies, ratios, levelPauses []time.Duration
		for _, r := range rs {
			levelPauses = append(levelPauses, r.pause)
			if r.verify > 0 {
				verifies = append(verifies, r.verify)
				ratios = append(ratios, time.Duration(float64(time.Second)*r.verify.Seconds()/r.copyTime().Seconds()))
			}
		}
		if strings.Contains(c, ":") {
			fmt.Fprintf(w, "  %s: verification median %.2f s = %.2f× its copy time; write pause median %s, max %s\n",
				c, median(verifies).Seconds(), median(ratios).Seconds(), units.FormatMS(median(levelPauses)), units.FormatMS(slices.Max(levelPauses)))
		}
	}
	medPause, maxPause := median(pauses), slices.Max(pauses)
	fmt.Fprintf(w, "write pause: median %s, max %s; lock to commit: median %s, max %s\n", units.FormatMS(medPause), units.FormatMS(maxPause), units.FormatMS(median(cores)), units.FormatMS(slices.Max(cores)))
	fmt.Fprintf(w, "writer: %d inserts, %d updates acknowledged, %d retried attempts, latency p50 %s p99 %s max %s\n",
		st.Inserts, st.Updates, st.Retries, units.FormatMS(st.P50), units.FormatMS(st.P99), units.FormatMS(st.Max))
	lost := "none lost"
	if verifyErr != nil {
		lost = "LOST: " + verifyErr.Error()
	}
	if len(st.Violations) > 0 {
		lost += fmt.Sprintf("; violations: %v", st.Violations)
	}
	fmt.Fprintf(w, "acknowledged writes: %s\n", lost)
	check := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	targets := []string{fmt.Sprintf("median pause < 30 ms: %s", check(medPause < 30*time.Millisecond))}
	fast, ok := medians["fast"]
	if !ok {
		fast, ok = medians["fast:off"]
	}
	if ok {
		targets = append(targets, fmt.Sprintf("fast copy within 1.15× pg_dump | psql: %s", check(fast.Seconds() <= 1.15*f.dump.wall.Seconds())))
		if native, ok := medians["native"]; ok {
			var backfills []time.Duration
			for _, r := range byCopy["native"] {
				backfills = append(backfills, r.backfill)
			}
			targets = append(targets, fmt.Sprintf("fast ≥ 1.8× faster than native (%.2f× on copy time; %.2f× on pgms's backfill): %s",
				native.Seconds()/fast.Seconds(), median(backfills).Seconds()/fast.Seconds(), check(native.Seconds() >= 1.8*fast.Seconds())))
		}
		var pgmsCPU, serverCPU time.Duration
		for _, r := range byCopy["fast"] {
			pgmsCPU += r.pgmsCPU
			serverCPU += r.serverCPU
		}
		if serverCPU > 0 {
			targets = append(targets, fmt.Sprintf("fast: pgms CPU well under the servers' (%.0f%%): %s", 100*pgmsCPU.Seconds()/serverCPU.Seconds(), check(pgmsCPU*4 < serverCPU)))
		}
	}
	fmt.Fprintf(w, "targets: %s\n", strings.Join(targets, "; "))
}

// dumpRun is the pg_dump | psql floor.
type dumpRun struct {
	wall, clientCPU, serverCPU time.Duration
}

// dumpRestore copies the shard from a to b the way a person would by hand,
// pg_dump piped into psql, and drops the copy again.
func dumpRestore(ctx context.Context, a, b *node) (dumpRun, error) {
	var r dumpRun
	var major int
	if err := a.conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&major); err != nil {
		return r, err
	}
	pgDump, err := pgbin.PgDump(major)
	if err != nil {
		return r, err
	}
	psql, err := pgbin.Find("psql", 0)
	if err != nil {
		return r, err
	}
	dump := exec.CommandContext(ctx, pgDump.Path, "--schema=sh0001", "--no-publications", "--no-subscriptions", "--dbname="+a.dsn)
	restore := exec.CommandContext(ctx, psql.Path, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--dbname="+b.dsn)
	pr, pw, err := os.Pipe()
	if err != nil {
		return r, err
	}
	var dumpErr, restoreErr strings.Builder
	dump.Stdout, dump.Stderr = pw, &dumpErr
	restore.Stdin, restore.Stdout, restore.Stderr = pr, io.Discard, &restoreErr
	cpu0 := serversCPU(a, b)
	begin := time.Now()
	if err := restore.Start(); err != nil {
		return r, err
	}
	if err := dump.Start(); err != nil {
		return r, err
	}
	pr.Close()
	pw.Close()
	errD, errR := dump.Wait(), restore.Wait()
	r.wall = time.Since(begin)
	r.serverCPU = cpuDelta(cpu0, serversCPU(a, b))
	if errD != nil || errR != nil {
		return r, fmt.Errorf("pg_dump: %v %s; psql: %v %s", errD, dumpErr.String(), errR, restoreErr.String())
	}
	for _, p := range []*os.ProcessState{dump.ProcessState, restore.ProcessState} {
		r.clientCPU += p.UserTime() + p.SystemTime()
	}
	_, err = b.conn.Exec(ctx, "DROP SCHEMA sh0001 CASCADE")
	return r, err
}

// serversCPU returns the CPU time used so far by every process of the
// nodes' servers: each postmaster with its reaped children (which includes
// every backend that has exited) plus its live children. The difference of
// two readings is what the servers spent in between. Nil when a server's
// processes cannot be read (servers not started here).
func serversCPU(nodes ...*node) map[int]time.Duration {
	out := map[int]time.Duration{}
	parents := map[int]bool{}
	for _, n := range nodes {
		if n.srv == nil || n.srv.DataDir == "" {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(n.srv.DataDir, "postmaster.pid"))
		if err != nil {
			return nil
		}
		var pid int
		if _, err := fmt.Sscan(string(data), &pid); err != nil {
			return nil
		}
		parents[pid] = true
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		ppid, own, children, ok := procCPU(pid)
		switch {
		case !ok:
		case parents[pid]:
			out[pid] += own + children
		case parents[ppid]:
			out[pid] += own
		}
	}
	return out
}

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// procCPU reads a process's parent and CPU times from /proc/<pid>/stat.
func procCPU(pid int) (ppid int, own, children time.Duration, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, false
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return 0, 0, 0, false
	}
	var utime, stime, cutime, cstime int64
	fmt.Sscan(f[1], &ppid)
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	fmt.Sscan(f[13], &cutime)
	fmt.Sscan(f[14], &cstime)
	return ppid, time.Duration(utime+stime) * clockTick, time.Duration(cutime+cstime) * clockTick, true
}

// cpuDelta is the CPU time spent between two readings; a process that
// ended in between is counted in its parent's reaped-children time.
func cpuDelta(before, after map[int]time.Duration) time.Duration {
	if before == nil || after == nil {
		return -1
	}
	var d time.Duration
	for pid, t := range after {
		d += t - before[pid]
	}
	for pid, t := range before {
		if _, ok := after[pid]; !ok {
			d -= t
		}
	}
	return d
}

func cpuText(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	return fmt.Sprintf("%.2f", d.Seconds())
}

// resumeRun is an interrupted fast move and the run that continued it.
type resumeRun struct {
	share       float64       // of the shard on the destination at the interruption
	interrupted time.Duration // from the start to the interruption
	second      moveRow
	summary     string // the second run's line on what it kept and copied
}

// interruptedMove starts a fast move, sends it SIGINT once the
// destination's copy holds share of the source's heap, checks that it
// stopped keeping its copy, and runs the move again.
func interruptedMove(ctx context.Context, bin string, from, to, stateNode *node, workers int, share float64) (resumeRun, error) {
	var rr resumeRun
	var heap int64
	const size = `SELECT COALESCE(sum(pg_relation_size(c.oid)), 0)::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'sh0001' AND c.relkind = 'r'`
	if err := from.conn.QueryRow(ctx, size).Scan(&heap); err != nil {
		return rr, err
	}
	args := []string{"move", "--shard=1", "--from=" + from.dsn, "--to=" + to.dsn, "--activate-on-destination=yes", "--state-dsn=" + stateNode.dsn, "--progress=5s", "--copy=fast"}
	if workers > 0 {
		args = append(args, fmt.Sprintf("--copy-workers=%d", workers))
	}
	cmd := exec.CommandContext(ctx, bin, append(args, moveArgs...)...)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = io.MultiWriter(&out, prefixed(os.Stderr, "  pgms (to be interrupted): "))
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		return rr, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var waitErr error
wait:
	for {
		select {
		case waitErr = <-exited:
			return rr, fmt.Errorf("the move ended before %.0f%% of the shard was copied: %v\n%s", 100*share, waitErr, out.String())
		case <-tick.C:
			var copied int64
			if err := to.conn.QueryRow(ctx, size).Scan(&copied); err != nil {
				return rr, err
			}
			if float64(copied) >= share*float64(heap) {
				rr.share = float64(copied) / float64(heap)
				rr.interrupted = time.Since(begin)
				cmd.Process.Signal(os.Interrupt)
				waitErr = <-exited
				break wait
			}
		}
	}
	var exit *exec.ExitError
	if !errors.As(waitErr, &exit) || exit.ExitCode() != 130 {
		return rr, fmt.Errorf("the interrupted move exited with %v, not 130\n%s", waitErr, out.String())
	}
	if !strings.Contains(out.String(), "kept on") {
		return rr, fmt.Errorf("the interrupted move did not keep its copy:\n%s", out.String())
	}
	again := "fast"
	for _, a := range moveArgs {
		if r, ok := strings.CutPrefix(a, "--copy-range="); ok {
			again += "@" + r
		}
	}
	second, err := pgmsMove(ctx, bin, from, to, stateNode, again, workers)
	if err != nil {
		return rr, err
	}
	rr.second = second
	for _, l := range strings.Split(second.output, "\n") {
		if strings.Contains(l, "continued the earlier copy") {
			rr.summary = strings.TrimSpace(l)
		}
	}
	if rr.summary == "" {
		return rr, fmt.Errorf("the second run did not continue the copy:\n%s", second.output)
	}
	_, err = from.conn.Exec(ctx, "DO $$ DECLARE s text; BEGIN FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE 'sh0001old%' LOOP EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP; END $$")
	return rr, err
}

// reportResume compares the run that continued an interrupted copy with
// the uninterrupted fast moves.
func reportResume(w io.Writer, rows []moveRow, rr resumeRun) {
	var full []time.Duration
	for _, r := range rows {
		if strings.HasPrefix(r.copy, "fast") {
			full = append(full, r.copyTime())
		}
	}
	fmt.Fprintf(w, "\ninterrupted copy: SIGINT after %.2f s with %.0f%% of the shard on the destination; the second run:\n  %s\n", rr.interrupted.Seconds(), 100*rr.share, rr.summary)
	if len(full) == 0 {
		return
	}
	f := median(full)
	fmt.Fprintf(w, "  its copy (comparison, replaced chunks, tables not copied before, indexes) took %.2f s = %.2f× an uninterrupted fast copy's %.2f s (median); its verification %.2f s more\n",
		rr.second.copyTime().Seconds(), rr.second.copyTime().Seconds()/f.Seconds(), f.Seconds(), rr.second.verify.Seconds())
}
