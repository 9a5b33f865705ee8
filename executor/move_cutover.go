package executor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgutil"
)

// lag returns how far the slot's confirmed position trails the source's
// WAL, in bytes.
func (m *move) lag(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int64, error) {
	var lag *int64
	err := q.QueryRow(ctx, `SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
		FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, m.slot).Scan(&lag)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("node %s: replication slot %s disappeared", m.src.Name, m.slot)
	}
	if err != nil {
		return 0, m.interrupted(ctx, pgutil.Wrap(err, "node %s: read the lag of slot %s", m.src.Name, m.slot))
	}
	if lag == nil {
		return 1 << 62, nil // not confirmed anything yet
	}
	return *lag, nil
}

// waitLag waits until the replication lag is small enough to try the
// lock: switching while lag is high would turn the pause into a timeout.
//
// A subscription whose apply worker keeps failing never catches up: the
// wait gives up after maxReplicationErrors failures.
func (m *move) waitLag(ctx context.Context) error {
	every := max(m.opts.PollInterval/10, 10*time.Millisecond)
	var recorded, checked time.Time
	firstErrors := int64(-1)
	for {
		lag, err := m.lag(ctx, m.src.Conn)
		if err != nil {
			return err
		}
		if lag > m.opts.MaxLag && time.Since(checked) >= time.Second {
			checked = time.Now()
			n, err := m.subscriptionErrors(ctx, "apply_error_count")
			if err != nil {
				return err
			}
			if firstErrors < 0 {
				firstErrors = n
			}
			if n-firstErrors >= maxReplicationErrors {
				return fmt.Errorf("node %s: subscription %s failed %d times applying the source's changes (see that server's log for the cause)", m.dst.Name, m.sub, n-firstErrors)
			}
		}
		m.mu.Lock()
		m.progress.LagBytes = &lag
		st := m.progress
		m.mu.Unlock()
		if lag <= m.opts.MaxLag {
			return fault.Point(ctx, "move.catch-up.end")
		}
		if time.Since(recorded) >= 5*time.Second {
			m.record(ctx, st)
			recorded = time.Now()
		}
		m.rep.Report(Event{Time: time.Now(), Shard: m.spec.Shard, Schema: m.schema, Phase: PhaseCatchUp, Kind: EventProgress, LagBytes: lag})
		if err := sleep(ctx, every); err != nil {
			return fmt.Errorf("%w during the catch-up: %w", ErrInterrupted, err)
		}
	}
}

// seqValue is a sequence's position on the source: Value nil when the
// sequence was never used.
type seqValue struct {
	Name  string
	Value *int64
}

// cutoverResult is what a committed cutover hands to finish.
type cutoverResult struct {
	old       string
	seqs      []seqValue
	haveSeqs  bool
	locked    time.Time // zero when resuming after a crash
	committed time.Time
	lockWait  time.Duration
}

// errRetry marks a cutover attempt that gave up without harm.
type errRetry struct{ reason string }

func (e *errRetry) Error() string { return e.reason }

// cutover switches the shard over on the source: under an EXCLUSIVE lock of
// its tables it waits for the destination to confirm the source's WAL
// position, reads the sequences, deactivates the shard and renames the
// schema, and commits. Writers blocked by the lock then find no such table
// and, routing by the active lists, go to the destination once finish
// activates it there.
//
// One attempt costs three round trips under the lock: the lock with
// everything that needs no waiting (WAL position, sequences, deactivation,
// rename, the user's deactivation SQL) in one message, the polls for the
// destination's confirmation, and the commit. Everything else is prepared
// before.
func (m *move) cutover(ctx context.Context) (cutoverResult, error) {
	conn, err := pgutil.Connect(ctx, m.spec.From.DSN)
	if err != nil {
		return cutoverResult{}, err
	}
	defer func() { conn.Close() }()
	const confirmStmt = "pgms_confirmed"
	prepare := func(c *pgx.Conn) error {
		_, err := c.Prepare(ctx, confirmStmt, `SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_catalog.pg_replication_slots WHERE slot_name = $2`)
		return pgutil.Wrap(err, "node %s: prepare the cutover", m.src.Name)
	}
	if err := prepare(conn.Conn); err != nil {
		return cutoverResult{}, err
	}
	flusher, err := pgutil.Connect(ctx, m.spec.From.DSN)
	if err != nil {
		return cutoverResult{}, err
	}
	defer func() { flusher.Close() }()
	m.flusher = flusher
	m.warm(ctx, conn)
	var lastErr error
	for attempt := 1; ; attempt++ {
		if lag, err := m.lag(ctx, m.src.Conn); err != nil {
			return cutoverResult{}, err
		} else if lag > m.opts.MaxLag {
			if err := m.waitLag(ctx); err != nil {
				return cutoverResult{}, err
			}
		}
		res, err := m.tryCutover(ctx, conn, confirmStmt)
		if err == nil {
			m.res.LockWait = res.lockWait
			return res, nil
		}
		var retry *errRetry
		if !errors.As(err, &retry) {
			return cutoverResult{}, err
		}
		lastErr = err
		m.res.Retries++
		m.mu.Lock()
		m.progress.Retries = m.res.Retries
		m.mu.Unlock()
		if attempt >= m.opts.LockAttempts {
			return cutoverResult{}, fmt.Errorf("cutover gave up after %d attempts; the last: %w (find what holds locks on the shard's tables in pg_locks / pg_stat_activity on %s, or raise --lock-timeout / --max-pause)", attempt, lastErr, m.src.Name)
		}
		wait := backoff(attempt)
		m.event(PhaseCutover, EventRetry, fmt.Sprintf("attempt %d/%d: %s; next in %v", attempt, m.opts.LockAttempts, retry.reason, wait.Round(time.Millisecond)))
		if conn.Conn.IsClosed() {
			conn.Close()
			if conn, err = pgutil.Connect(ctx, m.spec.From.DSN); err != nil {
				return cutoverResult{}, err
			}
			if err := prepare(conn.Conn); err != nil {
				return cutoverResult{}, err
			}
		}
		if err := sleep(ctx, wait); err != nil {
			return cutoverResult{}, fmt.Errorf("%w between cutover attempts: %w", ErrInterrupted, err)
		}
	}
}

// backoff is exponential from 100 ms up to 5 s, with ±50% jitter so that
// parallel moves do not retry in step.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt-1, 6)
	d = min(d, 5*time.Second)
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

// tryCutover makes one attempt. A *errRetry means it rolled back and may be
// tried again.
func (m *move) tryCutover(ctx context.Context, conn *pgutil.Node, confirmStmt string) (cutoverResult, error) {
	res := cutoverResult{old: names.OldSchema(m.schema, time.Now())}
	var stmts []string
	add := func(s string) int { stmts = append(stmts, s); return len(stmts) - 1 }
	add("BEGIN")
	add(fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", max(m.opts.LockTimeout.Milliseconds(), 1)))
	// Should pgms vanish while holding the lock, the server ends the
	// session, and with it the lock, soon after the budget.
	add(fmt.Sprintf("SET LOCAL idle_in_transaction_session_timeout = '%dms'", (m.opts.MaxPause + 5*time.Second).Milliseconds()))
	if len(m.tables) > 0 {
		list := make([]string, len(m.tables))
		for i, t := range m.tables {
			list[i] = pgutil.Quote(m.schema, t.Name)
		}
		add("LOCK TABLE " + strings.Join(list, ", ") + " IN EXCLUSIVE MODE")
	}
	// The server's clock after the lock and at the end of the message tell
	// when the lock was granted: the pause starts there, not when the reply
	// arrives. The target is the insert position, the end of the last
	// record: every commit of the shard's writers ends at or before it. The
	// write position would not do: it can stop at a page boundary inside a
	// record, a point the walsender never reports.
	lsnAt := add("SELECT pg_catalog.pg_current_wal_insert_lsn()::text, extract(epoch FROM clock_timestamp())::text")
	seqAt := -1
	if len(m.seqs) > 0 {
		values := make([]string, len(m.seqs))
		for i, s := range m.seqs {
			values[i] = fmt.Sprintf("(%s, %d::oid)", quoteLiteral(s.Name), s.OID)
		}
		seqAt = add("SELECT v.n, pg_catalog.pg_sequence_last_value(v.o) FROM (VALUES " + strings.Join(values, ", ") + ") AS v(n, o)")
	}
	add(activeListLock)
	add(fmt.Sprintf("SELECT * FROM %s(%d)", pgutil.Quote(m.lib, "microsharding_ensure_inactive"), m.spec.Shard))
	add("ALTER SCHEMA " + pgutil.Quote(m.schema) + " RENAME TO " + pgutil.Quote(res.old))
	if m.opts.DeactivateSQL != "" {
		for _, t := range m.tables {
			add(strings.ReplaceAll(m.opts.DeactivateSQL, "$1", quoteLiteral(pgutil.Quote(res.old, t.Name))))
		}
	}
	endAt := add("SELECT extract(epoch FROM clock_timestamp())::text")
	batch := strings.Join(stmts, ";\n")

	sent := time.Now()
	results, err := execSimple(ctx, conn.Conn, batch)
	replied := time.Now()
	if err != nil {
		m.rollback(conn)
		switch {
		case ctx.Err() != nil:
			return res, fmt.Errorf("%w while taking the lock: %w", ErrInterrupted, ctx.Err())
		case pgutil.IsLockTimeout(err):
			return res, &errRetry{reason: fmt.Sprintf("tables not locked within %v: %s", m.opts.LockTimeout, m.blockers(ctx))}
		case pgutil.IsRetryable(err) || concurrentCatalogUpdate(err):
			return res, &errRetry{reason: pgutil.Describe(err)}
		}
		return res, pgutil.Wrap(err, "node %s: lock, deactivate and rename %s", m.src.Name, m.schema)
	}
	lsn := string(results[lsnAt][0][0])
	underLock := epochDiff(results[lsnAt][0][1], results[endAt][0][0])
	locked := replied.Add(-underLock)
	res.lockWait = max(locked.Sub(sent), 0)
	if seqAt >= 0 {
		if res.seqs, err = parseSeqs(results[seqAt]); err != nil {
			m.rollback(conn)
			return res, err
		}
	}
	res.haveSeqs = true
	if err := fault.Point(ctx, "move.cutover.locked"); err != nil {
		m.rollback(conn)
		return res, err
	}

	// The walsender only sends WAL that is flushed, and WAL inserted but not
	// flushed (aborted transactions, catalog housekeeping, asynchronous
	// commits) waits for the WAL writer, up to wal_writer_delay (200 ms by
	// default). A transaction on another session that writes WAL flushes
	// everything before its commit, so the target is sendable at once. A
	// transactional logical message writes no table and reaches no
	// subscriber (pgoutput forwards messages only when asked to).
	nudged := make(chan struct{})
	go func() {
		defer close(nudged)
		if m.flusher != nil && !m.flusher.Conn.IsClosed() {
			m.flusher.Conn.Exec(ctx, "SELECT pg_catalog.pg_logical_emit_message(true, 'pgms', 'cutover')") //nolint:errcheck // only a shortcut: the WAL writer flushes anyway
		}
	}()
	defer func() { <-nudged }()

	deadline := locked.Add(m.opts.MaxPause)
	for {
		var ok *bool
		if err := conn.Conn.QueryRow(ctx, confirmStmt, lsn, m.slot).Scan(&ok); err != nil {
			m.rollback(conn)
			if ctx.Err() != nil {
				return res, fmt.Errorf("%w while waiting for the destination: %w", ErrInterrupted, ctx.Err())
			}
			if errors.Is(err, pgx.ErrNoRows) {
				return res, fmt.Errorf("node %s: replication slot %s disappeared during the cutover", m.src.Name, m.slot)
			}
			return res, pgutil.Wrap(err, "node %s: wait for the destination to confirm %s", m.src.Name, lsn)
		}
		if ok != nil && *ok {
			break
		}
		if time.Now().After(deadline) {
			m.rollback(conn)
			return res, &errRetry{reason: fmt.Sprintf("the destination did not confirm the source's WAL position within the %v pause budget", m.opts.MaxPause)}
		}
		if ctx.Err() != nil {
			m.rollback(conn)
			return res, fmt.Errorf("%w while waiting for the destination: %w", ErrInterrupted, ctx.Err())
		}
		time.Sleep(200 * time.Microsecond)
	}
	if err := fault.Point(ctx, "move.cutover.before-commit"); err != nil {
		m.rollback(conn)
		return res, err
	}

	// From here on the move only goes forward: the commit is not
	// cancelled, and its outcome, if unclear, is read back from the source.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	tag, err := conn.Conn.Exec(cctx, "COMMIT")
	res.committed = time.Now()
	res.locked = locked
	if err == nil && tag.String() != "COMMIT" {
		return res, &errRetry{reason: "the cutover transaction was rolled back at commit"}
	}
	if err != nil {
		done, cerr := m.renamed(cctx, res.old)
		if cerr != nil {
			return res, fmt.Errorf("node %s: COMMIT of the cutover failed (%s) and whether it took effect cannot be read (%s): run the same move again, it will find out and finish or retry",
				m.src.Name, pgutil.Describe(err), pgutil.Describe(cerr))
		}
		if !done {
			return res, &errRetry{reason: "the cutover commit failed: " + pgutil.Describe(err)}
		}
	}
	m.committed = true
	return res, fault.Point(ctx, "move.cutover.committed")
}

// blockers names the sessions holding locks on the shard's tables that
// conflict with the cutover's EXCLUSIVE lock (every mode but ACCESS SHARE),
// and cancels those that are ordinary autovacuum runs. PostgreSQL cancels
// such a run itself once a lock request has waited deadlock_timeout (1 s by
// default), which a short lock timeout never reaches; an anti-wraparound
// run is never cancelled.
func (m *move) blockers(ctx context.Context) string {
	oids := make([]uint32, len(m.tables))
	for i, t := range m.tables {
		oids[i] = t.OID
	}
	rows, err := m.src.Conn.Query(ctx, `SELECT DISTINCT a.pid, a.backend_type, COALESCE(a.application_name, ''), COALESCE(a.state, ''),
		  COALESCE(extract(epoch FROM now() - a.xact_start), 0)::float8, left(regexp_replace(COALESCE(a.query, ''), '\s+', ' ', 'g'), 80)
		FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
		WHERE l.granted AND l.relation = ANY($1::oid[]) AND l.mode <> 'AccessShareLock' AND l.pid <> pg_backend_pid()
		ORDER BY a.pid LIMIT 5`, oids)
	if err != nil {
		return "a transaction holds a conflicting lock"
	}
	var parts []string
	var cancel []int
	for rows.Next() {
		var pid int
		var kind, app, st, query string
		var age float64
		if err := rows.Scan(&pid, &kind, &app, &st, &age, &query); err != nil {
			break
		}
		if kind == "autovacuum worker" && !strings.Contains(query, "wraparound") {
			cancel = append(cancel, pid)
			parts = append(parts, fmt.Sprintf("autovacuum pid %d (%s), cancelled", pid, query))
			continue
		}
		parts = append(parts, fmt.Sprintf("pid %d (%s, application %q, %s, transaction open %.0fs: %s)", pid, kind, app, st, age, query))
	}
	rows.Close()
	for _, pid := range cancel {
		m.src.Conn.Exec(ctx, "SELECT pg_catalog.pg_cancel_backend($1)", pid) //nolint:errcheck // the next attempt tells
	}
	if len(parts) == 0 {
		return "a transaction held a conflicting lock"
	}
	return "held by " + strings.Join(parts, "; ")
}

// rollback ends a cutover attempt's transaction; if the connection is in
// doubt it is closed, which makes the server roll back.
func (m *move) rollback(conn *pgutil.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.Conn.Exec(ctx, "ROLLBACK"); err != nil {
		conn.Conn.Close(ctx)
	}
}

// renamed reads back from the source whether the cutover committed.
func (m *move) renamed(ctx context.Context, old string) (bool, error) {
	n, err := pgutil.Connect(ctx, m.spec.From.DSN)
	if err != nil {
		return false, err
	}
	defer n.Close()
	var gone, there bool
	err = n.Conn.QueryRow(ctx, `SELECT to_regnamespace($1) IS NULL, to_regnamespace($2) IS NOT NULL`, pgutil.Quote(m.schema), pgutil.Quote(old)).Scan(&gone, &there)
	return gone && there, err
}

// activeListLock serialises the changes of a node's active list made by
// moves. The library re-creates one function to change the list, and two
// transactions doing that at once fail ("tuple concurrently updated")
// rather than wait. Under the cutover's lock_timeout the wait for it is
// bounded like the table locks.
const activeListLock = "SELECT pg_catalog.pg_advisory_xact_lock(8099562797138010996)" // "pgms_act"

// concurrentCatalogUpdate recognises the error of two transactions
// replacing the same function at once; trying again succeeds.
func concurrentCatalogUpdate(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "XX000" && strings.Contains(pgErr.Message, "concurrently updated")
}

// epochDiff returns b-a for two server clock readings in epoch seconds.
func epochDiff(a, b []byte) time.Duration {
	x, errA := strconv.ParseFloat(string(a), 64)
	y, errB := strconv.ParseFloat(string(b), 64)
	if errA != nil || errB != nil || y < x {
		return 0
	}
	return time.Duration((y - x) * float64(time.Second))
}

// warm makes the sessions that run the cutover and the activation load the
// catalog entries and compile the library functions they will use, each in
// a transaction that is rolled back, so that none of this happens while
// writes are paused. A warm-up that cannot get its locks at once is simply
// skipped.
func (m *move) warm(ctx context.Context, src *pgutil.Node) {
	var stmts []string
	stmts = append(stmts, "BEGIN", "SET LOCAL lock_timeout = '20ms'")
	for _, t := range m.tables {
		stmts = append(stmts, "SELECT * FROM "+pgutil.Quote(m.schema, t.Name)+" LIMIT 0")
	}
	if len(m.seqs) > 0 {
		stmts = append(stmts, fmt.Sprintf("SELECT pg_catalog.pg_sequence_last_value(%d::oid)", m.seqs[0].OID))
	}
	stmts = append(stmts, activeListLock, fmt.Sprintf("SELECT * FROM %s(%d)", pgutil.Quote(m.lib, "microsharding_ensure_inactive"), m.spec.Shard))
	execSimple(ctx, src.Conn, strings.Join(stmts, ";\n"))                                                       //nolint:errcheck // best effort
	execSimple(ctx, src.Conn, "ROLLBACK")                                                                       //nolint:errcheck // best effort
	execSimple(ctx, m.dst.Conn, fmt.Sprintf("BEGIN; SET LOCAL lock_timeout = '20ms'; %s; SELECT * FROM %s(%d)", //nolint:errcheck // best effort
		activeListLock, pgutil.Quote(m.lib, "microsharding_ensure_active"), m.spec.Shard))
	execSimple(ctx, m.dst.Conn, "ROLLBACK") //nolint:errcheck // best effort
}

func parseSeqs(rows [][][]byte) ([]seqValue, error) {
	out := make([]seqValue, 0, len(rows))
	for _, r := range rows {
		s := seqValue{Name: string(r[0])}
		if r[1] != nil {
			v, err := strconv.ParseInt(string(r[1]), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("sequence %s: value %q: %w", s.Name, r[1], err)
			}
			s.Value = &v
		}
		out = append(out, s)
	}
	return out, nil
}

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

// finish completes a committed cutover on the destination: the sequences,
// the schema's own comment in place of the copy's mark, and activation, in
// one transaction; then the replication objects go. It runs to the end
// even when the context is cancelled: the shard is served nowhere until
// it is done.
func (m *move) finish(ctx context.Context, cr cutoverResult) error {
	ctx = context.WithoutCancel(ctx)
	m.res.OldSchema = cr.old
	if err := m.revive(ctx); err != nil {
		return err
	}
	if !cr.haveSeqs {
		if err := m.phase(ctx, PhaseFinish, fmt.Sprintf("activating %s on %s (sequences from %s)", m.schema, m.dst.Name, cr.old)); err != nil {
			return err
		}
		seqs, comment, err := m.readSeqs(ctx, cr.old)
		if err != nil {
			return err
		}
		cr.seqs, m.comment = seqs, comment
	}
	stmts := []string{activeListLock}
	if s := m.setvalSQL(m.schema, cr.seqs); s != "" {
		stmts = append(stmts, s)
	}
	stmts = append(stmts, m.commentSQL(m.schema))
	if !m.keepsInactive() {
		stmts = append(stmts, fmt.Sprintf("SELECT * FROM %s(%d)", pgutil.Quote(m.lib, "microsharding_ensure_active"), m.spec.Shard))
	}
	activate := strings.Join(stmts, ";\n")
	var err error
	for attempt := 1; ; attempt++ {
		if err = m.revive(ctx); err == nil {
			_, err = execSimple(ctx, m.dst.Conn, activate)
		}
		if err == nil {
			break
		}
		if attempt >= 10 {
			return pgutil.Wrap(err, "node %s: activate %s (it is now served by no node: run the same move again to finish)", m.dst.Name, m.schema)
		}
		m.event(PhaseFinish, EventWarning, fmt.Sprintf("activation on %s failed (%s); retrying", m.dst.Name, pgutil.Describe(err)))
		time.Sleep(backoff(attempt))
	}
	active := time.Now()
	if !cr.locked.IsZero() {
		m.res.Pause, m.res.Core = active.Sub(cr.locked), cr.committed.Sub(cr.locked)
		m.mu.Lock()
		m.progress.Pause, m.progress.Core = m.res.Pause, m.res.Core
		m.mu.Unlock()
		m.setPhase(ctx, PhaseFinish, fmt.Sprintf("%s %s on %s; write pause %s (lock to commit %s, lock wait %s), %d retries; source renamed to %s",
			m.schema, map[bool]string{true: "kept inactive", false: "active"}[m.keepsInactive()], m.dst.Name,
			fmtMS(m.res.Pause), fmtMS(m.res.Core), fmtMS(cr.lockWait), m.res.Retries, cr.old))
	} else {
		m.event(PhaseFinish, EventInfo, fmt.Sprintf("%s active on %s; source renamed to %s", m.schema, m.dst.Name, cr.old))
	}
	if err := fault.Point(ctx, "move.finish.end"); err != nil {
		return err
	}
	return m.cleanupArtifacts(ctx)
}

func fmtMS(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
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
		err := m.dst.Conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_subscription WHERE subname = $1 AND pid IS NOT NULL)`, m.sub).Scan(&running)
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
