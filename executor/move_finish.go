package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/state"
)

// readSeqs reads the sequences of a schema on the source: after a crash
// past the commit, the renamed schema's sequences hold the final values
// (nothing can use them by name any more).
func (m *move) readSeqs(ctx context.Context, schema string) ([]seqValue, *string, error) {
	rows, err := m.src.Conn.Query(ctx, `SELECT c.relname, pg_catalog.pg_sequence_last_value(c.oid)
		FROM pg_catalog.pg_class c WHERE c.relkind = 'S'
		  AND c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1)
		ORDER BY c.relname`, schema)
	if err != nil {
		return nil, nil, pgutil.Wrap(err, "node %s: read the sequences of %s", m.src.Name, schema)
	}
	var out []seqValue
	for rows.Next() {
		var s seqValue
		if err := rows.Scan(&s.Name, &s.Value); err != nil {
			return nil, nil, err
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, pgutil.Wrap(err, "node %s: read the sequences of %s", m.src.Name, schema)
	}
	var comment *string
	err = m.src.Conn.QueryRow(ctx, `SELECT obj_description(oid, 'pg_namespace') FROM pg_catalog.pg_namespace WHERE nspname = $1`, schema).Scan(&comment)
	if err != nil {
		return nil, nil, pgutil.Wrap(err, "node %s: read the comment of %s", m.src.Name, schema)
	}
	return out, comment, nil
}

// setvalSQL sets the destination's sequences to the source's exact
// positions, in one statement.
func (m *move) setvalSQL(schema string, seqs []seqValue) string {
	var calls []string
	for _, s := range seqs {
		if s.Value == nil {
			continue // never used on the source; the copy's is fresh too
		}
		calls = append(calls, fmt.Sprintf("pg_catalog.setval(%s::regclass, %d, true)", quoteLiteral(pgutil.Quote(schema, s.Name)), *s.Value))
	}
	if len(calls) == 0 {
		return ""
	}
	return "SELECT " + strings.Join(calls, ", ")
}

func (m *move) commentSQL(schema string) string {
	c := "NULL"
	if m.comment != nil {
		c = quoteLiteral(*m.comment)
	}
	return "COMMENT ON SCHEMA " + pgutil.Quote(schema) + " IS " + c
}

// finish completes a committed cutover on the destination: once the
// source's standbys have the commit, the sequences, the schema's own
// comment in place of the copy's mark, and activation, in one
// transaction; then the replication objects go. It runs to the end even
// when the context is cancelled: the shard is served nowhere until it is
// done. Each activation attempt is bounded, and attempts go on for
// ActivationTimeout; if the destination then provably did not activate,
// the source is restored instead, so that the shard has a home again.
func (m *move) finish(ctx context.Context, cr cutoverResult) error {
	ctx = context.WithoutCancel(ctx)
	m.res.OldSchema = cr.old
	if err := m.revive(ctx); err != nil {
		return err
	}
	resumed := cr.locked.IsZero()
	if !cr.haveSeqs {
		if err := m.phase(ctx, PhaseFinish, fmt.Sprintf("activating %s on %s (sequences from %s)", m.schema, m.dst.Name, cr.old)); err != nil {
			return err
		}
		seqs, comment, err := m.readSeqs(ctx, cr.old)
		if err != nil {
			return err
		}
		if w, ok := names.ParseWindowMark(ptrOr(comment, "")); ok {
			comment = w.Comment
		}
		cr.seqs, m.comment = seqs, comment
	}
	if err := m.waitStandbys(ctx, cr.commitLSN, resumed); err != nil {
		return err
	}
	stmts := []string{activeListLock}
	// The sequences are set only while the shard is not active yet: an
	// attempt whose reply was lost may have activated it, and the
	// application may have used the sequences since.
	if s := m.setvalSQL(m.schema, cr.seqs); s != "" {
		stmts = append(stmts, s+fmt.Sprintf(" WHERE NOT (%s = ANY (%s()))", quoteLiteral(m.schema), pgutil.Quote(m.lib, "microsharding_active_shards_")))
	}
	stmts = append(stmts, m.commentSQL(m.schema))
	if cr.window {
		stmts = append(stmts, m.streamStartSQL())
	}
	if m.spec.Rollback {
		// The old home was fenced during its window. A rollback resumed
		// after its commit read no table list: the fences say where they are.
		tables := tableNames(m.tables)
		if len(tables) == 0 {
			var err error
			if tables, err = m.fencedTables(ctx, m.dst); err != nil {
				return err
			}
		}
		stmts = append(stmts, unfenceSQL(m.schema, tables)...)
	}
	if !m.keepsInactive() {
		stmts = append(stmts, fmt.Sprintf("SELECT * FROM %s(%d)", pgutil.Quote(m.lib, "microsharding_ensure_active"), m.spec.Shard))
	}
	activate := strings.Join(stmts, ";\n")
	began := time.Now()
	deadline := began.Add(m.opts.ActivationTimeout)
	var err error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, queryTimeout)
		if err = m.revive(actx); err == nil {
			_, err = execSimple(actx, m.dst.Conn, activate)
		}
		cancel()
		if err == nil {
			break
		}
		if errors.Is(err, state.ErrClaimLost) {
			return err
		}
		outage := time.Since(cr.committed)
		if cr.committed.IsZero() {
			outage = time.Since(began)
		}
		if time.Now().After(deadline) {
			if restored, rerr := m.restoreSource(ctx, cr); restored {
				return fmt.Errorf("node %s: the shard could not be activated there for %v (%s); it was not active there, so %s was restored on %s, which serves it again: the move is undone", m.dst.Name, m.opts.ActivationTimeout, pgutil.Describe(err), m.schema, m.src.Name)
			} else if rerr != nil {
				err = fmt.Errorf("%w; restoring the source was not possible either: %w", err, rerr)
			}
			return pgutil.Wrap(err, "node %s: activate %s: it has been served by no node for %v; run the same move again to finish", m.dst.Name, m.schema, outage.Round(time.Second))
		}
		m.event(PhaseFinish, EventWarning, fmt.Sprintf("activation on %s failed (%s); %s has been served by no node for %v; retrying for up to %v",
			m.dst.Name, pgutil.Describe(err), m.schema, outage.Round(time.Millisecond), m.opts.ActivationTimeout))
		time.Sleep(min(backoff(attempt), 2*time.Second))
	}
	active := time.Now()
	if !resumed {
		m.res.Pause, m.res.Core = active.Sub(cr.locked), cr.committed.Sub(cr.locked)
		if gap := active.Sub(began); gap > time.Second {
			m.res.Outage = gap
		}
		m.noteBlocked(active.Sub(cr.sent))
		m.mu.Lock()
		m.progress.Pause, m.progress.Core = m.res.Pause, m.res.Core
		blocked := m.res.Blocked
		m.mu.Unlock()
		m.rep.Report(Event{Time: active, Shard: m.spec.Shard, Schema: m.schema, Phase: PhaseCutover, Kind: EventCutover, LagBytes: -1,
			Cutover: &CutoverStats{LockWait: cr.lockWait, Pause: m.res.Pause, Core: m.res.Core, WritersBlocked: blocked, Retries: m.res.Retries, OldSchema: cr.old}})
		m.setPhase(ctx, PhaseFinish, fmt.Sprintf("%s %s on %s; writers blocked at most %s (this attempt: lock wait %s + pause %s; lock to commit %s), %d retries; source renamed to %s",
			m.schema, map[bool]string{true: "kept inactive", false: "active"}[m.keepsInactive()], m.dst.Name,
			units.FormatMS(blocked), units.FormatMS(cr.lockWait), units.FormatMS(m.res.Pause), units.FormatMS(m.res.Core), m.res.Retries, cr.old))
	} else {
		m.event(PhaseFinish, EventInfo, fmt.Sprintf("%s active on %s; source renamed to %s", m.schema, m.dst.Name, cr.old))
	}
	if err := fault.Point(ctx, "move.finish.end"); err != nil {
		return err
	}
	if err := m.cleanupArtifacts(ctx); err != nil {
		return err
	}
	if cr.window {
		return m.openWindow(ctx)
	}
	return nil
}

// restoreSource gives the shard its home back on the source after an
// activation that kept failing, but only when the destination provably did
// not activate it: it answers, and shows the copy still inactive and
// marked. The source's schema gets its name and its place in the active
// list back in one transaction; the copy is then undone like any
// unfinished one.
func (m *move) restoreSource(ctx context.Context, cr cutoverResult) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if m.keepsInactive() {
		return false, nil
	}
	if err := m.revive(rctx); err != nil {
		return false, err
	}
	var active, marked bool
	err := m.dst.Conn.QueryRow(rctx, fmt.Sprintf(`SELECT %s = ANY (%s()), COALESCE(starts_with(obj_description(to_regnamespace(%s), 'pg_namespace'), %s), false)`,
		quoteLiteral(m.schema), pgutil.Quote(m.lib, "microsharding_active_shards_"), quoteLiteral(pgutil.Quote(m.schema)), quoteLiteral(names.CopyMarkPrefix)),
		pgx.QueryExecModeSimpleProtocol).Scan(&active, &marked)
	if err != nil {
		return false, pgutil.Wrap(err, "node %s: read whether %s is active", m.dst.Name, m.schema)
	}
	if active || !marked {
		return false, fmt.Errorf("node %s shows %s active or no longer marked as a copy, so the activation may have taken effect", m.dst.Name, m.schema)
	}
	stmts := []string{"BEGIN", activeListLock}
	if cr.window {
		stmts = append(stmts, unfenceSQL(m.schema, tableNames(m.tables))...)
		stmts = append(stmts, m.commentSQL(m.schema))
	} else {
		stmts = append(stmts, "ALTER SCHEMA "+pgutil.Quote(cr.old)+" RENAME TO "+pgutil.Quote(m.schema))
	}
	stmts = append(stmts, fmt.Sprintf("SELECT * FROM %s(%d)", pgutil.Quote(m.lib, "microsharding_ensure_active"), m.spec.Shard), "COMMIT")
	_, err = execSimple(rctx, m.src.Conn, strings.Join(stmts, ";\n"))
	if err != nil {
		return false, pgutil.Wrap(err, "node %s: restore %s", m.src.Name, m.schema)
	}
	m.committed = false
	m.event(PhaseFinish, EventWarning, fmt.Sprintf("%s restored on %s: it serves the shard again", m.schema, m.src.Name))
	return true, nil
}

// finishCopyOnly ends a move that must not activate: the copy is frozen
// (subscription disabled), given the source's sequence positions, renamed
// to the inactive-copy name and unmarked, all but the freezing in one
// transaction; the source keeps serving the shard untouched.
func (m *move) finishCopyOnly(ctx context.Context) error {
	newName := names.NewSchema(m.schema)
	if err := m.phase(ctx, PhaseFinish, fmt.Sprintf("keeping the copy on %s as %s, inactive; %s stays active on %s", m.dst.Name, newName, m.schema, m.src.Name)); err != nil {
		return err
	}
	if _, err := m.dst.Conn.Exec(ctx, "ALTER SUBSCRIPTION "+pgutil.Quote(m.sub)+" DISABLE"); err != nil {
		return m.interrupted(ctx, pgutil.Wrap(err, "node %s: disable subscription %s", m.dst.Name, m.sub))
	}
	for {
		var running bool
		err := m.dst.Conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_subscription WHERE subid = `+subscriptionOID+` AND pid IS NOT NULL)`, m.sub).Scan(&running)
		if err != nil {
			return m.interrupted(ctx, pgutil.Wrap(err, "node %s: wait for subscription %s to stop", m.dst.Name, m.sub))
		}
		if !running {
			break
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("%w: %w", ErrInterrupted, err)
		}
	}
	// Read after the copy stopped: the values are at least those of any row
	// it holds.
	seqs, _, err := m.readSeqs(ctx, m.schema)
	if err != nil {
		return err
	}
	var exists bool
	if err := m.dst.Conn.QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL", pgutil.Quote(newName)).Scan(&exists); err != nil {
		return pgutil.Wrap(err, "node %s", m.dst.Name)
	}
	if exists {
		m.event(PhaseFinish, EventInfo, fmt.Sprintf("replacing the earlier inactive copy %s on %s", newName, m.dst.Name))
	}
	var stmts []string
	if s := m.setvalSQL(m.schema, seqs); s != "" {
		stmts = append(stmts, s)
	}
	stmts = append(stmts,
		"DROP SCHEMA IF EXISTS "+pgutil.Quote(newName)+" CASCADE",
		"ALTER SCHEMA "+pgutil.Quote(m.schema)+" RENAME TO "+pgutil.Quote(newName),
		m.commentSQL(newName),
		"ALTER SUBSCRIPTION "+pgutil.Quote(m.sub)+" SET (slot_name = NONE)",
		"DROP SUBSCRIPTION "+pgutil.Quote(m.sub))
	if _, err := execSimple(ctx, m.dst.Conn, strings.Join(stmts, ";\n")); err != nil {
		return m.interrupted(ctx, pgutil.Wrap(err, "node %s: rename the copy to %s", m.dst.Name, newName))
	}
	m.committed = true // nothing of the destination is left to undo
	m.res.NewSchema = newName
	if err := fault.Point(ctx, "move.finish.end"); err != nil {
		return err
	}
	return m.cleanupArtifacts(context.WithoutCancel(ctx))
}

func ptrOr(p *string, or string) string {
	if p == nil {
		return or
	}
	return *p
}
