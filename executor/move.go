package executor

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// Endpoint is one node of a move.
type Endpoint struct {
	// Name is how the node is shown; dsn.Name(DSN) when empty.
	Name string
	// DSN is how pgms connects; it may hold a password and is never printed.
	DSN string
	// PublisherDSN is how another server reaches this node for a
	// subscription, when that differs from DSN (internal host names,
	// another user): the destination's subscription to the source, and a
	// rollback window's stream from the destination back to the source.
	// Default: DSN, with the password pgms resolved (from PGPASSWORD or
	// .pgpass) added.
	PublisherDSN string
}

// MoveSpec says which shard moves where.
type MoveSpec struct {
	// Shard is the shard number, used with the library's
	// microsharding_ensure_active/inactive on both nodes.
	Shard int
	// Schema is the shard's schema name; when empty it is asked from the
	// source's naming function. Both nodes' naming must agree with it.
	Schema string
	From   Endpoint
	To     Endpoint
	// Activate switches the shard over to the destination. Without it the
	// copy is renamed to names.NewSchema(Schema) on the destination, left
	// inactive, and the source stays as it is (a rehearsal, as
	// pg-microsharding's --activate-on-destination=no).
	Activate bool
	// KeepInactive, with Activate false, makes the move real but leaves
	// the shard inactive: the cutover happens as usual (the source is
	// renamed) and the destination keeps the shard under its own name,
	// not activated. This is how an inactive shard changes node.
	KeepInactive bool
	// LibrarySchema is the schema of the microsharding library; default
	// sql.DefaultSchema.
	LibrarySchema string
	Options       MoveOptions
	// Fleet lists the nodes the activation is checked against (a shard is
	// active on at most one node): the topology's nodes and the nodes its
	// registry knows. The move adds its own two nodes and the nodes their
	// registries know.
	Fleet state.Fleet
	// Who describes the run in the claims the move takes; default: this
	// process running "move".
	Who state.Invocation
	// Rollback makes the move a rollback: From is the node a windowed move
	// went to, To the old home whose source is in its rollback window and
	// already streaming (see openWindow). A rollback resumes at the
	// catch-up; a failure before its cutover leaves the window as it was.
	Rollback bool
}

// MoveOptions tune a move; zero values take the defaults.
type MoveOptions struct {
	// LockTimeout bounds each attempt to lock the shard's tables on the
	// source (the cutover lock). Writers queue behind a waiting lock
	// request, so this is also the longest a failed attempt can delay
	// them. Default 50ms, at most MaxCutoverLockTimeout.
	LockTimeout time.Duration
	// MaxPause is the write-pause budget: if the destination has not
	// confirmed the source's WAL position this long after the lock was
	// granted, the attempt is rolled back and retried. Default 2s.
	MaxPause time.Duration
	// LockAttempts bounds the cutover attempts. Default 20.
	LockAttempts int
	// MaxLag is the replication lag under which the cutover may try the
	// lock. Default 1 MiB.
	MaxLag int64
	// ReplicaIdentityFull sets REPLICA IDENTITY FULL on source tables that
	// have neither a primary key nor a replica identity index, instead of
	// refusing the move.
	ReplicaIdentityFull bool
	// DeactivateSQL runs on the source inside the cutover transaction once
	// per table of the renamed schema, with $1 replaced by the table's
	// qualified, quoted name as a string literal.
	DeactivateSQL string
	// KeepOnInterrupt leaves the replication objects and the destination's
	// copy in place when the context is cancelled before the cutover, so
	// that running the same move again continues the copy. By default an
	// interrupted move is undone.
	KeepOnInterrupt bool
	// PollInterval is how often the backfill and catch-up are checked.
	// Default 1s for the backfill; catch-up polls ten times as often.
	PollInterval time.Duration
	// PgDump is the pg_dump program to use; default: found by pgbin.
	PgDump string
	// Strategy names the copy strategy: "fast" (the default) copies the
	// tables itself from the slot's exported snapshot, in parallel binary
	// COPY streams, and builds indexes and constraints after the data;
	// "native" lets the subscription copy the tables into a destination
	// that has all its indexes. The fast copy falls back to the native one,
	// saying why, where it cannot run.
	Strategy string
	// CopyWorkers is how many tables the fast copy moves at once, and how
	// many indexes it builds at once afterwards. Default: the number of
	// CPUs of this machine, at least 2 and at most 8.
	CopyWorkers int
	// CopyRangeBytes: the fast copy splits a table larger than this into
	// ranges of about this size that workers copy in parallel (sources on
	// PostgreSQL 14 and later, which scan a range of pages directly).
	// Default 64 MiB: each range is committed on its own, so that an
	// interruption loses at most the ranges being copied (see
	// continueCopy); negative: never split.
	CopyRangeBytes int64
	// ActivationTimeout bounds how long a committed cutover keeps trying
	// to activate the shard on the destination: until then the shard is
	// served by no node. Default 60s.
	ActivationTimeout time.Duration
	// CommitResolveTimeout bounds how long the move keeps trying to learn
	// whether a cutover COMMIT whose reply was lost took effect. Default 5m.
	CommitResolveTimeout time.Duration
	// StandbyTimeout bounds the wait, after the cutover commit, for the
	// source's standbys to confirm it before the shard is activated on the
	// destination. Default 30s.
	StandbyTimeout time.Duration
	// StallTimeout: a replication stream that confirms nothing for this
	// long (a cut link, a stuck apply worker) stops the move, keeping the
	// copy so that running the move again continues it. Default 60s.
	StallTimeout time.Duration
	// Verify is the verification gate's level (VerifyLevels): the fast
	// copy is compared with the snapshot it was copied from before
	// streaming starts. Default DefaultVerify.
	Verify string
	// KeepCopyBytes: a fast copy interrupted (or killed) after writing at
	// least this much is kept, and the next run continues it (see
	// continueCopy) instead of starting over. Default
	// DefaultKeepCopyBytes; negative: never.
	KeepCopyBytes int64
	// RollbackWindow, when positive, keeps the source after the cutover
	// under its own name, inactive and fenced against writes, with the new
	// home streaming its changes back, for this long (see openWindow):
	// until then a rollback (MoveSpec.Rollback) switches back with no
	// write lost. Zero or negative: the source is renamed at the cutover
	// (for apply, zero takes the files' rollback_window).
	RollbackWindow time.Duration
}

// Defaults of MoveOptions, for flag definitions and documentation.
const (
	DefaultCutoverLockTimeout   = 50 * time.Millisecond
	DefaultMaxPause             = 2 * time.Second
	DefaultLockAttempts         = 20
	DefaultMaxLag               = 1 << 20
	DefaultActivationTimeout    = 60 * time.Second
	DefaultCommitResolveTimeout = 5 * time.Minute
	DefaultStandbyTimeout       = 30 * time.Second
	DefaultStallTimeout         = 60 * time.Second
	DefaultCopyRangeBytes       = 64 << 20
	// MaxCutoverLockTimeout is the longest cutover lock wait accepted:
	// every writer of the shard queues behind a waiting lock request, so
	// this wait blocks the application as surely as the pause does.
	MaxCutoverLockTimeout = time.Second
)

// CheckCutoverLockTimeout refuses a cutover lock wait above the maximum,
// saying why.
func CheckCutoverLockTimeout(d time.Duration) error {
	if d > MaxCutoverLockTimeout {
		return fmt.Errorf("cutover lock timeout %v is above the maximum of %v: every write to the shard waits behind a waiting lock request, so a longer wait blocks the application for that long; a lock that is not granted in time is simply tried again", d, MaxCutoverLockTimeout)
	}
	return nil
}

func (o MoveOptions) withDefaults() MoveOptions {
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultCutoverLockTimeout
	}
	if o.MaxPause <= 0 {
		o.MaxPause = DefaultMaxPause
	}
	if o.LockAttempts <= 0 {
		o.LockAttempts = DefaultLockAttempts
	}
	if o.MaxLag <= 0 {
		o.MaxLag = DefaultMaxLag
	}
	if o.ActivationTimeout <= 0 {
		o.ActivationTimeout = DefaultActivationTimeout
	}
	if o.CommitResolveTimeout <= 0 {
		o.CommitResolveTimeout = DefaultCommitResolveTimeout
	}
	if o.StandbyTimeout <= 0 {
		o.StandbyTimeout = DefaultStandbyTimeout
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Strategy == "" {
		o.Strategy = "fast"
	}
	if o.CopyWorkers <= 0 {
		o.CopyWorkers = min(max(runtime.NumCPU(), 2), 8)
	}
	if o.CopyRangeBytes == 0 {
		o.CopyRangeBytes = DefaultCopyRangeBytes
	}
	if o.Verify == "" {
		o.Verify = DefaultVerify
	}
	return o
}

// MoveResult says what a move did and how long it took.
type MoveResult struct {
	Schema    string
	OldSchema string // the source's name after the cutover ("" without one)
	NewSchema string // the destination's name of a copy not activated
	// Resumed: the move continued work found on the nodes.
	Resumed bool
	// AlreadyDone: the shard was found active on the destination.
	AlreadyDone bool
	Total       time.Duration
	Backfill    time.Duration // the initial copy, DDL excluded
	CatchUp     time.Duration
	// Pause is the write-pause window: from the lock being granted on the
	// source to the shard being active on the destination. Core is the part
	// from the lock to the commit on the source.
	Pause, Core time.Duration
	// LockWait is how long the successful attempt waited for its lock.
	LockWait time.Duration
	// Blocked is the longest time writers were blocked by any cutover
	// attempt: lock wait plus time under the lock (for the successful one,
	// until the shard was active on the destination). It is the figure an
	// application sees; Pause alone leaves out the wait for the lock.
	Blocked time.Duration
	// Outage is how long the shard was served by no node after the
	// cutover committed (the activation's retries), beyond the pause.
	Outage  time.Duration
	Retries int
	Tables  int
	Bytes   int64 // size of the source tables copied
	Rows    int64 // rows written by the initial copy on the destination
	// Verify says what the verification gate compared (nil: level off).
	Verify *VerifyResult
	// Resume says what a run that continued a kept copy did (nil: none).
	Resume *ResumeResult
}

// ErrInterrupted wraps the context's error when a move stopped at a safe
// point because its context was cancelled.
var ErrInterrupted = errors.New("interrupted")

// move is one move in progress.
type move struct {
	spec   MoveSpec
	opts   MoveOptions
	schema string
	lib    string
	pub    string
	slot   string
	sub    string
	rep    Reporter
	step   *state.Step
	// kind is the journal's name for what runs: move, rollback,
	// close-window.
	kind string

	// src and dst are the sessions holding the move's claims of the shard
	// on each node (see state.ClaimShards): everything the move changes on
	// a node goes through them, so it happens only while the claim holds.
	src, dst           *pgutil.Node
	srcClaim, dstClaim *state.Claim
	// flusher is a second session on the source that flushes its WAL
	// during the cutover (see tryCutover).
	flusher  *pgutil.Node
	srcMajor int
	// shape is the fingerprint of the shard's tables and columns on the
	// source when the copy was set up; the cutover refuses to switch if it
	// changed (a table created, a column added during the move).
	shape string
	// standbys: the source had physical standbys (or named synchronous
	// ones) when the cutover began, so the activation waits for them.
	standbys bool
	dstMajor int

	tables  []table    // the shard's tables on the source
	seqs    []sequence // the shard's sequences on the source
	comment *string    // the source schema's comment, restored on the destination

	strategy copyStrategy

	mu       sync.Mutex
	progress state.StepState
	res      MoveResult

	// touched: the move created or took over objects, so a failure before
	// the commit must undo.
	touched bool
	// committed: the cutover committed on the source.
	committed bool
	// inDoubt: a cutover COMMIT was sent and its outcome could not be
	// learned; nothing may be undone on a guess.
	inDoubt bool
}

type table struct {
	OID    uint32
	Name   string
	Kind   byte // 'r' table, 'p' partitioned table
	Bytes  int64
	Tuples int64
}

type sequence struct {
	OID  uint32
	Name string
}

// Move moves a shard from spec.From to spec.To. It is safe to call again
// with the same spec after any failure or crash: it continues or undoes
// what it finds. journal may be nil; rep receives progress (nil: none).
// Moves of different shards may run in parallel, sharing journal and rep.
func Move(ctx context.Context, spec MoveSpec, journal *state.Journal, rep Reporter) (MoveResult, error) {
	m, err := newMove(spec, rep)
	if err != nil {
		return MoveResult{}, err
	}
	start := time.Now()
	err = m.begin(ctx, journal)
	if err == nil {
		err = m.run(ctx)
	}
	m.release(ctx)
	m.res.Total = time.Since(start)
	m.endStep(ctx, err)
	if err != nil {
		return m.res, fmt.Errorf("%s shard %d (%s) from %s to %s: %w", map[bool]string{true: "roll back", false: "move"}[spec.Rollback],
			spec.Shard, orShard(m.schema, spec.Shard), m.spec.From.Name, m.spec.To.Name, err)
	}
	return m.res, nil
}

// endStep records the outcome in the journal.
func (m *move) endStep(ctx context.Context, err error) {
	m.mu.Lock()
	m.progress.Total = m.res.Total
	final := m.progress
	m.mu.Unlock()
	outcome := state.OutcomeSucceeded
	switch {
	case errors.Is(err, ErrInterrupted):
		outcome = state.OutcomeInterrupted
	case err != nil:
		outcome = state.OutcomeFailed
	}
	if err == nil {
		final.Phase = string(PhaseDone)
	}
	// The record of the outcome must not be lost to the cancellation that
	// may have caused it.
	jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if jerr := m.step.End(jctx, final, outcome, err); jerr != nil {
		m.event(PhaseDone, EventWarning, "could not record the outcome in the journal: "+pgutil.Describe(jerr))
	}
	m.rep.Report(Event{Time: time.Now(), Shard: m.spec.Shard, Schema: m.schema, Phase: PhaseDone, Kind: EventEnd, Message: string(outcome), LagBytes: -1})
}

// newMove fills in the defaults of a spec.
func newMove(spec MoveSpec, rep Reporter) (*move, error) {
	if rep == nil {
		rep = Discard
	}
	m := &move{spec: spec, opts: spec.Options.withDefaults(), lib: spec.LibrarySchema, rep: rep, kind: "move"}
	if spec.Rollback {
		m.kind = "rollback"
	}
	if m.lib == "" {
		m.lib = sql.DefaultSchema
	}
	if m.spec.From.Name == "" {
		m.spec.From.Name = dsn.Name(spec.From.DSN)
	}
	if m.spec.To.Name == "" {
		m.spec.To.Name = dsn.Name(spec.To.DSN)
	}
	if err := CheckCutoverLockTimeout(m.opts.LockTimeout); err != nil {
		return nil, err
	}
	if err := CheckVerify(m.opts.Verify); err != nil {
		return nil, err
	}
	var err error
	m.strategy, err = newCopyStrategy(m.opts.Strategy)
	return m, err
}

func orShard(schema string, shard int) string {
	if schema != "" {
		return schema
	}
	return fmt.Sprintf("shard %d", shard)
}

// begin names the shard's schema and its replication objects, claims the
// shard on both nodes and opens the step in the journal.
func (m *move) begin(ctx context.Context, journal *state.Journal) error {
	var err error
	if m.schema, err = m.shardSchema(ctx); err != nil {
		return err
	}
	m.res.Schema = m.schema
	m.pub, m.sub = names.MovePublication(m.schema), names.MoveSubscription(m.schema)
	if err := m.connect(ctx); err != nil {
		return err
	}
	var db uint32
	if err := m.src.Conn.QueryRow(ctx, "SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()").Scan(&db); err != nil {
		return pgutil.Wrap(err, "node %s: read the database's oid", m.src.Name)
	}
	m.slot = names.MoveSlot(m.schema, db)
	m.step, err = journal.BeginStep(ctx, state.StepStart{
		Kind: m.kind, Shard: m.spec.Shard, Schema: m.schema,
		Source: m.spec.From.Name, Destination: m.spec.To.Name, Strategy: m.strategy.Name(),
	})
	return err
}

// connect claims the shard on both nodes; the claims' sessions become the
// move's connections to them.
func (m *move) connect(ctx context.Context) error {
	who := m.spec.Who
	if who.Command == "" {
		who = state.ThisProcess("move", "")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var claims [2]*state.Claim
	var errs [2]error
	var wg sync.WaitGroup
	for i, ep := range []Endpoint{m.spec.From, m.spec.To} {
		role := [2]string{"source", "destination"}[i]
		wg.Go(func() {
			claims[i], errs[i] = state.ClaimShards(ctx, state.ClaimSpec{
				DSN: ep.DSN, Node: ep.Name, LibrarySchema: m.lib,
				Shards: []int{m.spec.Shard}, Schemas: []string{m.schema},
				Purpose: fmt.Sprintf("move %s → %s (%s)", m.spec.From.Name, m.spec.To.Name, role),
				Who:     who,
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs[0], errs[1]); err != nil {
		claims[0].Release(ctx)
		claims[1].Release(ctx)
		return err
	}
	m.srcClaim, m.dstClaim = claims[0], claims[1]
	m.src, m.dst = m.srcClaim.Node(), m.dstClaim.Node()
	for i, c := range claims {
		for _, p := range c.Previous {
			m.event(PhasePreflight, EventInfo, fmt.Sprintf("took over shard %d on %s from a run whose claim ended: %s; its remaining sessions there were ended",
				p.Shard, []string{m.spec.From.Name, m.spec.To.Name}[i], p))
		}
	}
	return nil
}

// release gives up the claims; the move's connections end with them.
func (m *move) release(ctx context.Context) {
	m.srcClaim.Release(ctx)
	m.dstClaim.Release(ctx)
}

// revive reopens the claim sessions that a cancelled query, a terminated
// backend or a restarted server closed: undo and finish run after such
// failures and must still reach both nodes. A claim is taken back only if
// no other run held it meanwhile (state.Claim.Reacquire); otherwise the
// move stops, changing nothing more.
func (m *move) revive(ctx context.Context) error {
	for _, c := range []*state.Claim{m.srcClaim, m.dstClaim} {
		if c == nil {
			continue
		}
		if n := c.Node(); n.Conn != nil && !n.Conn.IsClosed() {
			continue
		}
		if err := c.Reacquire(ctx); err != nil {
			return err
		}
	}
	if m.srcClaim != nil {
		m.src = m.srcClaim.Node()
	}
	if m.dstClaim != nil {
		m.dst = m.dstClaim.Node()
	}
	return nil
}

// run takes the move from whatever state it finds to the end.
func (m *move) run(ctx context.Context) error {
	err := m.drive(ctx)
	// Whatever happened, the strategy's own sessions end here: an open
	// snapshot on the source would hold back its vacuum, and undo must not
	// find the slot still in use.
	m.strategy.Release()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && !errors.Is(err, ErrInterrupted) {
		err = fmt.Errorf("%w: %w", ErrInterrupted, err)
	}
	switch {
	case errors.Is(err, state.ErrClaimLost):
		return fmt.Errorf("%w; this run stops here and changes nothing more: whichever run holds the shard now finishes or undoes the move", err)
	case m.inDoubt:
		return err
	case m.committed && !m.spec.Activate && !m.spec.KeepInactive:
		return fmt.Errorf("%w; the copy is complete on %s as %s, but replication objects may be left: run pgms cleanup, or the same move again (which makes a fresh copy)", err, m.dst.Name, m.res.NewSchema)
	case m.committed && m.spec.Rollback:
		return fmt.Errorf("%w; the rollback's cutover had committed on %s, so it must be finished: run the same rollback again", err, m.spec.From.Name)
	case m.committed:
		return fmt.Errorf("%w; the cutover had committed on the source, so the shard must be finished: run the same move again", err)
	case m.spec.Rollback:
		// The stream back is the window itself: undoing it would close the
		// window. It stays as it was, and the shard stays where it is.
		return fmt.Errorf("%w; nothing was switched: %s is still served by %s, and its rollback window on %s stays open with its stream: run the rollback again", err, m.schema, m.spec.From.Name, m.spec.To.Name)
	case errors.Is(err, errVerifyMismatch):
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		// The source's slot and publication go (a slot retains WAL); the
		// copy stays, still marked as unfinished and never subscribed, so
		// that both can be compared.
		if kerr := m.dropReplication(kctx); kerr != nil {
			return fmt.Errorf("%w; dropping the source's slot and publication failed: %w (run pgms cleanup)", err, kerr)
		}
		return fmt.Errorf("%w. Nothing was switched: %s is still served by %s. The copy is kept on %s, marked as unfinished and not subscribed, for inspection; the slot and publication are dropped. Running the move again compares the copy with a fresh snapshot and copies again what differs, or starts over for a copy under --keep-copy (pgms cleanup removes the copy)",
			err, m.schema, m.src.Name, m.dst.Name)
	case !m.touched:
		return err
	case errors.Is(err, ErrInterrupted) && !m.opts.KeepOnInterrupt:
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		kept, msg, kerr := m.keepCopy(kctx)
		cancel()
		if kerr != nil {
			return fmt.Errorf("%w; keeping the copy failed: %w (run the same move again, or pgms cleanup, to remove what is left)", err, kerr)
		}
		if kept {
			m.event(PhaseUndo, EventInfo, msg)
			return fmt.Errorf("%w; %s", err, msg)
		}
	}
	switch {
	case errors.Is(err, errStalled) || errors.Is(err, ErrInterrupted) && m.opts.KeepOnInterrupt:
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		kerr := m.strategy.keep(kctx, m)
		cancel()
		if kerr != nil {
			return fmt.Errorf("%w; keeping the copy failed too: %w (run the same move again, or pgms cleanup, to remove what is left)", err, kerr)
		}
		m.event(PhaseUndo, EventInfo, "stopped; the replication objects and the destination's copy are kept: run the same move again to continue")
		return err
	}
	// Undo must finish even though the context that failed may be
	// cancelled; it is bounded instead.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	m.setPhase(uctx, PhaseUndo, "removing the subscription, slot, publication and the destination's copy")
	if uerr := m.undo(uctx); uerr != nil {
		if errors.Is(uerr, state.ErrClaimLost) {
			return fmt.Errorf("%w; undo stopped: %w", err, uerr)
		}
		return fmt.Errorf("%w; undo failed too: %w (run the same move again, or pgms cleanup, to remove what is left)", err, uerr)
	}
	m.event(PhaseUndo, EventInfo, m.verifyUndone(uctx))
	return err
}

func (m *move) drive(ctx context.Context) error {
	if err := m.phase(ctx, PhasePreflight, "checking both nodes"); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	found, err := m.preflight(pctx)
	cancel()
	if err != nil {
		if errors.Is(pctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("preflight got no answer within 2 minutes from %s or %s: %w", m.src.Name, m.dst.Name, err)
		}
		return err
	}
	if err := fault.Point(ctx, "move.preflight.end"); err != nil {
		return err
	}
	switch found.situation {
	case situationDone:
		m.res.AlreadyDone = true
		m.event(PhasePreflight, EventInfo, fmt.Sprintf("%s is already active on %s; nothing to move", m.schema, m.dst.Name))
		if found.hasArtifacts() {
			if err := m.cleanupArtifacts(ctx); err != nil {
				return err
			}
		}
		if found.window {
			m.res.OldSchema = m.schema
			return m.openWindow(ctx)
		}
		return nil
	case situationCommitted:
		m.res.Resumed = true
		m.committed = true
		m.touched = true
		if found.window {
			m.event(PhasePreflight, EventInfo, fmt.Sprintf("the cutover had committed (%s fenced on %s for its rollback window); finishing", m.schema, m.src.Name))
		} else {
			m.event(PhasePreflight, EventInfo, fmt.Sprintf("the cutover had committed (source renamed to %s); finishing", found.oldSchema))
		}
		return m.finish(ctx, cutoverResult{old: found.oldSchema, window: found.window})
	case situationCopying:
		m.res.Resumed = true
		m.touched = true
		m.event(PhasePreflight, EventInfo, "a copy is in progress; continuing it")
		if err := m.resumeSubscription(ctx, found); err != nil {
			return err
		}
	case situationStale, situationFresh:
		m.touched = true
		resume := false
		if found.situation == situationStale {
			if resume, err = m.canContinueCopy(ctx); err != nil {
				return err
			}
		}
		switch {
		case resume:
			if err := m.dropReplication(ctx); err != nil {
				return err
			}
		case found.situation == situationStale || found.hasArtifacts():
			m.event(PhasePreflight, EventInfo, found.leftBehind(m))
			if err := m.undo(ctx); err != nil {
				return err
			}
		}
		if err := m.phase(ctx, PhaseDDL, "copying the schema definition"); err != nil {
			return err
		}
		if !resume {
			if err := m.copyDDL(ctx); err != nil {
				return err
			}
		}
		if err := m.phase(ctx, PhaseReplicate, "setting up replication ("+m.strategy.Name()+" copy)"); err != nil {
			return err
		}
		if err := m.strategy.Start(ctx, m); err != nil {
			return err
		}
	}
	if err := m.phase(ctx, PhaseBackfill, fmt.Sprintf("copying %d tables", len(m.tables))); err != nil {
		return err
	}
	began := time.Now()
	if err := m.strategy.WaitCopied(ctx, m); err != nil {
		return err
	}
	// A resumed copy was mostly made by an earlier run: its time and rate
	// here would be meaningless.
	if found.situation != situationCopying {
		m.res.Backfill = time.Since(began)
	} else {
		m.res.Bytes, m.res.Rows = 0, 0
	}
	m.mu.Lock()
	m.progress.Backfill = m.res.Backfill
	m.mu.Unlock()
	if err := m.phase(ctx, PhaseCatchUp, "waiting for the replication lag to shrink"); err != nil {
		return err
	}
	began = time.Now()
	if err := m.waitLag(ctx); err != nil {
		return err
	}
	m.res.CatchUp = time.Since(began)
	if !m.spec.Activate && !m.spec.KeepInactive {
		return m.finishCopyOnly(ctx)
	}
	if err := m.phase(ctx, PhaseCutover, fmt.Sprintf("switching over (lock timeout %v, pause budget %v)", m.opts.LockTimeout, m.opts.MaxPause)); err != nil {
		return err
	}
	if m.windowing() {
		if err := m.prepareWindow(ctx); err != nil {
			return err
		}
	}
	cr, err := m.cutover(ctx)
	if err != nil {
		return err
	}
	return m.finish(ctx, cr)
}

// phase records the start of a phase: a fault point, the journal, a line.
func (m *move) phase(ctx context.Context, p Phase, msg string) error {
	if err := fault.Point(ctx, "move."+string(p)+".begin"); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w before %s: %w", ErrInterrupted, p, err)
	}
	m.setPhase(ctx, p, msg)
	return nil
}

func (m *move) setPhase(ctx context.Context, p Phase, msg string) {
	m.mu.Lock()
	m.progress.Phase = string(p)
	st := m.progress
	m.mu.Unlock()
	m.record(ctx, st)
	m.event(p, EventPhase, msg)
}

// record writes the step's state to the journal; a journal that cannot be
// written is reported, never a reason to stop a move.
func (m *move) record(ctx context.Context, st state.StepState) {
	// Not cancellable: a cancelled write would close the journal's
	// connection, and with it the run lock, before the outcome is written.
	jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := m.step.Update(jctx, st); err != nil {
		m.event(PhaseDone, EventWarning, "journal: "+pgutil.Describe(err))
	}
}

func (m *move) event(p Phase, kind EventKind, msg string) {
	m.rep.Report(Event{Time: time.Now(), Shard: m.spec.Shard, Schema: m.schema, Phase: p, Kind: kind, Message: msg, LagBytes: -1})
}

// shardSchema returns the schema of the shard: the spec's, or what the
// source's naming function says.
func (m *move) shardSchema(ctx context.Context) (string, error) {
	if m.spec.Schema != "" {
		return m.spec.Schema, nil
	}
	src, err := pgutil.ConnectAs(ctx, m.spec.From.Name, m.spec.From.DSN)
	if err != nil {
		return "", err
	}
	defer src.Close()
	var name string
	err = src.Conn.QueryRow(ctx, "SELECT "+pgutil.Quote(m.lib, "microsharding_schema_name_")+"($1)", m.spec.Shard).Scan(&name)
	if err != nil {
		return "", pgutil.Wrap(err, "node %s: name of shard %d (is the library installed in schema %q? run pgms install)", m.spec.From.Name, m.spec.Shard, m.lib)
	}
	return name, nil
}

// execSimple runs statements as one simple-protocol message and returns
// the rows of every result, text-encoded (nil for NULL).
func execSimple(ctx context.Context, conn *pgx.Conn, sqlText string) ([][][][]byte, error) {
	results, err := conn.PgConn().Exec(ctx, sqlText).ReadAll()
	var rows [][][][]byte
	for _, r := range results {
		if r.Err != nil && err == nil {
			err = r.Err
		}
		rows = append(rows, r.Rows)
	}
	return rows, err
}

// AbortMove removes what an unfinished move of spec's shard left behind:
// the destination's copy (only if it carries the unfinished-copy mark) and
// subscription, the source's slot and publication. The source's schema is
// never touched. A move whose cutover committed cannot be aborted, only
// finished: AbortMove refuses it and Move finishes it.
func AbortMove(ctx context.Context, spec MoveSpec, rep Reporter) error {
	m, err := newMove(spec, rep)
	if err != nil {
		return err
	}
	err = m.begin(ctx, nil)
	if err == nil {
		err = m.abort(ctx)
	}
	m.release(ctx)
	if err != nil {
		return fmt.Errorf("abort the move of shard %d (%s) from %s to %s: %w", spec.Shard, orShard(m.schema, spec.Shard), m.spec.From.Name, m.spec.To.Name, err)
	}
	return nil
}

func (m *move) abort(ctx context.Context) error {
	var srcHas, dstHas bool
	var comment *string
	if err := m.src.Conn.QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL", pgutil.Quote(m.schema)).Scan(&srcHas); err != nil {
		return pgutil.Wrap(err, "node %s", m.src.Name)
	}
	err := m.dst.Conn.QueryRow(ctx, `SELECT true, obj_description(oid, 'pg_namespace') FROM pg_catalog.pg_namespace WHERE nspname = $1`, m.schema).Scan(&dstHas, &comment)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return pgutil.Wrap(err, "node %s", m.dst.Name)
	}
	if !srcHas && dstHas && comment != nil && names.IsCopyMark(*comment) {
		return fmt.Errorf("its cutover committed (%s is renamed on %s): it can only be finished; run the move again", m.schema, m.src.Name)
	}
	if srcHas && dstHas && (comment == nil || !names.IsCopyMark(*comment)) {
		// A copy pg-microsharding left: made pgms's first, so that undo
		// may remove it.
		if _, err := m.adoptReferenceCopy(ctx); err != nil {
			return err
		}
	}
	m.setPhase(ctx, PhaseUndo, "removing what the unfinished move left")
	if err := m.undo(ctx); err != nil {
		return err
	}
	m.event(PhaseUndo, EventInfo, m.verifyUndone(ctx))
	return nil
}
