package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	return fmt.Sprintf("another pgms run holds the lock on state node %s: %s; wait for it to finish, or, only if that process is gone, run `pgms force-unlock`", e.Node, who)
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
}

// Stale reports a holder row left by a run whose session is gone.
func (s LockStatus) Stale() bool { return !s.Held && s.Holder != nil }

// Lock takes the run lock without waiting: a second run fails at once with
// a *LockHeldError naming the holder. A stale holder row is replaced and
// runs it left "running" are marked abandoned.
//
// The lock is a session advisory lock on the journal's own connection, so it
// is released when the run ends, however it ends (even by SIGKILL: the
// server sees the connection close).
func (j *Journal) Lock(ctx context.Context, inv Invocation) (stale *Holder, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.locked {
		return nil, nil
	}
	var got bool
	if err := j.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey).Scan(&got); err != nil {
		return nil, pgutil.Wrap(err, "state node %s: take the run lock", j.node)
	}
	if !got {
		st, err := readLock(ctx, j.conn, j.schema)
		if err != nil {
			return nil, err
		}
		return nil, &LockHeldError{Node: j.node, Holder: st.Holder, PID: st.HolderPID}
	}
	j.locked = true
	prev, err := readHolder(ctx, j.conn, j.schema)
	if err != nil {
		return nil, err
	}
	_, err = j.conn.Exec(ctx, "INSERT INTO "+j.table("pgms_lock")+` (name, backend_pid, host, pid, os_user, command, run_id, started_at)
		VALUES ($1, pg_backend_pid(), $2, $3, $4, $5, NULLIF($6, 0), now())
		ON CONFLICT (name) DO UPDATE SET backend_pid = excluded.backend_pid, host = excluded.host, pid = excluded.pid,
		  os_user = excluded.os_user, command = excluded.command, run_id = excluded.run_id, started_at = excluded.started_at`,
		lockName, inv.Host, inv.PID, inv.User, commandLine(inv), j.run)
	if err != nil {
		return nil, pgutil.Wrap(err, "state node %s: record lock holder", j.node)
	}
	// We hold the lock, so whatever still says "running" belongs to a
	// process that died.
	if _, err := j.conn.Exec(ctx, "UPDATE "+j.table("pgms_runs")+` SET outcome = 'abandoned', error = COALESCE(error, 'the process ended without recording an outcome')
		WHERE outcome = 'running'`); err != nil {
		return nil, pgutil.Wrap(err, "state node %s: close abandoned runs", j.node)
	}
	if _, err := j.conn.Exec(ctx, "UPDATE "+j.table("pgms_steps")+` SET outcome = 'abandoned' WHERE outcome = 'running'`); err != nil {
		return nil, pgutil.Wrap(err, "state node %s: close abandoned steps", j.node)
	}
	return prev, nil
}

func commandLine(inv Invocation) string {
	if inv.Args == "" {
		return inv.Command
	}
	return inv.Command + " " + inv.Args
}

// Unlock removes the holder row and releases the lock.
func (j *Journal) Unlock(ctx context.Context) error {
	if j == nil {
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.locked {
		return nil
	}
	j.locked = false
	_, err := j.conn.Exec(ctx, "DELETE FROM "+j.table("pgms_lock")+" WHERE name = $1 AND backend_pid = pg_backend_pid()", lockName)
	if _, uerr := j.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockKey); err == nil {
		err = uerr
	}
	return pgutil.Wrap(err, "state node %s: release the run lock", j.node)
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
	st.Holder, err = readHolder(ctx, q, schema)
	return st, err
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
