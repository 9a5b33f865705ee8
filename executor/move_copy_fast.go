package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/pgutil"
)

// fastCopy copies the tables itself instead of letting the subscription do
// it:
//
//   - the destination gets pg_dump's pre-data section only (DDL phase):
//     tables without indexes, keys, foreign keys or triggers;
//   - Start creates the publication, then the slot over a replication
//     connection that exports the slot's snapshot, and opens the copy
//     workers, each in a REPEATABLE READ transaction on that snapshot; the
//     replication connection stays idle until every worker and pg_dump
//     (for the post-data section, under the same snapshot) have imported
//     it;
//   - WaitCopied streams every table from source to destination with COPY,
//     binary where that is safe, in parallel, and builds each table's
//     indexes as soon as its rows are in, then the rest of pg_dump's
//     post-data section (backfillJob); then it subscribes with copy_data =
//     false through the slot, so streaming starts exactly where the
//     snapshot ends.
//
// A crash anywhere before the subscription exists leaves a marked copy
// without subscription: the next run removes it and starts again (the
// snapshot ended with the crashed run). Where the replication connection
// cannot be opened (a pooler in the way, for example) the move falls back
// to the native copy and says why.
type fastCopy struct {
	mu      sync.Mutex
	repl    *pgconn.PgConn // exported the snapshot; closed once nobody needs it
	workers []*copyWorker
	plan    []*tableCopy
	units   []copyUnit
	// dump delivers the post-data section, dumped under the snapshot.
	dump     chan dumpResult
	stopDump context.CancelFunc
	state    fastState
	// resume: the copy continues a kept copy of an earlier run (see
	// continueCopy); existing names the indexes it had, or built first.
	resume   bool
	existing map[string]bool
}

// fastState is where a fast copy stands.
type fastState int

const (
	// fastResumed: Start did not run in this process; a move resumed with
	// its subscription in place only waits for it.
	fastResumed fastState = iota
	// fastCopying: Start ran here, so WaitCopied copies from the snapshot.
	fastCopying
	// fastSubscribed: the subscription exists; the copy is complete.
	fastSubscribed
	// fastNative: fell back to, or was handed over to, the subscription's
	// own copy.
	fastNative
)

type dumpResult struct {
	script string
	err    error
}

// copyWorker is one pair of sessions: on the source in a transaction on the
// exported snapshot, on the destination to write the rows.
type copyWorker struct {
	src, dst *pgutil.Node
}

func (*fastCopy) Name() string { return "fast" }

// defersPostData tells the DDL phase to create the pre-data section only.
func (f *fastCopy) defersPostData() bool { return f.state != fastNative }

// keep hands an interrupted fast copy over to the subscription, so that,
// as with the native copy, what is kept continues without pgms and the
// next run waits for it: the snapshot the copy read from ends with this
// run, so the partial copy is replaced by the complete definition and a
// subscription that copies the tables itself through the move's slot.
func (f *fastCopy) keep(ctx context.Context, m *move) error {
	if f.state != fastCopying {
		return nil
	}
	f.Release()
	f.state = fastNative
	m.event(PhaseUndo, EventInfo, "the interrupted copy cannot continue from its snapshot; handing it over to the subscription (native copy), which goes on copying without pgms")
	if err := m.revive(ctx); err != nil {
		return err
	}
	if err := m.dropMarkedCopy(ctx); err != nil {
		return err
	}
	if err := m.copyDDL(ctx); err != nil {
		return err
	}
	return m.createSubscription(ctx, true)
}

func (f *fastCopy) Start(ctx context.Context, m *move) (err error) {
	defer func() {
		if err != nil {
			f.Release()
		}
	}()
	if err := m.createPublication(ctx); err != nil {
		return err
	}
	if err := fault.Point(ctx, "move.replicate.publication"); err != nil {
		return err
	}
	plan, err := m.planCopy(ctx)
	if err != nil {
		return err
	}
	repl, err := m.openReplication(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return m.interrupted(ctx, err)
		}
		return f.fallBack(ctx, m, fmt.Sprintf("no replication connection to %s (%s)", m.src.Name, pgutil.ConnectCause(err)))
	}
	f.repl = repl
	snapshot, err := m.createExportingSlot(ctx, repl)
	var unsupported *unsupportedError
	if errors.As(err, &unsupported) {
		f.closeRepl()
		return f.fallBack(ctx, m, unsupported.Error())
	}
	if err != nil {
		return err
	}
	if err := fault.Point(ctx, "move.replicate.slot"); err != nil {
		return err
	}
	f.plan, f.units = plan.tables, plan.units
	if f.workers, err = m.openCopyWorkers(ctx, min(m.opts.CopyWorkers, len(f.units)), snapshot); err != nil {
		return err
	}
	// pg_dump imports the snapshot too; the replication connection is
	// closed once it has finished, which is long before the copy has.
	dctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	f.dump, f.stopDump = make(chan dumpResult, 1), stop
	go func() {
		script, err := m.dumpSchema(dctx, "--section=post-data", "--snapshot="+snapshot)
		f.closeRepl()
		f.dump <- dumpResult{script, err}
	}()
	f.state = fastCopying
	if len(plan.text) > 0 {
		m.event(PhaseReplicate, EventInfo, "copying as text (their column types have no binary form that is the same in both databases): "+strings.Join(plan.text, "; "))
	}
	return fault.Point(ctx, "move.replicate.end")
}

// fallBack creates what the native copy needs (the publication exists):
// the post-data section, so that the subscription's copy maintains every
// index, then the slot and a copying subscription.
func (f *fastCopy) fallBack(ctx context.Context, m *move, why string) error {
	m.event(PhaseReplicate, EventWarning, "the fast copy cannot run: "+why+"; using the native copy instead (slower: the subscription copies the tables into their indexes)")
	if f.resume {
		// The subscription copies whole tables: a kept copy is in the way.
		// Its DDL is made again while the state still defers post-data, which
		// the lines below add.
		f.resume = false
		if err := m.dropMarkedCopy(ctx); err != nil {
			return err
		}
		if err := m.copyDDL(ctx); err != nil {
			return err
		}
	}
	f.state = fastNative
	script, err := m.dumpSchema(ctx, "--section=post-data")
	if err != nil {
		return err
	}
	err = m.runBackfill(ctx, nil, nil, nil, 1, func(context.Context) (string, error) { return script, nil })
	if err != nil {
		return err
	}
	return m.subscribeCopying(ctx)
}

func (f *fastCopy) WaitCopied(ctx context.Context, m *move) error {
	switch f.state {
	case fastNative:
		m.verifySkipped("the native copy has no snapshot to compare with (the fast copy could not run)")
		return m.waitSubscriptionReady(ctx)
	case fastResumed:
		m.verifySkipped("the copy was resumed from an earlier run, whose snapshot ended with it")
		// A subscription found at preflight: an earlier run's, maybe not
		// streaming yet if that run ended just after creating it.
		if err := m.waitSubscriptionReady(ctx); err != nil {
			return err
		}
		return m.waitStreaming(ctx)
	}
	defer f.Release()
	parts := ""
	if len(f.units) > len(f.plan) {
		parts = fmt.Sprintf(" in %d parts", len(f.units))
	}
	began := time.Now()
	postData := func(ctx context.Context) (string, error) {
		select {
		case dumped := <-f.dump:
			return dumped.script, dumped.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	var replaced []verifyChunk
	if f.resume {
		script, chunks, err := f.continueCopy(ctx, m)
		if err != nil {
			return err
		}
		replaced = chunks
		postData = func(context.Context) (string, error) { return script, nil }
	}
	m.subPhase(ctx, "copy", fmt.Sprintf("copying %d tables%s, %d at a time, from the slot's snapshot; a table's indexes are built once its rows are in", len(f.plan), parts, len(f.workers)))
	err := m.runBackfill(ctx, f.workers, f.plan, f.units, m.opts.CopyWorkers, postData)
	if err != nil {
		return err
	}
	if err := fault.Point(ctx, "move.backfill.indexed"); err != nil {
		return err
	}
	switch {
	case m.verifiesCopy() && f.resume:
		chunks, err := m.gateChunks(ctx, f, replaced)
		if err != nil {
			return m.interrupted(ctx, err)
		}
		if err := m.verifyChunks(ctx, f.workers, len(f.plan), chunks); err != nil {
			return err
		}
	case m.verifiesCopy():
		if err := m.verifyCopy(ctx, f.workers, f.plan); err != nil {
			return err
		}
	}
	f.Release()
	m.subPhase(ctx, "subscribe", fmt.Sprintf("rows, indexes and constraints in place after %v; subscribing from the end of the snapshot", time.Since(began).Round(time.Millisecond)))
	if err := m.createSubscription(ctx, false); err != nil {
		return err
	}
	f.state = fastSubscribed
	return m.finishFastBackfill(ctx, f.plan)
}

// finishFastBackfill checks that the subscription took every table as
// ready (copy_data = false adds them so) and reports the copy as done.
func (m *move) finishFastBackfill(ctx context.Context, plan []*tableCopy) error {
	var pending int
	err := m.dst.Conn.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_subscription_rel sr
		JOIN pg_catalog.pg_subscription s ON s.oid = sr.srsubid
		WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()) AND sr.srsubstate <> 'r'`, m.sub).Scan(&pending)
	if err != nil {
		return m.interrupted(ctx, pgutil.Wrap(err, "node %s: read the state of subscription %s", m.dst.Name, m.sub))
	}
	if pending > 0 {
		return m.waitSubscriptionReady(ctx)
	}
	if err := m.waitStreaming(ctx); err != nil {
		return err
	}
	progress := m.copyProgress(plan, 0)
	m.mu.Lock()
	m.progress.Phase = string(PhaseBackfill)
	m.progress.Bytes, m.progress.Rows, m.progress.Tables = progress.Bytes, progress.Rows, progress.Tables
	st := m.progress
	m.mu.Unlock()
	m.res.Bytes, m.res.Rows = progress.Bytes, progress.Rows
	m.record(ctx, st)
	m.rep.Report(Event{Time: time.Now(), Shard: m.spec.Shard, Schema: m.schema, Phase: PhaseBackfill, Kind: EventProgress, Copy: progress, LagBytes: -1})
	return fault.Point(ctx, "move.backfill.end")
}

// waitStreaming waits until the new subscription's apply worker receives
// from the source. Until then the slot's lag looks small (nothing was
// written since the snapshot) though nothing is applied: a cutover then
// would hold its lock while the worker starts, which the launcher may
// delay by up to wal_retrieve_retry_interval.
func (m *move) waitStreaming(ctx context.Context) error {
	began := time.Now()
	warned := false
	var checked time.Time
	for {
		if time.Since(checked) > 500*time.Millisecond {
			checked = time.Now()
			if _, err := m.readSlot(ctx, m.src.Conn); err != nil {
				return err
			}
		}
		var streaming bool
		qctx, cancel := bounded(ctx)
		err := m.dst.Conn.QueryRow(qctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_subscription
			WHERE subid = `+subscriptionOID+` AND relid IS NULL AND received_lsn IS NOT NULL)`, m.sub).Scan(&streaming)
		cancel()
		if err != nil {
			return m.interrupted(ctx, pgutil.Wrap(err, "node %s: read the state of subscription %s", m.dst.Name, m.sub))
		}
		if streaming {
			return nil
		}
		if !warned && time.Since(began) > 30*time.Second {
			m.event(PhaseBackfill, EventWarning, fmt.Sprintf("the apply worker of subscription %s on %s has not started streaming after 30 s: see that server's log, and max_logical_replication_workers", m.sub, m.dst.Name))
			warned = true
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			return fmt.Errorf("%w while the subscription starts: %w", ErrInterrupted, err)
		}
	}
}

// subPhase records a step of the backfill in the journal ("backfill:
// indexes") and prints it.
func (m *move) subPhase(ctx context.Context, name, msg string) {
	m.mu.Lock()
	m.progress.Phase = string(PhaseBackfill) + ": " + name
	st := m.progress
	m.mu.Unlock()
	m.record(ctx, st)
	m.event(PhaseBackfill, EventInfo, msg)
}

// Release closes every session of the copy; it may run more than once.
func (f *fastCopy) Release() {
	f.mu.Lock()
	stop, workers := f.stopDump, f.workers
	f.stopDump, f.workers = nil, nil
	f.mu.Unlock()
	if stop != nil {
		stop()
	}
	f.closeRepl()
	for _, w := range workers {
		w.src.Close()
		w.dst.Close()
	}
}

func (f *fastCopy) closeRepl() {
	f.mu.Lock()
	repl := f.repl
	f.repl = nil
	f.mu.Unlock()
	if repl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		repl.Close(ctx) //nolint:errcheck // closing either way
	}
}

// openReplication opens a logical replication connection to the source.
func (m *move) openReplication(ctx context.Context) (*pgconn.PgConn, error) {
	if err := fault.Point(ctx, "move.replicate.connect"); err != nil {
		return nil, err
	}
	cfg, err := pgutil.ParseConfig(m.spec.From.DSN)
	if err != nil {
		return nil, err
	}
	cfg.RuntimeParams["replication"] = "database"
	return pgconn.ConnectConfig(ctx, &cfg.Config)
}

// unsupportedError: the source did not take the slot-with-snapshot
// command; the native copy may still work.
type unsupportedError struct{ err error }

func (e *unsupportedError) Error() string {
	return "the source does not take CREATE_REPLICATION_SLOT with an exported snapshot (" + pgutil.Describe(e.err) + ")"
}

// createExportingSlot creates the move's slot on the replication
// connection and returns the name of the snapshot it exported, which
// stays valid while the connection is idle.
func (m *move) createExportingSlot(ctx context.Context, repl *pgconn.PgConn) (string, error) {
	q := "CREATE_REPLICATION_SLOT " + pgutil.Quote(m.slot) + " LOGICAL pgoutput (SNAPSHOT 'export')"
	if m.srcMajor < 15 {
		q = "CREATE_REPLICATION_SLOT " + pgutil.Quote(m.slot) + " LOGICAL pgoutput EXPORT_SNAPSHOT"
	}
	var results []*pgconn.Result
	err := m.whileSlotCreated(ctx, func() error {
		var err error
		results, err = repl.Exec(ctx, q).ReadAll()
		return err
	})
	if code := pgutil.SQLState(err); code == pgutil.CodeSyntaxError || code == pgutil.CodeFeatureNotSupported {
		return "", &unsupportedError{err}
	}
	if err != nil {
		return "", m.interrupted(ctx, pgutil.Wrap(err, "node %s: create replication slot %s", m.src.Name, m.slot))
	}
	if len(results) == 1 && len(results[0].Rows) == 1 {
		for i, fd := range results[0].FieldDescriptions {
			if fd.Name == "snapshot_name" && results[0].Rows[0][i] != nil {
				return string(results[0].Rows[0][i]), nil
			}
		}
	}
	return "", fmt.Errorf("node %s: CREATE_REPLICATION_SLOT returned no snapshot name", m.src.Name)
}

// openCopyWorkers opens n pairs of sessions at once, each source session
// in a read-only REPEATABLE READ transaction on the snapshot.
func (m *move) openCopyWorkers(ctx context.Context, n int, snapshot string) ([]*copyWorker, error) {
	workers := make([]*copyWorker, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			w := &copyWorker{}
			workers[i] = w
			if w.src, errs[i] = pgutil.ConnectAs(ctx, m.spec.From.Name, m.spec.From.DSN); errs[i] != nil {
				return
			}
			if w.dst, errs[i] = pgutil.ConnectAs(ctx, m.spec.To.Name, m.spec.To.DSN); errs[i] != nil {
				return
			}
			if _, errs[i] = execSimple(ctx, w.src.Conn, copySessionSettings+"; SET idle_in_transaction_session_timeout = 0"); errs[i] != nil {
				errs[i] = pgutil.Wrap(errs[i], "node %s: prepare a copy session", m.src.Name)
				return
			}
			if _, errs[i] = execSimple(ctx, w.src.Conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT "+quoteLiteral(snapshot)); errs[i] != nil {
				errs[i] = pgutil.Wrap(errs[i], "node %s: import the slot's snapshot", m.src.Name)
				return
			}
			if _, errs[i] = execSimple(ctx, w.dst.Conn, copySessionSettings+"; SET lock_timeout = 0"); errs[i] != nil {
				errs[i] = pgutil.Wrap(errs[i], "node %s: prepare a copy session", m.dst.Name)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, w := range workers {
			w.src.Close()
			w.dst.Close()
		}
		return nil, m.interrupted(ctx, err)
	}
	return workers, nil
}

// copySessionSettings make text COPY exact and equal on both sides (binary
// COPY ignores them) and lift statement time limits a role may carry.
const copySessionSettings = "SET statement_timeout = 0; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; SET TimeZone = 'UTC'"
