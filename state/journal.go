package state

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
)

// The journal lives in three tables of the library schema on the state
// node: one row per run (a pgms command that changes the cluster), one per
// step of a run (a move, …) updated as the step progresses, and the holder
// row of the run lock.
const journalDDL = `
CREATE TABLE IF NOT EXISTS %[1]s.pgms_runs (
  id          bigserial PRIMARY KEY,
  command     text NOT NULL,
  args        text NOT NULL DEFAULT '',
  host        text NOT NULL DEFAULT '',
  pid         integer NOT NULL DEFAULT 0,
  os_user     text NOT NULL DEFAULT '',
  started_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  outcome     text NOT NULL DEFAULT 'running',
  error       text
);
CREATE TABLE IF NOT EXISTS %[1]s.pgms_steps (
  id          bigserial PRIMARY KEY,
  run_id      bigint NOT NULL REFERENCES %[1]s.pgms_runs (id) ON DELETE CASCADE,
  kind        text NOT NULL,
  shard       integer,
  schema_name text NOT NULL DEFAULT '',
  source      text NOT NULL DEFAULT '',
  destination text NOT NULL DEFAULT '',
  strategy    text NOT NULL DEFAULT '',
  phase       text NOT NULL DEFAULT '',
  outcome     text NOT NULL DEFAULT 'running',
  started_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  bytes       bigint NOT NULL DEFAULT 0,
  total_bytes bigint NOT NULL DEFAULT 0,
  rows        bigint NOT NULL DEFAULT 0,
  tables      jsonb,
  lag_bytes   bigint,
  retries     integer NOT NULL DEFAULT 0,
  backfill_ms double precision,
  pause_ms    double precision,
  core_ms     double precision,
  total_ms    double precision,
  error       text
);
CREATE INDEX IF NOT EXISTS pgms_steps_run_id_idx ON %[1]s.pgms_steps (run_id);
CREATE TABLE IF NOT EXISTS %[1]s.pgms_lock (
  name        text PRIMARY KEY,
  backend_pid integer NOT NULL,
  host        text NOT NULL DEFAULT '',
  pid         integer NOT NULL DEFAULT 0,
  os_user     text NOT NULL DEFAULT '',
  command     text NOT NULL DEFAULT '',
  run_id      bigint,
  started_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE %[1]s.pgms_steps ADD COLUMN IF NOT EXISTS blocked_ms double precision;
ALTER TABLE %[1]s.pgms_runs ADD COLUMN IF NOT EXISTS pgms_version text NOT NULL DEFAULT '';
ALTER TABLE %[1]s.pgms_runs ADD COLUMN IF NOT EXISTS ci_run text NOT NULL DEFAULT '';
ALTER TABLE %[1]s.pgms_steps ADD COLUMN IF NOT EXISTS verify text;
`

// journalNewestColumn is the column of pgms_runs the latest journal DDL
// added to that table, journalNewestStepColumn the one of pgms_steps; the
// latter comes last, so its presence says the tables are up to date.
const (
	journalNewestColumn     = "ci_run"
	journalNewestStepColumn = "verify"
)

// journalDDLLock serialises the CREATE TABLE IF NOT EXISTS of concurrent
// first runs, which would otherwise race on the catalog.
const journalDDLLock = 0x70676d735f6a6e6c // "pgms_jnl"

// Outcome of a run or a step.
type Outcome string

// Outcomes recorded in the journal.
const (
	OutcomeRunning     Outcome = "running"
	OutcomeSucceeded   Outcome = "succeeded"
	OutcomeFailed      Outcome = "failed"
	OutcomeInterrupted Outcome = "interrupted"
	// OutcomeAbandoned marks a run found "running" by a later run that got
	// the lock: its process died without closing it.
	OutcomeAbandoned Outcome = "abandoned"
)

// Journal records runs and their steps on the state node. Its methods are
// safe for concurrent use (parallel moves share one journal); a nil
// *Journal records nothing.
//
// The journal's connection is its own: the run lock lives on another
// session (RunLock), so a journal write that times out, or a connection
// the journal loses, never ends the lock. A write on a connection that is
// gone reconnects once.
type Journal struct {
	mu     sync.Mutex
	conn   *pgx.Conn
	dsn    string
	node   string
	schema string
	run    int64
}

// OpenJournal connects to the state node and creates the journal tables in
// the library schema when they are missing. The library must be installed
// there.
func OpenJournal(ctx context.Context, connString, librarySchema string) (*Journal, error) {
	n, err := pgutil.Connect(ctx, connString)
	if err != nil {
		return nil, err
	}
	j := &Journal{conn: n.Conn, dsn: connString, node: n.Name, schema: librarySchema}
	if err := ensureJournalTables(ctx, n.Conn, n.Name, librarySchema); err != nil {
		n.Close()
		return nil, err
	}
	return j, nil
}

// exec runs a journal write, reconnecting once when the connection is
// gone (a timed-out write closes it). The caller holds j.mu.
func (j *Journal) exec(ctx context.Context, q string, args ...any) error {
	if j.conn.IsClosed() {
		if err := j.reconnect(ctx); err != nil {
			return err
		}
	}
	_, err := j.conn.Exec(ctx, q, args...)
	if err != nil && j.conn.IsClosed() && ctx.Err() == nil {
		if rerr := j.reconnect(ctx); rerr != nil {
			return err
		}
		_, err = j.conn.Exec(ctx, q, args...)
	}
	return err
}

func (j *Journal) reconnect(ctx context.Context) error {
	n, err := pgutil.Connect(ctx, j.dsn)
	if err != nil {
		return err
	}
	j.conn.Close(ctx)
	j.conn = n.Conn
	return nil
}

// Node is the printable name of the state node.
func (j *Journal) Node() string { return j.node }

// ensureJournalTables creates the journal tables when they are missing.
func ensureJournalTables(ctx context.Context, conn *pgx.Conn, node, schema string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL", pgutil.Quote(schema)).Scan(&exists); err != nil {
		return pgutil.Wrap(err, "state node %s: look for schema %s", node, schema)
	}
	if !exists {
		return fmt.Errorf("state node %s: the library schema %q does not exist; run pgms install there first", node, schema)
	}
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL
		  AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($3) AND attname = $4 AND NOT attisdropped)`,
		pgutil.Quote(schema, "pgms_lock"), pgutil.Quote(schema, "pgms_runs"), pgutil.Quote(schema, "pgms_steps"), journalNewestStepColumn).Scan(&exists); err != nil {
		return pgutil.Wrap(err, "state node %s: look for the journal tables", node)
	}
	if exists {
		return nil
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(journalDDLLock)); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(journalDDL, pgutil.Quote(schema))); err != nil {
		return pgutil.Wrap(err, "state node %s: create journal tables", node)
	}
	return tx.Commit(ctx)
}

// Close closes the journal's connection.
func (j *Journal) Close(ctx context.Context) {
	if j == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.conn.Close(ctx)
}

func (j *Journal) table(name string) string { return pgutil.Quote(j.schema, name) }

// Invocation describes the process a run belongs to.
type Invocation struct {
	Command string // e.g. "move"
	Args    string // the command line without passwords
	Host    string
	PID     int
	User    string
	// Version is the pgms version; CIRun the CI job (a URL or id) when the
	// environment names one.
	Version string
	CIRun   string
}

// ThisProcess describes the current process running command with args;
// passwords in args are removed.
func ThisProcess(command, args string) Invocation {
	host, _ := os.Hostname()
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return Invocation{Command: command, Args: dsn.Redact(args), Host: host, PID: os.Getpid(), User: name}
}

// BeginRun records the start of a run and returns its id.
func (j *Journal) BeginRun(ctx context.Context, inv Invocation) (int64, error) {
	if j == nil {
		return 0, nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.conn.IsClosed() {
		if err := j.reconnect(ctx); err != nil {
			return 0, err
		}
	}
	err := j.conn.QueryRow(ctx, "INSERT INTO "+j.table("pgms_runs")+` (command, args, host, pid, os_user, pgms_version, ci_run)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`, inv.Command, inv.Args, inv.Host, inv.PID, inv.User, inv.Version, inv.CIRun).Scan(&j.run)
	if err != nil {
		return 0, pgutil.Wrap(err, "state node %s: record run", j.node)
	}
	return j.run, nil
}

// EndRun records the end of the current run.
func (j *Journal) EndRun(ctx context.Context, outcome Outcome, runErr error) error {
	if j == nil || j.run == 0 {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	err := j.exec(ctx, "UPDATE "+j.table("pgms_runs")+` SET finished_at = now(), outcome = $2, error = $3 WHERE id = $1`,
		j.run, string(outcome), errText(runErr))
	return pgutil.Wrap(err, "state node %s: record end of run", j.node)
}

func errText(err error) *string {
	if err == nil {
		return nil
	}
	s := pgutil.Describe(err)
	return &s
}

// StepStart describes a step when it begins.
type StepStart struct {
	Kind        string // "move"
	Shard       int
	Schema      string
	Source      string // node names, never DSNs
	Destination string
	Strategy    string
}

// TableProgress is the copy progress of one table.
type TableProgress struct {
	Name  string `json:"name"`
	State string `json:"state"` // "waiting", "copying", "ready"
	Bytes int64  `json:"bytes"`
	Rows  int64  `json:"rows"`
	// TotalBytes is the source table's size, an estimate of what the copy
	// will move.
	TotalBytes int64 `json:"total_bytes"`
}

// StepState is what a step reports as it progresses; every field is written
// each time (zero durations are stored as NULL).
type StepState struct {
	Phase      string
	Bytes      int64
	TotalBytes int64
	Rows       int64
	Tables     []TableProgress
	LagBytes   *int64
	Retries    int
	Backfill   time.Duration
	Pause      time.Duration
	Core       time.Duration
	Total      time.Duration
	// Blocked is the longest time writers to the shard were blocked by a
	// cutover attempt: the wait for the table locks (writers queue behind
	// a waiting lock request) plus the time the locks were held.
	Blocked time.Duration
	// Verify is the verification gate's outcome, one line ("" before it
	// ran, or when it is off).
	Verify string
}

// Step is a step being recorded. A nil *Step records nothing.
type Step struct {
	j  *Journal
	id int64
}

// BeginStep records the start of a step of the current run.
func (j *Journal) BeginStep(ctx context.Context, s StepStart) (*Step, error) {
	if j == nil {
		return nil, nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.run == 0 {
		return nil, fmt.Errorf("state node %s: a step needs a run (BeginRun)", j.node)
	}
	st := &Step{j: j}
	if j.conn.IsClosed() {
		if err := j.reconnect(ctx); err != nil {
			return nil, err
		}
	}
	err := j.conn.QueryRow(ctx, "INSERT INTO "+j.table("pgms_steps")+` (run_id, kind, shard, schema_name, source, destination, strategy, phase)
		VALUES ($1, $2, $3, $4, $5, $6, $7, 'start') RETURNING id`,
		j.run, s.Kind, s.Shard, s.Schema, s.Source, s.Destination, s.Strategy).Scan(&st.id)
	if err != nil {
		return nil, pgutil.Wrap(err, "state node %s: record step", j.node)
	}
	return st, nil
}

func ms(d time.Duration) *float64 {
	if d == 0 {
		return nil
	}
	v := float64(d) / float64(time.Millisecond)
	return &v
}

// Update writes the step's current state.
func (s *Step) Update(ctx context.Context, st StepState) error {
	return s.write(ctx, st, OutcomeRunning, nil)
}

// End writes the step's final state and outcome.
func (s *Step) End(ctx context.Context, st StepState, outcome Outcome, stepErr error) error {
	return s.write(ctx, st, outcome, stepErr)
}

func (s *Step) write(ctx context.Context, st StepState, outcome Outcome, stepErr error) error {
	if s == nil {
		return nil
	}
	var tables []byte
	if st.Tables != nil {
		tables, _ = json.Marshal(st.Tables)
	}
	s.j.mu.Lock()
	defer s.j.mu.Unlock()
	err := s.j.exec(ctx, "UPDATE "+s.j.table("pgms_steps")+` SET
		  phase = $2, outcome = $3, updated_at = now(),
		  finished_at = CASE WHEN $3 = 'running' THEN NULL ELSE now() END,
		  bytes = $4, total_bytes = $5, rows = $6, tables = COALESCE($7::jsonb, tables), lag_bytes = $8,
		  retries = $9, backfill_ms = $10, pause_ms = $11, core_ms = $12, total_ms = $13,
		  error = $14, blocked_ms = $15, verify = NULLIF($16, '')
		WHERE id = $1`,
		s.id, st.Phase, string(outcome), st.Bytes, st.TotalBytes, st.Rows, tables, st.LagBytes,
		st.Retries, ms(st.Backfill), ms(st.Pause), ms(st.Core), ms(st.Total), errText(stepErr), ms(st.Blocked), st.Verify)
	return pgutil.Wrap(err, "state node %s: record step", s.j.node)
}
