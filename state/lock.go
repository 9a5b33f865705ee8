package state

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgutil"
)

// lockKey is the session advisory lock that admits one pgms run at a time
// per state node ("pgms_run" in ASCII).
const lockKey int64 = 0x70676d735f72756e

// lockName is the key of the holder row.
const lockName = "run"

// Holder is the run that holds, or held, the run lock.
type Holder struct {
	BackendPID int       `json:"backend_pid"` // the session holding the advisory lock
	Host       string    `json:"host"`
	PID        int       `json:"pid"`
	User       string    `json:"user"`
	Command    string    `json:"command"`
	RunID      int64     `json:"run_id,omitempty"`
	Since      time.Time `json:"since"`
}

func (h Holder) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "pid %d on host %s", h.PID, orUnknown(h.Host))
	if h.User != "" {
		fmt.Fprintf(&b, ", user %s", h.User)
	}
	fmt.Fprintf(&b, ", since %s", h.Since.UTC().Format("2006-01-02 15:04:05 UTC"))
	if h.Command != "" {
		fmt.Fprintf(&b, ", running `%s`", h.Command)
	}
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// LockHeldError says another run holds the lock.
type LockHeldError struct {
	Node   string
	Holder *Holder // nil when the holder wrote no row
	PID    int     // backend pid of the holding session
}

func (e *LockHeldError) Error() string {
	who := fmt.Sprintf("a session (backend pid %d) without a holder row", e.PID)
	if e.Holder != nil {
		who = e.Holder.String()
	}
	return fmt.Sprintf("another pgms run holds the lock on state node %s: %s; wait for it to finish (--lock-timeout=10m waits for it), or, only if that process is gone, run `pgms force-unlock`", e.Node, who)
}

// ErrLockHeld matches a *LockHeldError with errors.Is.
var ErrLockHeld = errors.New("another pgms run holds the lock")

// Is makes errors.Is(err, ErrLockHeld) true.
func (e *LockHeldError) Is(target error) bool { return target == ErrLockHeld }

// LockStatus is what the state node says about the run lock.
type LockStatus struct {
	// Held: a live session holds the advisory lock.
	Held bool `json:"held"`
	// HolderPID is the backend pid of that session.
	HolderPID int `json:"holder_backend_pid,omitempty"`
	// Holder is the holder row, if any. When the lock is not held a row is
	// stale: its process died without releasing it.
	Holder *Holder `json:"holder,omitempty"`
	// Steps are the steps the holder's run is running, from the journal.
	Steps []StepRow `json:"steps,omitempty"`
}

// Stale reports a holder row left by a run whose session is gone.
func (s LockStatus) Stale() bool { return !s.Held && s.Holder != nil }

// RunLock is the run lock held by this process: a session advisory lock on
// a connection of its own to the state node, used for nothing else, so
// that no journal write, timeout or cancelled query can end it by
// accident. A monitor checks the session every LockCheckInterval; when the
// session is gone the lock is gone too (the server released it), and Lost
// tells the run, which must stop at its next safe point.
type RunLock struct {
	node   string
	schema string
	inv    Invocation

	mu       sync.Mutex // guards conn between the monitor and the rest
	conn     *pgx.Conn
	recorded bool // the holder row is written

	lost     chan struct{}
	lostErr  error
	lostOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// LockCheckInterval is how often a held run lock checks its session.
const LockCheckInterval = time.Second

// LockOptions tune AcquireRunLock.
type LockOptions struct {
	// Wait is how long to wait for a lock another run holds, polling with
	// jittered backoff; 0 fails at once naming the holder.
	Wait time.Duration
	// OnWait is called once when the lock is held by another run and
	// Wait allows waiting.
	OnWait func(LockStatus)
}

// Takeover describes the holder row a run replaced: its run's session had
// ended, so the lock was free.
type Takeover struct {
	Holder Holder
	// Alive: the holder's process still runs on this host (it lost its
	// session, not its life). Only known for holders on this host.
	Alive bool
	// SameHost: the holder ran on this host, so Alive is known.
	SameHost bool
}

// String says what is known of the previous holder, and no more.
func (t Takeover) String() string {
	switch {
	case t.SameHost && t.Alive:
		return fmt.Sprintf("its holder's session ended, but that process still runs on this host (%s); it stops at its next safe point", t.Holder)
	case t.SameHost:
		return fmt.Sprintf("its holder's session ended and that process is gone (%s)", t.Holder)
	}
	return fmt.Sprintf("its holder's session ended (%s); whether that process still runs cannot be seen from here: if it does, it stops at its next safe point, and shard claims keep the two runs off each other's shards", t.Holder)
}

// ErrHolderAlive says the lock is free only because its holder lost its
// session, while the holder's process still runs on this host: taking the
// lock now would let two runs overlap until that process notices.
var ErrHolderAlive = errors.New("the previous holder of the run lock is still running")

// AcquireRunLock connects to the state node and takes the run lock. A lock
// held by a live session fails at once with *LockHeldError, or after
// opts.Wait. A stale holder row (its session ended) is replaced and its
// runs marked abandoned; the Takeover says what is known about that run. A
// stale holder whose process still runs on this host is not taken over:
// the error is ErrHolderAlive (waiting with opts.Wait covers it).
func AcquireRunLock(ctx context.Context, connString, librarySchema string, inv Invocation, opts LockOptions) (*RunLock, *Takeover, error) {
	n, err := pgutil.Connect(ctx, connString)
	if err != nil {
		return nil, nil, err
	}
	l := &RunLock{node: n.Name, schema: librarySchema, inv: inv, conn: n.Conn,
		lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	deadline := time.Now().Add(opts.Wait)
	waited := false
	for attempt := 1; ; attempt++ {
		takeover, err := l.try(ctx)
		if err == nil {
			go l.monitor()
			return l, takeover, nil
		}
		var held *LockHeldError
		if !errors.As(err, &held) && !errors.Is(err, ErrHolderAlive) || time.Now().After(deadline) {
			n.Close()
			if waited && errors.As(err, &held) {
				err = fmt.Errorf("waited %s for the run lock: %w", opts.Wait, err)
			}
			return nil, nil, err
		}
		if !waited && opts.OnWait != nil {
			st, _ := readLock(ctx, l.conn, l.schema)
			opts.OnWait(st)
		}
		waited = true
		d := 100 * time.Millisecond << min(attempt-1, 4)
		d = time.Duration(float64(d) * (0.5 + rand.Float64()))
		if left := time.Until(deadline); d > left {
			d = max(left, time.Millisecond)
		}
		select {
		case <-ctx.Done():
			n.Close()
			return nil, nil, ctx.Err()
		case <-time.After(d):
		}
	}
}

// try takes the lock without waiting.
func (l *RunLock) try(ctx context.Context) (*Takeover, error) {
	var got bool
	if err := l.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&got); err != nil {
		return nil, pgutil.Wrap(err, "state node %s: take the run lock", l.node)
	}
	if !got {
		st, err := readLock(ctx, l.conn, l.schema)
		if err != nil {
			return nil, err
		}
		return nil, &LockHeldError{Node: l.node, Holder: st.Holder, PID: st.HolderPID}
	}
	prev, err := readHolder(ctx, l.conn, l.schema)
	if err != nil {
		l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey) //nolint:errcheck // released with the session otherwise
		return nil, err
	}
	var takeover *Takeover
	if prev != nil {
		takeover = describeTakeover(*prev)
		if takeover.SameHost && takeover.Alive {
			l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey) //nolint:errcheck // released with the session otherwise
			return nil, fmt.Errorf("%w: state node %s: the run lock is free because the session of its holder ended, but that process still runs on this host (%s); it stops at its next safe point. Run again when it has exited, or wait for it with --lock-timeout",
				ErrHolderAlive, l.node, prev)
		}
	}
	var library bool
	if err := l.conn.QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL", pgutil.Quote(l.schema)).Scan(&library); err != nil {
		return nil, pgutil.Wrap(err, "state node %s: look for schema %s", l.node, l.schema)
	}
	if !library {
		// A fresh state node: the lock holds without its row until Record,
		// once the library is installed.
		return takeover, nil
	}
	return takeover, l.record(ctx)
}

// Record writes the holder row (creating the journal tables when they are
// missing), once the library exists on the state node; it may run more
// than once. AcquireRunLock records at once when it can.
func (l *RunLock) Record(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.record(ctx)
}

func (l *RunLock) record(ctx context.Context) error {
	if l.recorded {
		return nil
	}
	if err := ensureJournalTables(ctx, l.conn, l.node, l.schema); err != nil {
		return err
	}
	_, err := l.conn.Exec(ctx, "INSERT INTO "+pgutil.Quote(l.schema, "pgms_lock")+` (name, backend_pid, host, pid, os_user, command, run_id, started_at)
		VALUES ($1, pg_backend_pid(), $2, $3, $4, $5, NULL, now())
		ON CONFLICT (name) DO UPDATE SET backend_pid = excluded.backend_pid, host = excluded.host, pid = excluded.pid,
		  os_user = excluded.os_user, command = excluded.command, run_id = excluded.run_id, started_at = excluded.started_at`,
		lockName, l.inv.Host, l.inv.PID, l.inv.User, commandLine(l.inv))
	if err != nil {
		return pgutil.Wrap(err, "state node %s: record lock holder", l.node)
	}
	// We hold the lock, so whatever still says "running" belongs to a run
	// that lost its lock: it may not record anything more.
	if _, err := l.conn.Exec(ctx, "UPDATE "+pgutil.Quote(l.schema, "pgms_runs")+` SET outcome = 'abandoned', finished_at = COALESCE(finished_at, now()),
		  error = COALESCE(error, 'its run lock ended before the run recorded an outcome')
		WHERE outcome = 'running'`); err != nil {
		return pgutil.Wrap(err, "state node %s: close abandoned runs", l.node)
	}
	if _, err := l.conn.Exec(ctx, "UPDATE "+pgutil.Quote(l.schema, "pgms_steps")+` SET outcome = 'abandoned', finished_at = COALESCE(finished_at, now()) WHERE outcome = 'running'`); err != nil {
		return pgutil.Wrap(err, "state node %s: close abandoned steps", l.node)
	}
	l.recorded = true
	return nil
}

// describeTakeover says what can be known about a holder whose session
// ended: on this host, whether its process still runs.
func describeTakeover(h Holder) *Takeover {
	t := &Takeover{Holder: h}
	host, _ := os.Hostname()
	if h.Host == "" || h.Host != host || h.PID <= 0 {
		return t
	}
	t.SameHost = true
	t.Alive = h.PID != os.Getpid() && processRuns(h.PID)
	return t
}

// processRuns reports whether a process with that pid runs on this host
// and looks like pgms (a reused pid of another program does not count).
func processRuns(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return true // alive, and nothing says it is not pgms
	}
	return strings.Contains(string(cmdline), "pgms")
}

// Node is the printable name of the state node.
func (l *RunLock) Node() string { return l.node }

// Lost is closed when the lock's session is found gone; Err then says why.
func (l *RunLock) Lost() <-chan struct{} { return l.lost }

// Err is why the lock was lost, nil while it holds.
func (l *RunLock) Err() error {
	select {
	case <-l.lost:
		return l.lostErr
	default:
		return nil
	}
}

// ErrLockLost says the run lost its run lock: another run may now plan and
// change the cluster, so this one must stop at its next safe point.
var ErrLockLost = errors.New("lost the run lock")

func (l *RunLock) markLost(cause error) {
	l.lostOnce.Do(func() {
		l.lostErr = fmt.Errorf("%w on state node %s (%s); stopping at the next safe point", ErrLockLost, l.node, pgutil.Describe(cause))
		close(l.lost)
	})
}

// monitor pings the lock's session; a session that does not answer within
// a few seconds counts as lost: it may still hold the lock on the server,
// but this run can no longer prove it does.
func (l *RunLock) monitor() {
	defer close(l.done)
	tick := time.NewTicker(LockCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		l.mu.Lock()
		ctx, cancel := context.WithTimeout(context.Background(), 3*LockCheckInterval)
		err := l.conn.Ping(ctx)
		cancel()
		if err != nil {
			l.conn.Close(context.Background())
		}
		l.mu.Unlock()
		if err != nil {
			l.markLost(err)
			return
		}
	}
}

// SetRun records the run id in the holder row, so that others can read
// what the holder is doing.
func (l *RunLock) SetRun(ctx context.Context, run int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn.IsClosed() || !l.recorded {
		return
	}
	l.conn.Exec(ctx, "UPDATE "+pgutil.Quote(l.schema, "pgms_lock")+" SET run_id = $1 WHERE name = $2 AND backend_pid = pg_backend_pid()", run, lockName) //nolint:errcheck // informational
}

func commandLine(inv Invocation) string {
	if inv.Args == "" {
		return inv.Command
	}
	return inv.Command + " " + inv.Args
}

// Release removes the holder row and releases the lock; it may run more
// than once.
func (l *RunLock) Release(ctx context.Context) error {
	if l == nil {
		return nil
	}
	select {
	case <-l.stop:
		return nil
	default:
	}
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn.IsClosed() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var err error
	if l.recorded {
		_, err = l.conn.Exec(ctx, "DELETE FROM "+pgutil.Quote(l.schema, "pgms_lock")+" WHERE name = $1 AND backend_pid = pg_backend_pid()", lockName)
	}
	if _, uerr := l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey); err == nil {
		err = uerr
	}
	l.conn.Close(ctx)
	return pgutil.Wrap(err, "state node %s: release the run lock", l.node)
}

// BackendPID is the server process holding the lock (for tests).
func (l *RunLock) BackendPID() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn.PgConn().PID()
}

// ReadLock reports the run lock on the state node q is connected to.
func ReadLock(ctx context.Context, q Querier, librarySchema string) (LockStatus, error) {
	return readLock(ctx, q, librarySchema)
}

func readLock(ctx context.Context, q Querier, schema string) (LockStatus, error) {
	var st LockStatus
	var pid *int
	err := q.QueryRow(ctx, `SELECT pid FROM pg_catalog.pg_locks
		WHERE locktype = 'advisory' AND granted
		  AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
		  AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1
		LIMIT 1`, lockKey).Scan(&pid)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return st, pgutil.Wrap(err, "read the run lock")
	}
	if pid != nil {
		st.Held, st.HolderPID = true, *pid
	}
	if st.Holder, err = readHolder(ctx, q, schema); err != nil || !st.Held || st.Holder == nil || st.Holder.RunID == 0 {
		return st, err
	}
	runs, err := ReadRuns(ctx, q, schema, 20)
	if err != nil {
		return st, err
	}
	for _, r := range runs {
		if r.ID != st.Holder.RunID {
			continue
		}
		for _, s := range r.Steps {
			if s.Outcome == OutcomeRunning {
				st.Steps = append(st.Steps, s)
			}
		}
	}
	return st, nil
}

func readHolder(ctx context.Context, q Querier, schema string) (*Holder, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgutil.Quote(schema, "pgms_lock")).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return nil, nil
	}
	var h Holder
	var run *int64
	err := q.QueryRow(ctx, "SELECT backend_pid, host, pid, os_user, command, run_id, started_at FROM "+pgutil.Quote(schema, "pgms_lock")+" WHERE name = $1", lockName).
		Scan(&h.BackendPID, &h.Host, &h.PID, &h.User, &h.Command, &run, &h.Since)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, pgutil.Wrap(err, "read the lock holder")
	}
	if run != nil {
		h.RunID = *run
	}
	return &h, nil
}

// ForceUnlockResult says what ForceUnlock did.
type ForceUnlockResult struct {
	Before     LockStatus
	Cleared    bool // a holder row was removed
	Terminated int  // backend pid ended, 0 if none
}

// ErrLockLive is returned by ForceUnlock when a live session holds the lock
// and terminating it was not asked for.
var ErrLockLive = errors.New("the run lock is held by a live session")

// ForceUnlock clears the run lock of a run that cannot release it. A stale
// holder row is removed. A lock held by a live session is left alone unless
// terminate is set, in which case that session is ended first (its run then
// stops where it is, like a crash: re-running it continues the work).
func ForceUnlock(ctx context.Context, conn *pgx.Conn, librarySchema string, terminate bool) (ForceUnlockResult, error) {
	var res ForceUnlockResult
	st, err := readLock(ctx, conn, librarySchema)
	if err != nil {
		return res, err
	}
	res.Before = st
	if st.Held {
		if !terminate {
			who := fmt.Sprintf("backend pid %d", st.HolderPID)
			if st.Holder != nil {
				who = st.Holder.String() + fmt.Sprintf(" (backend pid %d)", st.HolderPID)
			}
			return res, fmt.Errorf("%w: %s; it is not stale. Pass --terminate to end that session", ErrLockLive, who)
		}
		if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1)", st.HolderPID); err != nil {
			return res, pgutil.Wrap(err, "terminate backend %d", st.HolderPID)
		}
		res.Terminated = st.HolderPID
		deadline := time.Now().Add(10 * time.Second)
		for {
			now, err := readLock(ctx, conn, librarySchema)
			if err != nil {
				return res, err
			}
			if !now.Held {
				break
			}
			if time.Now().After(deadline) {
				return res, fmt.Errorf("backend %d still holds the run lock 10s after being terminated", st.HolderPID)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if st.Holder != nil {
		// Only the row seen above: a run that took the lock meanwhile wrote
		// its own row with its own backend pid.
		tag, err := conn.Exec(ctx, "DELETE FROM "+pgutil.Quote(librarySchema, "pgms_lock")+" WHERE name = $1 AND backend_pid = $2",
			lockName, st.Holder.BackendPID)
		if err != nil {
			return res, pgutil.Wrap(err, "remove the lock holder row")
		}
		res.Cleared = tag.RowsAffected() > 0
	}
	return res, nil
}
