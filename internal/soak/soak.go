// Package soak runs pgms applies under write load while a driver injects
// the faults production brings, on real servers, and checks what pgms
// promises: no shard active on two nodes, no acknowledged write missing
// from its shard's home, and no leftover once the cluster converged.
//
// One round re-places every shard, so that an apply moves all of them
// (moves of 30 shards or more), and runs it as a separate pgms process
// while faults arrive at seeded random times: immediate server stops,
// terminated backends (pgms's sessions and claims, walsenders, apply
// workers, the run lock's holder), a concurrent pgms move, apply and
// cleanup, DDL on a shard, and SIGKILL of the apply. Then applies run
// again, without faults, until the plan is empty; the invariants are
// checked after every apply. The same seed gives the same schedule of
// faults (their effect depends on timing).
package soak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/bench/move/workload"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

// Config describes a soak run.
type Config struct {
	Seed uint64
	// Shards is how many shards the cluster has (each round moves them
	// all); Writers how many of them are written to.
	Shards, Writers int
	// Rounds bounds the rounds; Duration, when set, runs rounds until it
	// has passed.
	Rounds   int
	Duration time.Duration
	// FaultEvery is the mean time between two faults during an apply.
	FaultEvery time.Duration
	// Binary is the pgms binary to run.
	Binary string
	// Log receives a line per event.
	Log io.Writer
}

// Report is what a run did.
type Report struct {
	Rounds      int
	Faults      map[string]int
	Moves       int // moves completed, from the journal
	Applies     int // pgms apply processes run
	Acked       int // writes acknowledged
	Lost        int // acknowledged writes missing (must be 0)
	Violations  []string
	Took        time.Duration
	FaultsTotal int
}

// String summarises the report on a few lines.
func (r Report) String() string {
	kinds := make([]string, 0, len(r.Faults))
	for k := range r.Faults {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var fs []string
	for _, k := range kinds {
		fs = append(fs, fmt.Sprintf("%s %d", k, r.Faults[k]))
	}
	return fmt.Sprintf("%d rounds in %v: %d pgms applies, %d moves done; %d faults injected (%s); %d writes acknowledged, %d lost; %d violations",
		r.Rounds, r.Took.Round(time.Second), r.Applies, r.Moves, r.FaultsTotal, strings.Join(fs, ", "), r.Acked, r.Lost, len(r.Violations))
}

// migration creates each new shard's table: what the writers need.
const migration = `#!/bin/sh
set -eu
IFS=','
for schema in $PGMS_SCHEMAS; do
  psql -v ON_ERROR_STOP=1 -q -v schema="$schema" <<'SQL'
SET search_path = :"schema";
CREATE TABLE IF NOT EXISTS items (id bigserial PRIMARY KEY, val bigint NOT NULL, note text);
INSERT INTO items (val) SELECT g FROM generate_series(1, 2000) g;
SQL
done
`

var nodeNames = []string{"a", "b", "c"}

type run struct {
	cfg     Config
	r       *rand.Rand
	dir     string
	servers []*pgtest.Server
	dsns    []string
	report  Report
	writers map[int]*workload.Writer
	mu      sync.Mutex
}

// Run starts three servers of its own, runs the rounds and returns the
// report; an error means the soak itself could not run or an invariant
// broke (the report says which).
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Shards == 0 {
		cfg.Shards = 30
	}
	if cfg.Writers == 0 {
		cfg.Writers = 6
	}
	if cfg.FaultEvery == 0 {
		cfg.FaultEvery = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	began := time.Now()
	rn := &run{cfg: cfg, r: rand.New(rand.NewPCG(cfg.Seed, 0x736f616b)), report: Report{Faults: map[string]int{}}, writers: map[int]*workload.Writer{}}
	rep, err := rn.run(ctx, began)
	rep.Took = time.Since(began)
	return rep, err
}

func (rn *run) run(ctx context.Context, began time.Time) (Report, error) {
	cfg := rn.cfg
	cl, err := pgtest.Start(ctx, len(nodeNames), pgtest.Options{Settings: map[string]string{"wal_retrieve_retry_interval": "100ms"}})
	if err != nil {
		return rn.report, err
	}
	defer cl.Close()
	rn.servers = cl.Servers
	if rn.dir, err = os.MkdirTemp("", "pgms-soak-"); err != nil {
		return rn.report, err
	}
	defer os.RemoveAll(rn.dir)
	migrate := filepath.Join(rn.dir, "migrate.sh")
	if err := os.WriteFile(migrate, []byte(migration), 0o755); err != nil {
		return rn.report, err
	}
	for _, s := range rn.servers {
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err != nil {
			return rn.report, err
		}
		_, err = c.Exec(ctx, "CREATE DATABASE app")
		c.Close(ctx)
		if err != nil {
			return rn.report, err
		}
		rn.dsns = append(rn.dsns, s.DSN("app"))
	}
	placement := make([]int, cfg.Shards+1) // shard → node index
	for s := range placement {
		placement[s] = s % len(nodeNames)
	}
	if err := rn.writeTopology(migrate, placement); err != nil {
		return rn.report, err
	}
	if err := rn.converge(ctx); err != nil {
		return rn.report, err
	}
	rn.startWriters(ctx)
	defer rn.stopWriters()
	for round := 1; ; round++ {
		if cfg.Duration > 0 && time.Since(began) >= cfg.Duration || cfg.Duration == 0 && round > max(cfg.Rounds, 1) {
			break
		}
		rn.logf("round %d: every shard moves to the next node", round)
		for s := range placement {
			placement[s] = (placement[s] + 1) % len(nodeNames)
		}
		if err := rn.writeTopology(migrate, placement); err != nil {
			return rn.report, err
		}
		rn.applyUnderFaults(ctx)
		if err := rn.check(ctx, false); err != nil {
			return rn.report, err
		}
		if err := rn.converge(ctx); err != nil {
			return rn.report, err
		}
		rn.report.Rounds = round
	}
	rn.stopWriters()
	rn.countMoves(ctx)
	if err := rn.verify(ctx); err != nil {
		return rn.report, err
	}
	return rn.report, nil
}

// countMoves reads from the journal on the state node how many moves
// succeeded.
func (rn *run) countMoves(ctx context.Context) {
	c, err := pgx.Connect(ctx, rn.dsns[0])
	if err != nil {
		return
	}
	defer c.Close(ctx)
	c.QueryRow(ctx, "SELECT count(*) FROM microsharding.pgms_steps WHERE kind = 'move' AND outcome = 'succeeded'").Scan(&rn.report.Moves) //nolint:errcheck // zero when unreadable
}

func (rn *run) logf(format string, args ...any) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	fmt.Fprintf(rn.cfg.Log, "%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func (rn *run) writeTopology(migrate string, placement []int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster {\n  migrate_command = [%q]\n  cleanup_after = \"0s\"\n}\n", migrate)
	for i, n := range nodeNames {
		fmt.Fprintf(&b, "node %q {\n  dsn = %q\n  max_concurrent_moves = 2\n}\n", n, rn.dsns[i])
	}
	for s := 1; s < len(placement); s++ {
		fmt.Fprintf(&b, "shards \"%d\" { node = %q }\n", s, nodeNames[placement[s]])
	}
	return os.WriteFile(filepath.Join(rn.dir, "topology.pgms.hcl"), []byte(b.String()), 0o644)
}

// pgms runs the pgms binary and returns its exit code and output.
func (rn *run) pgms(ctx context.Context, args ...string) (int, string) {
	cmd := exec.CommandContext(ctx, rn.cfg.Binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String()
	}
	return -1, out.String() + err.Error()
}

func (rn *run) config() string { return filepath.Join(rn.dir) }

// applyUnderFaults runs one apply while faults arrive, SIGKILL among them.
func (rn *run) applyUnderFaults(ctx context.Context) {
	cmd := exec.CommandContext(ctx, rn.cfg.Binary, "apply", "--config", rn.config(), "--auto-approve", "--parallelism", "2", "--progress", "1h")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		rn.logf("apply did not start: %v", err)
		return
	}
	rn.report.Applies++
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		wait := time.Duration(float64(rn.cfg.FaultEvery) * (0.25 + 1.5*rn.r.Float64()))
		select {
		case err := <-done:
			rn.logf("apply under faults ended: %v; last lines:\n%s", err, tail(out.String(), 4))
			return
		case <-time.After(wait):
		}
		rn.inject(ctx, cmd.Process)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// inject makes one fault happen.
func (rn *run) inject(ctx context.Context, apply *os.Process) {
	kinds := []string{"restart", "terminate-pgms", "terminate-walsender", "terminate-apply-worker", "terminate-lock-holder",
		"concurrent-move", "concurrent-apply", "concurrent-cleanup", "ddl", "sigkill"}
	kind := kinds[rn.r.IntN(len(kinds))]
	node := rn.r.IntN(len(rn.servers))
	shard := 1 + rn.r.IntN(rn.cfg.Shards)
	rn.report.Faults[kind]++
	rn.report.FaultsTotal++
	switch kind {
	case "restart":
		s := rn.servers[node]
		rn.logf("fault: immediate stop of node %s, started again", nodeNames[node])
		s.StopImmediate()
		time.Sleep(time.Duration(200+rn.r.IntN(1500)) * time.Millisecond)
		if err := s.Restart(ctx); err != nil {
			rn.logf("restart of %s failed: %v", nodeNames[node], err)
		}
	case "terminate-pgms", "terminate-walsender", "terminate-apply-worker", "terminate-lock-holder":
		where := map[string]string{
			"terminate-pgms":         "application_name LIKE 'pgms/%'",
			"terminate-walsender":    "backend_type = 'walsender'",
			"terminate-apply-worker": "backend_type = 'logical replication worker'",
			"terminate-lock-holder": `pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1
				AND classid = (8099562797139129710 >> 32)::oid AND objid = (8099562797139129710 & 4294967295)::oid)`,
		}[kind]
		if kind == "terminate-lock-holder" {
			node = 0 // the state node
		}
		pid := rn.terminate(ctx, node, where)
		rn.logf("fault: %s on %s (pid %d)", kind, nodeNames[node], pid)
	case "concurrent-move":
		to := (node + 1 + rn.r.IntN(len(nodeNames)-1)) % len(nodeNames)
		// Half the time with its journal and run lock on the destination,
		// so that only the shard's claims stand between it and the apply.
		args := []string{"move", fmt.Sprintf("--shard=%d", shard), "--from=" + rn.dsns[node], "--to=" + rn.dsns[to],
			"--activate-on-destination=yes", "--progress=1h"}
		if rn.r.IntN(2) == 0 {
			args = append(args, "--state-dsn="+rn.dsns[to])
		}
		code, out := rn.pgms(ctx, args...)
		rn.logf("fault: concurrent pgms move of shard %d %s → %s: exit %d: %s", shard, nodeNames[node], nodeNames[to], code, lastLine(out))
	case "concurrent-apply":
		code, out := rn.pgms(ctx, "apply", "--config", rn.config(), "--auto-approve")
		rn.logf("fault: concurrent pgms apply: exit %d: %s", code, lastLine(out))
	case "concurrent-cleanup":
		code, out := rn.pgms(ctx, "cleanup", "--yes", "--dsn", rn.dsns[0], "--dsn", rn.dsns[1], "--dsn", rn.dsns[2])
		rn.logf("fault: concurrent pgms cleanup: exit %d: %s", code, lastLine(out))
	case "ddl":
		c, err := pgx.Connect(ctx, rn.dsns[node])
		if err == nil {
			_, err = c.Exec(ctx, fmt.Sprintf(`DO $$ BEGIN
				IF to_regnamespace('sh%04d') IS NOT NULL THEN
				  EXECUTE format('ALTER TABLE sh%04d.items ADD COLUMN IF NOT EXISTS c%d int DEFAULT 1');
				END IF; END $$`, shard, shard, rn.r.IntN(1000)))
			c.Close(ctx)
		}
		rn.logf("fault: DDL on shard %d on %s: %v", shard, nodeNames[node], err)
	case "sigkill":
		apply.Signal(syscall.SIGKILL)
		rn.logf("fault: SIGKILL of the apply")
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := lines[len(lines)-1]
	if len(l) > 200 {
		l = l[:200] + "…"
	}
	return l
}

// terminate ends one random backend matching where on a node.
func (rn *run) terminate(ctx context.Context, node int, where string) int {
	c, err := pgx.Connect(ctx, rn.servers[node].DSN("postgres"))
	if err != nil {
		return 0
	}
	defer c.Close(ctx)
	var pids []int
	rows, err := c.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "+where+" ORDER BY pid")
	if err != nil {
		return 0
	}
	pids, _ = pgx.CollectRows(rows, pgx.RowTo[int])
	if len(pids) == 0 {
		return 0
	}
	pid := pids[rn.r.IntN(len(pids))]
	c.Exec(ctx, "SELECT pg_terminate_backend($1)", pid) //nolint:errcheck // the next look tells
	return pid
}

// converge applies until an apply succeeds and the plan shows nothing
// more to do, checking the invariants after each apply.
func (rn *run) converge(ctx context.Context) error {
	for attempt := 1; attempt <= 8; attempt++ {
		code, out := rn.pgms(ctx, "apply", "--config", rn.config(), "--auto-approve", "--parallelism", "2", "--progress", "1h")
		rn.report.Applies++
		if err := rn.check(ctx, false); err != nil {
			return err
		}
		if code != 0 {
			rn.logf("converging: apply exit %d: %s", code, lastLine(out))
			time.Sleep(time.Second)
			continue
		}
		code, out = rn.pgms(ctx, "plan", "--config", rn.config(), "-detailed-exitcode")
		if code == 0 {
			return rn.check(ctx, true)
		}
		rn.logf("converging: plan exit %d:\n%s", code, tail(out, 6))
	}
	return fmt.Errorf("the cluster did not converge after 8 applies")
}

// check verifies that no shard is active on two nodes and, once settled,
// that nothing is left over on any node.
func (rn *run) check(ctx context.Context, settled bool) error {
	seen := map[string][]string{}
	for i, d := range rn.dsns {
		c, err := pgx.Connect(ctx, d)
		if err != nil {
			if settled {
				return err
			}
			continue
		}
		var active []string
		c.QueryRow(ctx, "SELECT microsharding.microsharding_list_active_shards()::text[]").Scan(&active) //nolint:errcheck // a node without the library has none
		for _, s := range active {
			seen[s] = append(seen[s], nodeNames[i])
		}
		if settled {
			var left string
			err := c.QueryRow(ctx, `SELECT concat_ws(' ',
				(SELECT string_agg(pubname, ',') FROM pg_publication),
				(SELECT string_agg(slot_name, ',') FROM pg_replication_slots WHERE database = current_database()),
				(SELECT string_agg(subname, ',') FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())),
				(SELECT string_agg(nspname, ',') FROM pg_namespace WHERE nspname ~ '^sh[0-9]+(old|new)'
				   OR starts_with(COALESCE(obj_description(oid, 'pg_namespace'), ''), 'pgms: unfinished copy')))`).Scan(&left)
			if err == nil && strings.TrimSpace(left) != "" {
				c.Close(ctx)
				return fmt.Errorf("leftovers on %s after convergence: %s", nodeNames[i], left)
			}
		}
		c.Close(ctx)
	}
	for s, on := range seen {
		if len(on) > 1 {
			v := fmt.Sprintf("%s active on %v", s, on)
			rn.report.Violations = append(rn.report.Violations, v)
			return errors.New(v)
		}
	}
	return nil
}

func (rn *run) startWriters(ctx context.Context) {
	for _, s := range rn.r.Perm(rn.cfg.Shards)[:min(rn.cfg.Writers, rn.cfg.Shards)] {
		shard := s + 1
		w, err := workload.Start(ctx, workload.Config{DSNs: rn.dsns, Schema: fmt.Sprintf("sh%04d", shard), Table: "items",
			Interval: 5 * time.Millisecond, UpdateShare: 0.4})
		if err != nil {
			rn.logf("writer of shard %d: %v", shard, err)
			continue
		}
		rn.writers[shard] = w
	}
}

func (rn *run) stopWriters() {
	for _, w := range rn.writers {
		w.Stop()
	}
}

// verify checks every writer's acknowledged rows on its shard's home.
func (rn *run) verify(ctx context.Context) error {
	var problems []string
	for shard, w := range rn.writers {
		st := w.Stats()
		rn.report.Acked += st.Acked
		rn.report.Violations = append(rn.report.Violations, st.Violations...)
		schema := fmt.Sprintf("sh%04d", shard)
		home := -1
		for i, d := range rn.dsns {
			c, err := pgx.Connect(ctx, d)
			if err != nil {
				return err
			}
			var active bool
			c.QueryRow(ctx, "SELECT $1 = ANY(microsharding.microsharding_list_active_shards()::text[])", schema).Scan(&active) //nolint:errcheck // false when unknown
			if active {
				home = i
				if err := w.Verify(ctx, c); err != nil {
					problems = append(problems, fmt.Sprintf("%s on %s: %v", schema, nodeNames[i], err))
					rn.report.Lost += strings.Count(err.Error(), "missing")
				}
			}
			c.Close(ctx)
		}
		if home < 0 {
			problems = append(problems, schema+" is active on no node")
		}
	}
	if len(problems) > 0 || len(rn.report.Violations) > 0 {
		return fmt.Errorf("after the soak: %s %s", strings.Join(problems, "; "), strings.Join(rn.report.Violations, "; "))
	}
	return nil
}
