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
	"github.com/pgms-dev/pgms/state"
)

// seqValue is a sequence's position on the source: Value nil when the
// sequence was never used.
type seqValue struct {
	Name  string
	Value *int64
}

// cutoverResult is what a committed cutover hands to finish.
type cutoverResult struct {
	old      string
	seqs     []seqValue
	haveSeqs bool
	// sent is when the successful attempt asked for the lock (writers
	// queue behind it from then on), locked when it was granted; both zero
	// when resuming after a crash.
	sent, locked time.Time
	committed    time.Time
	lockWait     time.Duration
	// commitLSN is a WAL position at or after the commit record; the
	// source's standbys must reach it before the shard is activated. ""
	// when unknown (a resumed move reads the current position).
	commitLSN string
	// window: the source was fenced and kept under its name (old is then
	// the shard's own name) for a rollback window.
	window bool
}

// errRetry marks a cutover attempt that gave up without harm.
type errRetry struct{ reason string }

func (e *errRetry) Error() string { return e.reason }

// session identifies a server process across pid reuse.
type session struct {
	pid   uint32
	start time.Time
}

// cutover switches the shard over on the source: under an EXCLUSIVE lock of
// its tables it waits for the destination to confirm the source's WAL
// position, reads the sequences, deactivates the shard and renames the
// schema, and commits. Writers blocked by the lock then find no such table
// and, routing by the active lists, go to the destination once finish
// activates it there.
//
// One attempt costs three round trips under the lock: the lock with
// everything that needs no waiting (claim and shape checks, WAL position,
// sequences, deactivation, rename, the user's deactivation SQL) in one
// message, the polls for the destination's confirmation, and the commit.
// Everything else is prepared before, and the lock is only requested
// when a probe just before showed the stream healthy and fast: a stream
// that is broken or behind would make writers wait for nothing.
func (m *move) cutover(ctx context.Context) (cutoverResult, error) {
	conn, sess, err := m.cutoverSession(ctx)
	if err != nil {
		return cutoverResult{}, err
	}
	defer func() { conn.Close() }()
	flusher, err := m.openFlusher(ctx)
	if err != nil {
		return cutoverResult{}, err
	}
	defer func() { flusher.Close() }()
	m.flusher = flusher
	m.warm(ctx, conn)

	// Once, before any attempt: the activation must not make a second
	// home, and the copy must hold every table the source has.
	if err := m.checkFleet(ctx); err != nil {
		return cutoverResult{}, err
	}
	if changed, err := m.shapeChanged(ctx, m.src.Conn); err != nil {
		return cutoverResult{}, err
	} else if changed != "" {
		return cutoverResult{}, m.shapeError(changed)
	}
	health, err := m.readSubscription(ctx)
	if err != nil {
		return cutoverResult{}, err
	}
	firstErrors := health.errors

	var lastErr error
	var unhealthySince time.Time
	for attempt := 1; ; attempt++ {
		if conn.Conn.IsClosed() {
			conn.Close()
			if conn, sess, err = m.cutoverSession(ctx); err != nil {
				return cutoverResult{}, err
			}
		}
		if m.flusher.Conn.IsClosed() {
			m.flusher.Close()
			if m.flusher, err = m.openFlusher(ctx); err != nil {
				return cutoverResult{}, err
			}
			flusher = m.flusher
		}
		if err := m.revive(ctx); err != nil {
			return cutoverResult{}, err
		}
		if lag, err := m.lag(ctx, m.src.Conn); err != nil {
			return cutoverResult{}, err
		} else if lag > m.opts.MaxLag {
			if err := m.waitLag(ctx); err != nil {
				return cutoverResult{}, err
			}
		}
		// The stream must be live and fast before writers are stopped: a
		// probe that the destination confirms within a fraction of the
		// budget predicts how long the wait under the lock will be.
		limit, why := m.readyToLock(ctx, firstErrors)
		if why == nil {
			unhealthySince = time.Time{}
		} else {
			if errors.Is(why, errFatalStream) || ctx.Err() != nil {
				return cutoverResult{}, why
			}
			if unhealthySince.IsZero() {
				unhealthySince = time.Now()
			}
			if time.Since(unhealthySince) >= m.opts.StallTimeout {
				return cutoverResult{}, fmt.Errorf("%w: for %v the stream was not ready for the cutover; the last reason: %s. The copy and the replication objects are kept: run the same move again to continue",
					errStalled, m.opts.StallTimeout, pgutil.Describe(why))
			}
			wait := backoff(attempt)
			m.event(PhaseCutover, EventRetry, fmt.Sprintf("not taking the lock: %s; checking again in %v (writers are not affected)", pgutil.Describe(why), wait.Round(time.Millisecond)))
			if err := sleep(ctx, wait); err != nil {
				return cutoverResult{}, fmt.Errorf("%w before the cutover: %w", ErrInterrupted, err)
			}
			continue
		}
		res, err := m.tryCutover(ctx, conn, sess, limit)
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
			return cutoverResult{}, fmt.Errorf("cutover gave up after %d attempts; the last: %w (find what holds locks on the shard's tables in pg_locks / pg_stat_activity on %s, or raise --cutover-lock-timeout / --max-pause)", attempt, lastErr, m.src.Name)
		}
		wait := backoff(attempt)
		m.event(PhaseCutover, EventRetry, fmt.Sprintf("attempt %d/%d: %s; next in %v", attempt, m.opts.LockAttempts, retry.reason, wait.Round(time.Millisecond)))
		if err := sleep(ctx, wait); err != nil {
			return cutoverResult{}, fmt.Errorf("%w between cutover attempts: %w", ErrInterrupted, err)
		}
	}
}

// openFlusher opens the session that writes the probes and the cutover's
// nudge on the source. Its little transactions only need the WAL flushed
// locally, and must not wait for synchronous standbys: a standby that
// stops answering would hold them, and the cutover with them.
func (m *move) openFlusher(ctx context.Context) (*pgutil.Node, error) {
	n, err := pgutil.ConnectAs(ctx, m.spec.From.Name, m.spec.From.DSN)
	if err != nil {
		return nil, err
	}
	if _, err := n.Conn.Exec(ctx, "SET synchronous_commit = local"); err != nil {
		n.Close()
		return nil, pgutil.Wrap(err, "node %s: prepare the cutover", m.src.Name)
	}
	return n, nil
}

// confirmStmt is the prepared poll for the destination's confirmation.
const confirmStmt = "pgms_confirmed"

// cutoverSession opens the session the cutover runs in and identifies it,
// so that a COMMIT in doubt can later be traced to exactly this process.
func (m *move) cutoverSession(ctx context.Context) (*pgutil.Node, session, error) {
	conn, err := pgutil.ConnectAs(ctx, m.spec.From.Name, m.spec.From.DSN)
	if err != nil {
		return nil, session{}, err
	}
	var s session
	if err := conn.Conn.QueryRow(ctx, "SELECT pg_catalog.pg_backend_pid(), backend_start FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid()").Scan(&s.pid, &s.start); err != nil {
		conn.Close()
		return nil, s, pgutil.Wrap(err, "node %s: prepare the cutover", m.src.Name)
	}
	if _, err := conn.Conn.Prepare(ctx, confirmStmt, `SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_catalog.pg_replication_slots WHERE slot_name = $2`); err != nil {
		conn.Close()
		return nil, s, pgutil.Wrap(err, "node %s: prepare the cutover", m.src.Name)
	}
	return conn, s, nil
}

// errFatalStream marks a stream problem that waiting does not cure.
var errFatalStream = errors.New("the replication stream cannot carry the cutover")

// readyToLock checks, without any lock, that the cutover can succeed now:
// the apply worker runs and does not fail, the synchronous standbys the
// source waits for are connected, and a probe through the stream comes
// back quickly. It returns how long the wait under the lock may last
// before the attempt gives up, or why not to take the lock now.
func (m *move) readyToLock(ctx context.Context, firstErrors int64) (time.Duration, error) {
	h, err := m.readSubscription(ctx)
	if err != nil {
		return 0, err
	}
	if h.errors-firstErrors >= maxReplicationErrors {
		return 0, fmt.Errorf("%w: %w", errFatalStream, m.applyFailing(ctx, h.errors-firstErrors))
	}
	if h.workers == 0 {
		return 0, fmt.Errorf("the apply worker of subscription %s on %s is not running (starting, or failing: see that server's log)", m.sub, m.dst.Name)
	}
	if h.errors > firstErrors {
		return 0, fmt.Errorf("subscription %s on %s failed %d times applying changes since the cutover began", m.sub, m.dst.Name, h.errors-firstErrors)
	}
	if err := m.checkSyncStandbys(ctx); err != nil {
		return 0, err
	}
	took, err := m.probe(ctx, min(m.opts.MaxPause, time.Second))
	if err != nil {
		return 0, err
	}
	if took > m.opts.MaxPause/4 {
		return 0, fmt.Errorf("the destination confirms the source's changes in %v, too slow for the %v pause budget", took.Round(100*time.Microsecond), m.opts.MaxPause)
	}
	// Under the lock the wait is about as long as the probe's; a wait much
	// longer means the stream slowed down, and writers should not wait
	// for it.
	return min(m.opts.MaxPause, max(10*took, 100*time.Millisecond)), nil
}

// shapeError explains a shard whose tables changed during the move.
func (m *move) shapeError(changed string) error {
	if m.spec.Rollback {
		return fmt.Errorf("the shard's tables changed on %s while its rollback window was open: %s; the stream back does not carry schema changes, so the rollback stops. %s",
			m.src.Name, changed, m.windowShapeFix())
	}
	return fmt.Errorf("the shard's tables changed during the move: %s; switching now would leave those rows behind on %s, so the move stops. Run it again: it starts over with the new definition", changed, m.src.Name)
}

// windowShapeFix says how a rollback window whose tables changed on the
// new home goes on: the same change on the old home's copy (the stream
// back then resumes by itself), or closing the window.
func (m *move) windowShapeFix() string {
	return fmt.Sprintf("Make the same change to %s on %s (DDL passes the window's fence; the stream back then resumes) and run the rollback again, or keep the shard on %s and close the window with pgms rollback --shard=%d --close",
		m.schema, m.dst.Name, m.src.Name, m.spec.Shard)
}

// checkFleet checks, before the cutover, that activating the shard on the
// destination makes no second home anywhere in the fleet: no other node
// serves it, no other run holds it.
func (m *move) checkFleet(ctx context.Context) error {
	fleet := m.spec.Fleet.With(
		state.NodeSpec{Name: m.spec.From.Name, DSN: m.spec.From.DSN},
		state.NodeSpec{Name: m.spec.To.Name, DSN: m.spec.To.DSN})
	if fleet.LibrarySchema == "" {
		fleet.LibrarySchema = m.lib
	}
	// The nodes the two know of, through their registries, count too.
	for _, n := range []*pgutil.Node{m.src, m.dst} {
		reg, err := state.ReadRegistry(ctx, n.Conn, m.lib)
		if err != nil {
			return pgutil.Wrap(err, "node %s: read the node registry", n.Name)
		}
		for _, r := range reg {
			fleet = fleet.With(state.NodeSpec{Name: r.Name, DSN: r.DSN})
		}
	}
	homes := fleet.Homes(ctx, []string{m.schema})
	err := homes.CheckActivation(state.ActivationCheck{
		Target: m.spec.To.Name, Source: m.spec.From.Name,
		Shards: []int{m.spec.Shard}, Schemas: []string{m.schema},
		Token: pgutil.RunToken, OwnCopy: true,
	})
	if err != nil {
		return fmt.Errorf("before the cutover: %w", err)
	}
	return nil
}

// backoff is exponential from 100 ms up to 5 s, with ±50% jitter so that
// parallel moves do not retry in step.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt-1, 6)
	d = min(d, 5*time.Second)
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

// noteBlocked records how long an attempt kept the shard's writers waiting.
func (m *move) noteBlocked(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d > m.res.Blocked {
		m.res.Blocked = d
		m.progress.Blocked = d
	}
}

// tryCutover makes one attempt. A *errRetry means it rolled back and may be
// tried again; limit bounds the wait for the destination under the lock.
func (m *move) tryCutover(ctx context.Context, conn *pgutil.Node, sess session, limit time.Duration) (cutoverResult, error) {
	res := cutoverResult{old: names.OldSchema(m.schema, time.Now())}
	var stmts []string
	add := func(s string) int { stmts = append(stmts, s); return len(stmts) - 1 }
	add("BEGIN")
	add(fmt.Sprintf("SET LOCAL lock_timeout = '%dms'", max(m.opts.LockTimeout.Milliseconds(), 1)))
	// Should pgms lose the source while it holds the lock, the server ends
	// the session, and with it the lock, within the pause budget.
	add(fmt.Sprintf("SET LOCAL idle_in_transaction_session_timeout = '%dms'", max(m.opts.MaxPause.Milliseconds(), 1)))
	if m.srcMajor >= 17 {
		add(fmt.Sprintf("SET LOCAL transaction_timeout = '%dms'", (m.opts.LockTimeout + m.opts.MaxPause + time.Second).Milliseconds()))
	}
	if len(m.tables) > 0 {
		list := make([]string, len(m.tables))
		for i, t := range m.tables {
			list[i] = pgutil.Quote(m.schema, t.Name)
		}
		add("LOCK TABLE " + strings.Join(list, ", ") + " IN EXCLUSIVE MODE")
	}
	// Under the lock, in the same message: this run still holds the shard,
	// and the shard still has exactly the tables the copy has.
	claimAt := add(m.srcClaim.HeldSQL())
	shapeAt := add(shapeHashSQL(m.schema))
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
	if m.windowing() {
		// The source keeps its name for the stream back; writers blocked on
		// the lock meet the fence instead of a missing relation. The
		// deactivation SQL waits for the rename at the window's end.
		res.old, res.window = m.schema, true
		for _, s := range m.windowCutoverSQL(time.Now()) {
			add(s)
		}
	} else {
		add("ALTER SCHEMA " + pgutil.Quote(m.schema) + " RENAME TO " + pgutil.Quote(res.old))
		if m.opts.DeactivateSQL != "" {
			for _, t := range m.tables {
				add(strings.ReplaceAll(m.opts.DeactivateSQL, "$1", quoteLiteral(pgutil.Quote(res.old, t.Name))))
			}
		}
	}
	endAt := add("SELECT extract(epoch FROM clock_timestamp())::text")
	batch := strings.Join(stmts, ";\n")

	sent := time.Now()
	// The lock wait is bounded on the server; the round trip is bounded
	// here, should the source stop answering.
	bctx, cancelBatch := context.WithTimeout(ctx, m.opts.LockTimeout+queryTimeout)
	results, err := execSimple(bctx, conn.Conn, batch)
	cancelBatch()
	replied := time.Now()
	if err != nil {
		m.rollback(conn)
		m.noteBlocked(time.Since(sent))
		switch {
		case ctx.Err() == nil && errors.Is(bctx.Err(), context.DeadlineExceeded):
			return res, &errRetry{reason: fmt.Sprintf("%s did not answer the cutover's lock request within %v; its session ends on the server within the pause budget (idle_in_transaction_session_timeout), releasing any lock it got", m.src.Name, m.opts.LockTimeout+queryTimeout)}
		case ctx.Err() != nil:
			return res, fmt.Errorf("%w while taking the lock: %w", ErrInterrupted, ctx.Err())
		case pgutil.IsLockTimeout(err):
			return res, &errRetry{reason: fmt.Sprintf("tables not locked within %v: %s", m.opts.LockTimeout, m.blockers(ctx))}
		case pgutil.IsRetryable(err) || concurrentCatalogUpdate(err):
			return res, &errRetry{reason: pgutil.Describe(err)}
		case connectionLost(err):
			return res, &errRetry{reason: fmt.Sprintf("the cutover's session on %s was lost before its commit (%s), so the server rolled its transaction back", m.src.Name, pgutil.Describe(err))}
		}
		return res, pgutil.Wrap(err, "node %s: lock, deactivate and rename %s", m.src.Name, m.schema)
	}
	if string(results[claimAt][0][0]) != "t" {
		m.rollback(conn)
		m.noteBlocked(time.Since(sent))
		// The claim's session ended; take it back if nobody else took it.
		if err := m.revive(ctx); err != nil {
			return res, err
		}
		return res, &errRetry{reason: "the session holding the move's claim on " + m.src.Name + " had ended; it was taken back"}
	}
	if string(results[shapeAt][0][0]) != m.shape {
		m.rollback(conn)
		m.noteBlocked(time.Since(sent))
		changed, err := m.shapeChanged(ctx, m.src.Conn)
		if err != nil {
			return res, err
		}
		return res, m.shapeError(changed)
	}
	lsn := string(results[lsnAt][0][0])
	underLock := epochDiff(results[lsnAt][0][1], results[endAt][0][0])
	locked := replied.Add(-underLock)
	res.lockWait = max(locked.Sub(sent), 0)
	res.sent = sent
	if seqAt >= 0 {
		if res.seqs, err = parseSeqs(results[seqAt]); err != nil {
			m.rollback(conn)
			m.noteBlocked(time.Since(sent))
			return res, err
		}
	}
	res.haveSeqs = true
	if err := fault.Point(ctx, "move.cutover.locked"); err != nil {
		m.rollback(conn)
		m.noteBlocked(time.Since(sent))
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
			nctx, cancel := context.WithTimeout(ctx, m.opts.MaxPause)
			defer cancel()
			m.flusher.Conn.Exec(nctx, "SELECT pg_catalog.pg_logical_emit_message(true, 'pgms', 'cutover')") //nolint:errcheck // only a shortcut: the WAL writer flushes anyway
		}
	}()
	defer func() { <-nudged }()

	deadline := locked.Add(limit)
	for {
		var ok *bool
		pctx, cancelPoll := context.WithDeadline(ctx, deadline.Add(time.Second))
		err := conn.Conn.QueryRow(pctx, confirmStmt, lsn, m.slot).Scan(&ok)
		cancelPoll()
		if err != nil {
			m.rollback(conn)
			m.noteBlocked(time.Since(sent))
			switch {
			case ctx.Err() != nil:
				return res, fmt.Errorf("%w while waiting for the destination: %w", ErrInterrupted, ctx.Err())
			case errors.Is(err, pgx.ErrNoRows):
				return res, fmt.Errorf("node %s: replication slot %s disappeared during the cutover", m.src.Name, m.slot)
			case connectionLost(err):
				return res, &errRetry{reason: fmt.Sprintf("the cutover's session on %s was lost before its commit (%s); its transaction is rolled back (by the server when the session ends, at the latest after the pause budget)", m.src.Name, pgutil.Describe(err))}
			}
			return res, pgutil.Wrap(err, "node %s: wait for the destination to confirm %s", m.src.Name, lsn)
		}
		if ok != nil && *ok {
			break
		}
		if time.Now().After(deadline) {
			m.rollback(conn)
			m.noteBlocked(time.Since(sent))
			return res, &errRetry{reason: fmt.Sprintf("the destination did not confirm the source's WAL position within %v under the lock (the probe before predicted less)", limit.Round(time.Millisecond))}
		}
		if ctx.Err() != nil {
			m.rollback(conn)
			m.noteBlocked(time.Since(sent))
			return res, fmt.Errorf("%w while waiting for the destination: %w", ErrInterrupted, ctx.Err())
		}
		time.Sleep(200 * time.Microsecond)
	}
	if err := fault.Point(ctx, "move.cutover.before-commit"); err != nil {
		m.rollback(conn)
		m.noteBlocked(time.Since(sent))
		return res, err
	}
	return m.commit(ctx, conn, sess, res, locked)
}

// commit ends a cutover attempt. From here on the move only goes forward:
// the commit is not cancelled, and an outcome in doubt is found out from
// the source, never guessed.
func (m *move) commit(ctx context.Context, conn *pgutil.Node, sess session, res cutoverResult, locked time.Time) (cutoverResult, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.MaxPause+queryTimeout)
	defer cancel()
	// A COMMIT that waits for a synchronous standby holds the locks while
	// it waits. Once the budget is spent, the wait is cancelled from
	// another session: the transaction has committed locally, the locks
	// go, and the standbys are waited for before the activation instead.
	budget := time.Until(locked.Add(m.opts.MaxPause))
	syncWait := time.AfterFunc(max(budget, 50*time.Millisecond), func() {
		c, err := pgutil.ConnectAs(context.Background(), m.spec.From.Name, m.spec.From.DSN)
		if err != nil {
			return
		}
		defer c.Close()
		c.Conn.Exec(context.Background(), "SELECT pg_catalog.pg_cancel_backend(pid) FROM pg_catalog.pg_stat_activity WHERE pid = $1 AND backend_start = $2 AND wait_event = 'SyncRep'", //nolint:errcheck // best effort: the read-back below decides
			sess.pid, sess.start)
	})
	results, err := conn.Conn.PgConn().Exec(cctx, "COMMIT; SELECT pg_catalog.pg_current_wal_insert_lsn()::text").ReadAll()
	syncWait.Stop()
	res.committed = time.Now()
	res.locked = locked
	if err == nil && len(results) > 0 && results[0].CommandTag.String() != "COMMIT" {
		m.noteBlocked(time.Since(res.sent))
		return res, &errRetry{reason: "the cutover transaction was rolled back at commit"}
	}
	if err == nil && len(results) > 1 && len(results[1].Rows) == 1 {
		res.commitLSN = string(results[1].Rows[0][0])
	}
	if err != nil {
		conn.Close()
		m.event(PhaseCutover, EventWarning, fmt.Sprintf("the reply to the cutover's COMMIT on %s was lost (%s); finding out from %s whether it took effect (up to %v)",
			m.src.Name, pgutil.Describe(err), m.src.Name, m.opts.CommitResolveTimeout))
		done, rerr := m.resolveCommit(ctx, sess, res.old)
		if rerr != nil {
			m.inDoubt = true
			return res, fmt.Errorf("node %s: the cutover's COMMIT was sent but whether it took effect could not be learned within %v (%s): %s may now be served by no node. Nothing was undone. When %s answers again, run the same move again: it finds out, then finishes or starts over",
				m.src.Name, m.opts.CommitResolveTimeout, pgutil.Describe(rerr), m.schema, m.src.Name)
		}
		if !done {
			m.noteBlocked(time.Since(res.sent))
			return res, &errRetry{reason: "the cutover's commit did not take effect (" + pgutil.Describe(err) + ")"}
		}
		m.event(PhaseCutover, EventInfo, fmt.Sprintf("the cutover's COMMIT had taken effect on %s (%s renamed to %s); finishing", m.src.Name, m.schema, res.old))
	}
	m.committed = true
	return res, fault.Point(ctx, "move.cutover.committed")
}

// resolveCommit finds out whether a cutover COMMIT whose reply was lost
// took effect, trying for as long as CommitResolveTimeout allows. The
// session that sent it is ended first, if it still exists: until then
// its transaction could still commit, and reading the source would prove
// nothing.
func (m *move) resolveCommit(ctx context.Context, sess session, old string) (bool, error) {
	deadline := time.Now().Add(m.opts.CommitResolveTimeout)
	ctx = context.WithoutCancel(ctx)
	var lastErr error
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, max(min(queryTimeout, time.Until(deadline)), time.Second))
		done, err := m.readCommitOutcome(rctx, sess, old)
		cancel()
		if err == nil {
			return done, nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return false, lastErr
		}
		if attempt == 1 || attempt%10 == 0 {
			m.event(PhaseCutover, EventWarning, fmt.Sprintf("cannot learn yet whether the cutover committed on %s (%s); trying again, nothing is undone meanwhile", m.src.Name, pgutil.Describe(err)))
		}
		time.Sleep(min(backoff(attempt), 2*time.Second))
	}
}

func (m *move) readCommitOutcome(ctx context.Context, sess session, old string) (bool, error) {
	n, err := pgutil.ConnectAs(ctx, m.spec.From.Name, m.spec.From.DSN)
	if err != nil {
		return false, err
	}
	defer n.Close()
	for {
		var alive bool
		if err := n.Conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = $1 AND backend_start = $2)", sess.pid, sess.start).Scan(&alive); err != nil {
			return false, err
		}
		if !alive {
			break
		}
		if _, err := n.Conn.Exec(ctx, "SELECT pg_catalog.pg_terminate_backend($1)", sess.pid); err != nil {
			return false, err
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return false, err
		}
	}
	if old == m.schema {
		// A windowed cutover: it committed if the source carries the mark.
		var marked bool
		err := n.Conn.QueryRow(ctx, `SELECT COALESCE(starts_with(obj_description(to_regnamespace($1), 'pg_namespace'), $2), false)`,
			pgutil.Quote(m.schema), names.WindowMarkPrefix).Scan(&marked)
		return marked, err
	}
	var gone, there bool
	err = n.Conn.QueryRow(ctx, `SELECT to_regnamespace($1) IS NULL, to_regnamespace($2) IS NOT NULL`, pgutil.Quote(m.schema), pgutil.Quote(old)).Scan(&gone, &there)
	switch {
	case err != nil:
		return false, err
	case gone && there:
		return true, nil
	case !gone && !there:
		return false, nil
	}
	return false, fmt.Errorf("node %s holds %s: %t, %s: %t, which no cutover leaves", m.src.Name, m.schema, !gone, old, there)
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
	return errors.As(err, &pgErr) && pgErr.Code == pgutil.CodeInternalError && strings.Contains(pgErr.Message, "concurrently updated")
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
