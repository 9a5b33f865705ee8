package executor

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/state"
)

// copyStrategy fills the destination's copy of the shard and leaves it
// streaming changes from the source.
//
// The phases around it are shared: before Start the destination holds the
// shard's definition (DDL phase, marked as an unfinished copy) and no
// replication object of the move exists; after WaitCopied the move's
// publication (m.pub) and slot (m.slot) on the source and subscription
// (m.sub, synchronous_commit=on) on the destination must exist and stream,
// with every table of the subscription ready, because catch-up, cutover and
// cleanup rely on exactly these objects. A strategy may use other objects
// in between (exported snapshots, extra connections, dropped and rebuilt
// indexes) as long as a failure at any point leaves only things that the
// shared undo removes: the three named objects and the marked copy.
type copyStrategy interface {
	// Name is shown in progress lines and recorded in the journal.
	Name() string
	// Start begins the copy.
	Start(ctx context.Context, m *move) error
	// WaitCopied returns once the initial copy is complete, reporting
	// progress meanwhile. It is also how a resumed move waits for a copy
	// that an earlier run started.
	WaitCopied(ctx context.Context, m *move) error
	// Release ends whatever sessions the strategy still holds; the move
	// calls it once drive returns, whatever the outcome.
	Release()
	// defersPostData tells the DDL phase to create the pre-data section
	// only: the strategy builds indexes, constraints and triggers itself.
	defersPostData() bool
	// keep hands an interrupted copy over to what goes on without pgms,
	// when the move keeps what it made (MoveOptions.KeepOnInterrupt, a
	// stalled stream), so that the next run continues it.
	keep(ctx context.Context, m *move) error
}

// CopyStrategies are the names MoveOptions.Strategy accepts.
var CopyStrategies = []string{"fast", "native"}

func newCopyStrategy(name string) (copyStrategy, error) {
	switch name {
	case "fast":
		return &fastCopy{}, nil
	case "native":
		return nativeCopy{}, nil
	}
	return nil, fmt.Errorf("unknown copy strategy %q (known: %s)", name, strings.Join(CopyStrategies, ", "))
}

// nativeCopy lets the subscription copy the tables (copy_data = true): one
// table synchronisation worker per table, up to the destination's
// max_sync_workers_per_subscription at a time.
type nativeCopy struct{}

func (nativeCopy) Name() string { return "native" }

func (nativeCopy) Start(ctx context.Context, m *move) error {
	if err := m.createPublication(ctx); err != nil {
		return err
	}
	if err := fault.Point(ctx, "move.replicate.publication"); err != nil {
		return err
	}
	return m.subscribeCopying(ctx)
}

// subscribeCopying creates the slot, then a subscription that copies the
// tables through it; the publication exists.
func (m *move) subscribeCopying(ctx context.Context) error {
	if err := m.createSlot(ctx); err != nil {
		return err
	}
	if err := fault.Point(ctx, "move.replicate.slot"); err != nil {
		return err
	}
	if err := m.createSubscription(ctx, true); err != nil {
		return err
	}
	return fault.Point(ctx, "move.replicate.end")
}

func (nativeCopy) WaitCopied(ctx context.Context, m *move) error {
	m.verifySkipped("the native copy has no snapshot to compare with (use the fast copy)")
	return m.waitSubscriptionReady(ctx)
}

func (nativeCopy) Release() {}

// defersPostData: the subscription copies into the complete definition.
func (nativeCopy) defersPostData() bool { return false }

// keep: the subscription goes on copying by itself.
func (nativeCopy) keep(context.Context, *move) error { return nil }

// createPublication publishes the shard's tables on the source. It comes
// before the slot: a slot created earlier makes the stream fail with
// "publication does not exist".
func (m *move) createPublication(ctx context.Context) error {
	q := "CREATE PUBLICATION " + pgutil.Quote(m.pub)
	if leaves := m.leafTables(); len(leaves) > 0 {
		list := make([]string, len(leaves))
		for i, t := range leaves {
			list[i] = pgutil.Quote(m.schema, t.Name)
		}
		q += " FOR TABLE " + strings.Join(list, ", ")
	}
	_, err := m.src.Conn.Exec(ctx, q)
	return pgutil.Wrap(err, "node %s: create publication %s", m.src.Name, m.pub)
}

// createSlot creates the logical slot in a statement of its own:
// pg_create_logical_replication_slot refuses a transaction that wrote.
//
// Creating a logical slot waits until every transaction that had written
// when it started has ended; a forgotten open transaction on the source
// makes it wait for ever. The wait is reported, naming the oldest such
// transaction, so that someone can end it.
func (m *move) createSlot(ctx context.Context) error {
	err := m.whileSlotCreated(ctx, func() error {
		_, err := m.src.Conn.Exec(ctx, "SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')", m.slot)
		return err
	})
	return m.interrupted(ctx, pgutil.Wrap(err, "node %s: create replication slot %s", m.src.Name, m.slot))
}

// whileSlotCreated runs create, which makes the slot, and names the
// transactions it waits for if it takes long.
func (m *move) whileSlotCreated(ctx context.Context, create func() error) error {
	done := make(chan error, 1)
	go func() { done <- create() }()
	report := time.NewTimer(5 * time.Second)
	defer report.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-report.C:
			m.reportOldestWriter(ctx)
			report.Reset(30 * time.Second)
		}
	}
}

// reportOldestWriter names the oldest transaction on the source that holds
// a transaction id, on a connection of its own.
func (m *move) reportOldestWriter(ctx context.Context) {
	n, err := pgutil.ConnectAs(ctx, m.spec.From.Name, m.spec.From.DSN)
	if err != nil {
		return
	}
	defer n.Close()
	var pid int
	var user, app, query string
	var age time.Duration
	err = n.Conn.QueryRow(ctx, `SELECT pid, COALESCE(usename::text, ''), COALESCE(application_name, ''), now() - xact_start, left(COALESCE(query, ''), 80)
		FROM pg_catalog.pg_stat_activity
		WHERE backend_xid IS NOT NULL AND backend_type = 'client backend' AND datname = current_database()
		ORDER BY xact_start LIMIT 1`).Scan(&pid, &user, &app, &age, &query)
	if err != nil {
		m.event(PhaseReplicate, EventWarning, "creating the replication slot waits for transactions open on "+m.src.Name+" to end")
		return
	}
	m.event(PhaseReplicate, EventWarning, fmt.Sprintf("creating the replication slot waits for the transactions open on %s to end; the oldest: pid %d (user %s, application %q), open for %v, last query: %s",
		m.src.Name, pid, user, app, age.Round(time.Second), strings.Join(strings.Fields(query), " ")))
}

// createSubscription subscribes the destination to the publication through
// the existing slot. synchronous_commit=on makes the apply worker report
// its flush position at once, which is what lets the cutover wait ~1 ms
// instead of ~600 ms for the destination to confirm.
func (m *move) createSubscription(ctx context.Context, copyData bool) error {
	conninfo, err := m.publisherConninfo()
	if err != nil {
		return err
	}
	binary := false
	if copyData {
		if binary, err = m.binaryInitialSync(ctx); err != nil {
			return err
		}
		if binary {
			m.event(PhaseReplicate, EventInfo, fmt.Sprintf("the subscription copies the tables in binary (PostgreSQL %d on both sides, built-in column types)", m.srcMajor))
		}
	}
	// binary is named only when set: PostgreSQL 13 does not know it.
	binaryOption := ""
	if binary {
		binaryOption = ", binary = true"
	}
	q := fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (create_slot = false, slot_name = %s, copy_data = %t, synchronous_commit = 'on', enabled = true%s)",
		pgutil.Quote(m.sub), quoteLiteral(conninfo), pgutil.Quote(m.pub), quoteLiteral(m.slot), copyData, binaryOption)
	err = withoutStatementLog(ctx, m.dst, m.dstMajor, conninfo, func() error {
		_, err := m.dst.Conn.Exec(ctx, q)
		return err
	})
	return pgutil.Wrap(err, "node %s: create subscription %s", m.dst.Name, m.sub)
}

// publisherConninfo is the connection string the destination server uses
// to reach the source. A password pgms found outside the DSN (PGPASSWORD,
// .pgpass) is added, since the server has no access to those.
func (m *move) publisherConninfo() (string, error) { return serverConninfo(m.spec.From, "source") }

// serverConninfo is the connection string another server uses to reach
// ep (role names it in errors).
func serverConninfo(ep Endpoint, role string) (string, error) {
	if ep.PublisherDSN != "" {
		return ep.PublisherDSN, nil
	}
	raw := ep.DSN
	cfg, err := pgconn.ParseConfig(raw)
	if err != nil {
		return "", fmt.Errorf("%s DSN: %w", role, err)
	}
	if u, err := url.Parse(raw); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		password, has := "", false
		if u.User != nil {
			password, has = u.User.Password()
		}
		if !has && !u.Query().Has("password") && cfg.Password != "" {
			password, has = cfg.Password, true
		}
		if has {
			u.User = url.UserPassword(cfg.User, password)
		} else {
			u.User = url.User(cfg.User)
		}
		return u.String(), nil
	}
	// Keyword/value form, possibly empty (libpq environment variables):
	// spell out what pgms resolved.
	parts := []string{raw}
	if !strings.Contains(raw, "host=") {
		parts = append(parts, "host="+kvQuote(cfg.Host), fmt.Sprintf("port=%d", cfg.Port))
	}
	if !strings.Contains(raw, "dbname=") {
		parts = append(parts, "dbname="+kvQuote(cfg.Database))
	}
	if !strings.Contains(raw, "user=") {
		parts = append(parts, "user="+kvQuote(cfg.User))
	}
	if cfg.Password != "" && !strings.Contains(raw, "password=") {
		parts = append(parts, "password="+kvQuote(cfg.Password))
	}
	return strings.TrimSpace(strings.Join(parts, " ")), nil
}

func kvQuote(v string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), "'", `\'`) + "'"
}

// resumeSubscription makes sure a subscription found at preflight runs.
func (m *move) resumeSubscription(ctx context.Context, f found) error {
	if f.subEnabled {
		return nil
	}
	_, err := m.dst.Conn.Exec(ctx, "ALTER SUBSCRIPTION "+pgutil.Quote(m.sub)+" ENABLE")
	return pgutil.Wrap(err, "node %s: enable subscription %s", m.dst.Name, m.sub)
}

// syncStates maps pg_subscription_rel states to words.
var syncStates = map[string]string{"i": "waiting", "d": "copying", "f": "copying", "s": "copying", "r": "ready"}

// maxReplicationErrors is how many table sync or apply errors during one
// wait make the move give up rather than retry forever.
const maxReplicationErrors = 5

// subscriptionErrors reads the move's subscription's error count (expr, a
// sum of pg_stat_subscription_stats columns) on the destination. That view
// is new in PostgreSQL 15: before, errors are not counted (0).
func (m *move) subscriptionErrors(ctx context.Context, expr string) (int64, error) {
	if m.dstMajor < 15 {
		return 0, nil
	}
	var n int64
	if err := m.dst.Conn.QueryRow(ctx, `SELECT COALESCE((SELECT `+expr+` FROM pg_catalog.pg_stat_subscription_stats WHERE subid = `+subscriptionOID+`), 0)`, m.sub).Scan(&n); err != nil {
		return 0, m.interrupted(ctx, pgutil.Wrap(err, "node %s: read replication errors", m.dst.Name))
	}
	return n, nil
}

// subscriptionOID is the oid of the subscription named $1 in this
// database. pg_subscription is shared by every database of a server, and
// the statistics views list the subscriptions of all of them: another
// database may have one of the same name (another cluster on the server,
// moving the same shard).
const subscriptionOID = `(SELECT oid FROM pg_catalog.pg_subscription WHERE subname = $1
	AND subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))`

// waitSubscriptionReady waits until every table of the subscription is
// ready, reporting the copy's progress from pg_stat_progress_copy.
func (m *move) waitSubscriptionReady(ctx context.Context) error {
	leaves := m.leafTables()
	size := map[string]int64{}
	var total int64
	for _, t := range leaves {
		size[t.Name] = t.Bytes
		total += t.Bytes
	}
	seen := map[string]state.TableProgress{}
	var firstErrors int64 = -1
	began, startBytes := time.Now(), int64(-1)
	lastJournal := time.Time{}
	// pg_stat_progress_copy is new in PostgreSQL 14: before, the rows come
	// from the table's insert count alone.
	progressCols := "COALESCE(p.bytes_processed, 0), COALESCE(p.tuples_processed, 0)"
	progressJoin := "LEFT JOIN pg_catalog.pg_stat_progress_copy p ON p.relid = sr.srrelid"
	if m.dstMajor < 14 {
		progressCols, progressJoin = "0::bigint, 0::bigint", ""
	}
	for {
		qctx, cancelQ := bounded(ctx)
		rows, err := m.dst.Conn.Query(qctx, `SELECT c.relname, sr.srsubstate::text,
			  `+progressCols+`, COALESCE(t.n_tup_ins, 0)
			FROM pg_catalog.pg_subscription s
			JOIN pg_catalog.pg_subscription_rel sr ON sr.srsubid = s.oid
			JOIN pg_catalog.pg_class c ON c.oid = sr.srrelid
			`+progressJoin+`
			LEFT JOIN pg_catalog.pg_stat_user_tables t ON t.relid = sr.srrelid
			WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())`, m.sub)
		if err != nil {
			return m.interrupted(ctx, pgutil.Wrap(err, "node %s: read the copy's progress", m.dst.Name))
		}
		progress := CopyProgress{TotalBytes: total}
		listed := 0
		for rows.Next() {
			var name, st string
			var bytes, tuples, inserted int64
			if err := rows.Scan(&name, &st, &bytes, &tuples, &inserted); err != nil {
				rows.Close()
				return err
			}
			listed++
			tp := seen[name]
			tp.Name, tp.State, tp.TotalBytes = name, syncStates[st], size[name]
			tp.Bytes = max(tp.Bytes, bytes)
			tp.Rows = max(tp.Rows, tuples, inserted)
			if tp.State == "ready" {
				progress.Ready++
				tp.Bytes = max(tp.Bytes, size[name])
			}
			seen[name] = tp
		}
		if err := rows.Err(); err != nil {
			return m.interrupted(ctx, pgutil.Wrap(err, "node %s: read the copy's progress", m.dst.Name))
		}
		errorsNow, err := m.subscriptionErrors(qctx, "sync_error_count + apply_error_count")
		cancelQ()
		if err != nil {
			return err
		}
		if firstErrors < 0 {
			firstErrors = errorsNow
		}
		progress.Errors = errorsNow - firstErrors
		for _, t := range leaves {
			tp, ok := seen[t.Name]
			if !ok {
				tp = state.TableProgress{Name: t.Name, State: "waiting", TotalBytes: t.Bytes}
			}
			progress.Tables = append(progress.Tables, tp)
			progress.Bytes += min(tp.Bytes, max(tp.TotalBytes, tp.Bytes))
			progress.Rows += tp.Rows
		}
		// The rate is averaged over the wait: per poll it jumps whenever a
		// finished table's size is counted at once.
		now := time.Now()
		if startBytes < 0 {
			startBytes = progress.Bytes
		} else if dt := now.Sub(began).Seconds(); dt > 0 {
			progress.Rate = float64(progress.Bytes-startBytes) / dt
		}
		done := listed >= len(leaves) && progress.Ready == listed
		m.mu.Lock()
		m.progress.Bytes, m.progress.Rows, m.progress.Tables = progress.Bytes, progress.Rows, progress.Tables
		st := m.progress
		m.mu.Unlock()
		m.rep.Report(Event{Time: now, Shard: m.spec.Shard, Schema: m.schema, Phase: PhaseBackfill, Kind: EventProgress, Copy: &progress, LagBytes: -1})
		if done || now.Sub(lastJournal) >= 5*time.Second {
			m.record(ctx, st)
			lastJournal = now
		}
		if done {
			m.res.Bytes, m.res.Rows = progress.Bytes, progress.Rows
			return fault.Point(ctx, "move.backfill.end")
		}
		if progress.Errors >= maxReplicationErrors {
			return fmt.Errorf("node %s: subscription %s failed %d times while copying (see that server's log for the cause, e.g. a table whose definition differs)", m.dst.Name, m.sub, progress.Errors)
		}
		if _, err := m.readSlot(ctx, m.src.Conn); err != nil {
			return err
		}
		if err := sleep(ctx, m.opts.PollInterval); err != nil {
			return fmt.Errorf("%w during the backfill: %w", ErrInterrupted, err)
		}
	}
}

// interrupted tells a cancellation apart from a failure of a query that the
// cancellation broke.
func (m *move) interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrInterrupted, ctx.Err())
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
