package state

import (
	"context"
	"encoding/json"
	"time"

	"github.com/pgms-dev/pgms/internal/pgutil"
)

// Run is a run as the journal recorded it.
type Run struct {
	ID       int64      `json:"id"`
	Command  string     `json:"command"`
	Args     string     `json:"args"`
	Host     string     `json:"host"`
	PID      int        `json:"pid"`
	User     string     `json:"user"`
	Started  time.Time  `json:"started_at"`
	Finished *time.Time `json:"finished_at,omitempty"`
	Outcome  Outcome    `json:"outcome"`
	Error    string     `json:"error,omitempty"`
	// Version is the pgms version that ran; CIRun the CI job it ran in,
	// when the environment said so.
	Version string    `json:"pgms_version,omitempty"`
	CIRun   string    `json:"ci_run,omitempty"`
	Steps   []StepRow `json:"steps"`
}

// StepRow is a step as the journal recorded it. Durations are in
// milliseconds, absent when not measured.
type StepRow struct {
	ID          int64           `json:"id"`
	Kind        string          `json:"kind"`
	Shard       *int            `json:"shard,omitempty"`
	Schema      string          `json:"schema"`
	Source      string          `json:"source"`
	Destination string          `json:"destination"`
	Strategy    string          `json:"strategy,omitempty"`
	Phase       string          `json:"phase"`
	Outcome     Outcome         `json:"outcome"`
	Started     time.Time       `json:"started_at"`
	Updated     time.Time       `json:"updated_at"`
	Finished    *time.Time      `json:"finished_at,omitempty"`
	Bytes       int64           `json:"bytes"`
	TotalBytes  int64           `json:"total_bytes"`
	Rows        int64           `json:"rows"`
	Tables      []TableProgress `json:"tables,omitempty"`
	LagBytes    *int64          `json:"lag_bytes,omitempty"`
	Retries     int             `json:"retries"`
	BackfillMS  *float64        `json:"backfill_ms,omitempty"`
	PauseMS     *float64        `json:"pause_ms,omitempty"`
	CoreMS      *float64        `json:"core_ms,omitempty"`
	TotalMS     *float64        `json:"total_ms,omitempty"`
	// BlockedMS is the longest time writers were blocked by a cutover
	// attempt (lock wait plus time under the lock).
	BlockedMS *float64 `json:"writers_blocked_ms,omitempty"`
	// Verify is the verification gate's outcome (see executor.VerifyResult).
	Verify string `json:"verify,omitempty"`
	Error  string `json:"error,omitempty"`
}

// ReadRuns returns the last limit runs, newest first, with their steps. A
// state node without journal tables has no runs.
func ReadRuns(ctx context.Context, q Querier, librarySchema string, limit int) ([]Run, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
		pgutil.Quote(librarySchema, "pgms_runs"), pgutil.Quote(librarySchema, "pgms_steps")).Scan(&exists); err != nil {
		return nil, pgutil.Wrap(err, "look for the journal")
	}
	if !exists {
		return nil, nil
	}
	// A journal written by an older pgms lacks the newer columns.
	var current, verify bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped),
		  EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass($3) AND attname = $4 AND NOT attisdropped)`,
		pgutil.Quote(librarySchema, "pgms_runs"), journalNewestColumn, pgutil.Quote(librarySchema, "pgms_steps"), journalNewestStepColumn).Scan(&current, &verify); err != nil {
		return nil, pgutil.Wrap(err, "look for the journal")
	}
	newer, newerStep := "pgms_version, ci_run", "blocked_ms"
	if !current {
		newer, newerStep = "''::text, ''::text", "NULL::float8"
	}
	if verify {
		newerStep += ", COALESCE(verify, '')"
	} else {
		newerStep += ", ''::text"
	}
	rows, err := q.Query(ctx, `SELECT id, command, args, host, pid, os_user, started_at, finished_at, outcome, COALESCE(error, ''), `+newer+`
		FROM `+pgutil.Quote(librarySchema, "pgms_runs")+` ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, pgutil.Wrap(err, "read runs")
	}
	var runs []Run
	index := map[int64]int{}
	var ids []int64
	for rows.Next() {
		var r Run
		var outcome string
		if err := rows.Scan(&r.ID, &r.Command, &r.Args, &r.Host, &r.PID, &r.User, &r.Started, &r.Finished, &outcome, &r.Error, &r.Version, &r.CIRun); err != nil {
			rows.Close()
			return nil, err
		}
		r.Outcome = Outcome(outcome)
		r.Steps = []StepRow{}
		index[r.ID] = len(runs)
		ids = append(ids, r.ID)
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err = q.Query(ctx, `SELECT run_id, id, kind, shard, schema_name, source, destination, strategy, phase, outcome,
		  started_at, updated_at, finished_at, bytes, total_bytes, rows, tables, lag_bytes, retries,
		  backfill_ms, pause_ms, core_ms, total_ms, COALESCE(error, ''), `+newerStep+`
		FROM `+pgutil.Quote(librarySchema, "pgms_steps")+` WHERE run_id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		return nil, pgutil.Wrap(err, "read steps")
	}
	defer rows.Close()
	for rows.Next() {
		var s StepRow
		var run int64
		var outcome string
		var tables []byte
		if err := rows.Scan(&run, &s.ID, &s.Kind, &s.Shard, &s.Schema, &s.Source, &s.Destination, &s.Strategy, &s.Phase, &outcome,
			&s.Started, &s.Updated, &s.Finished, &s.Bytes, &s.TotalBytes, &s.Rows, &tables, &s.LagBytes, &s.Retries,
			&s.BackfillMS, &s.PauseMS, &s.CoreMS, &s.TotalMS, &s.Error, &s.BlockedMS, &s.Verify); err != nil {
			return nil, err
		}
		s.Outcome = Outcome(outcome)
		if len(tables) > 0 {
			json.Unmarshal(tables, &s.Tables) //nolint:errcheck // written by Step.write
		}
		r := &runs[index[run]]
		r.Steps = append(r.Steps, s)
	}
	return runs, rows.Err()
}
