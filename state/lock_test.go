package state

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/sql"
)

func stateNode(t *testing.T) (pgtest.DB, *pgx.Conn) {
	t.Helper()
	db := pgtest.Database(t)
	conn := pgtest.Connect(t, db.DSN)
	if _, err := sql.Install(context.Background(), conn, sql.Options{}); err != nil {
		t.Fatal(err)
	}
	return db, conn
}

func openJournal(t *testing.T, dsn string) *Journal {
	t.Helper()
	j, err := OpenJournal(context.Background(), dsn, sql.DefaultSchema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close(context.Background()) })
	return j
}

func acquire(t *testing.T, dsn string, inv Invocation, opts LockOptions) (*RunLock, *Takeover) {
	t.Helper()
	l, tk, err := AcquireRunLock(context.Background(), dsn, sql.DefaultSchema, inv, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Release(context.Background()) })
	return l, tk
}

// waitFree waits until no session holds the run lock: a backend whose
// connection was closed or terminated exits asynchronously.
func waitFree(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ReadLock(context.Background(), conn, sql.DefaultSchema)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Held {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the run lock is still held: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLockSecondRunFailsAtOnce(t *testing.T) {
	db, conn := stateNode(t)
	ctx := context.Background()
	inv := Invocation{Command: "move", Args: "--shard 3", Host: "host-a", PID: 1234, User: "alice"}
	first, _ := acquire(t, db.DSN, inv, LockOptions{})
	began := time.Now()
	_, _, err := AcquireRunLock(ctx, db.DSN, sql.DefaultSchema, Invocation{Command: "move", Host: "host-b", PID: 99}, LockOptions{})
	if took := time.Since(began); took > time.Second {
		t.Errorf("second lock took %v", took)
	}
	var held *LockHeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLockHeld) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"pid 1234 on host host-a", "user alice", "running `move --shard 3`", "--lock-timeout", "since "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	st, err := ReadLock(ctx, conn, sql.DefaultSchema)
	if err != nil || !st.Held || st.Stale() || st.Holder == nil || st.Holder.PID != 1234 {
		t.Fatalf("ReadLock: %+v, %v", st, err)
	}
	// force-unlock refuses a live holder without --terminate.
	if _, err := ForceUnlock(ctx, conn, sql.DefaultSchema, false); !errors.Is(err, ErrLockLive) {
		t.Fatalf("ForceUnlock of a live lock: %v", err)
	}
	if err := first.Release(ctx); err != nil {
		t.Fatal(err)
	}
	acquire(t, db.DSN, Invocation{Command: "move", Host: "host-b", PID: 99}, LockOptions{})
}

// TestLockWaits: with a wait, a second run gets the lock once the first
// releases it, and is told it waits.
func TestLockWaits(t *testing.T) {
	db, _ := stateNode(t)
	first, _ := acquire(t, db.DSN, Invocation{Command: "apply", Host: "h", PID: 1}, LockOptions{})
	go func() {
		time.Sleep(400 * time.Millisecond)
		first.Release(context.Background())
	}()
	waited := 0
	began := time.Now()
	acquire(t, db.DSN, Invocation{Command: "apply", Host: "h", PID: 2}, LockOptions{Wait: 10 * time.Second, OnWait: func(LockStatus) { waited++ }})
	if took := time.Since(began); took < 300*time.Millisecond || took > 5*time.Second || waited != 1 {
		t.Errorf("took %v, told %d times", took, waited)
	}
	// A wait that runs out names the holder and the wait.
	_, _, err := AcquireRunLock(context.Background(), db.DSN, sql.DefaultSchema, Invocation{Command: "apply", PID: 3}, LockOptions{Wait: 300 * time.Millisecond})
	if !errors.Is(err, ErrLockHeld) || !strings.Contains(err.Error(), "waited 300ms") {
		t.Errorf("got %v", err)
	}
}

// TestLockStaleHolder: a run whose session ended leaves its row; the next
// run takes over, says only what it knows of that run, and marks its runs
// abandoned. A holder whose process still runs on this host is not taken
// over.
func TestLockStaleHolder(t *testing.T) {
	db, conn := stateNode(t)
	ctx := context.Background()
	j := openJournal(t, db.DSN)
	if _, err := j.BeginRun(ctx, Invocation{Command: "move"}); err != nil {
		t.Fatal(err)
	}
	dead, _, err := AcquireRunLock(ctx, db.DSN, sql.DefaultSchema, Invocation{Command: "move", Args: "--shard 1", Host: "gone", PID: 777}, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dead.conn.Close(ctx) // like a crash: no Release
	waitFree(t, conn)
	st, err := ReadLock(ctx, conn, sql.DefaultSchema)
	if err != nil || !st.Stale() || st.Holder.PID != 777 {
		t.Fatalf("stale holder not detected: %+v, %v", st, err)
	}
	l, tk := acquire(t, db.DSN, Invocation{Command: "move", Host: "here", PID: 1}, LockOptions{})
	if tk == nil || tk.Holder.PID != 777 || tk.SameHost || !strings.Contains(tk.String(), "cannot be seen from here") {
		t.Errorf("takeover %+v: %s", tk, tk)
	}
	runs, err := ReadRuns(ctx, conn, sql.DefaultSchema, 10)
	if err != nil || len(runs) != 1 || runs[0].Outcome != OutcomeAbandoned {
		t.Errorf("runs %+v, %v", runs, err)
	}
	l.Release(ctx)

	// The same on this host, with the holder's process alive: refused.
	host, _ := os.Hostname()
	fake := filepath.Join(t.TempDir(), "pgms-fake")
	if err := os.Symlink("/bin/sleep", fake); err != nil {
		t.Fatal(err)
	}
	proc := exec.Command(fake, "30")
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	defer proc.Process.Kill()
	alive, _, err := AcquireRunLock(ctx, db.DSN, sql.DefaultSchema, Invocation{Command: "apply", Host: host, PID: proc.Process.Pid}, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	alive.conn.Close(ctx)
	waitFree(t, conn)
	_, _, err = AcquireRunLock(ctx, db.DSN, sql.DefaultSchema, Invocation{Command: "apply", Host: host, PID: 2}, LockOptions{})
	if !errors.Is(err, ErrHolderAlive) || !strings.Contains(err.Error(), "still runs on this host") {
		t.Fatalf("got %v", err)
	}
	proc.Process.Kill()
	proc.Wait()
	_, tk = acquire(t, db.DSN, Invocation{Command: "apply", Host: host, PID: 2}, LockOptions{})
	if tk == nil || !tk.SameHost || tk.Alive || !strings.Contains(tk.String(), "that process is gone") {
		t.Errorf("takeover %+v: %s", tk, tk)
	}
}

// TestLockLost: a run whose lock session is ended learns it within a few
// seconds; journal writes go on on their own connection, and a journal
// connection that is lost never ends the lock.
func TestLockLost(t *testing.T) {
	db, conn := stateNode(t)
	ctx := context.Background()
	l, _ := acquire(t, db.DSN, Invocation{Command: "apply", Host: "h", PID: 1}, LockOptions{})
	j := openJournal(t, db.DSN)
	if _, err := j.BeginRun(ctx, Invocation{Command: "apply"}); err != nil {
		t.Fatal(err)
	}
	// The journal's session ends: the next write reconnects, the lock
	// holds.
	pgtest.Exec(t, conn, "SELECT pg_terminate_backend($1)", j.conn.PgConn().PID())
	time.Sleep(100 * time.Millisecond)
	if err := j.EndRun(ctx, OutcomeSucceeded, nil); err != nil {
		t.Fatalf("journal write after its session ended: %v", err)
	}
	select {
	case <-l.Lost():
		t.Fatalf("lock lost with the journal's session: %v", l.Err())
	case <-time.After(2 * LockCheckInterval):
	}
	// The lock's own session ends: the run is told.
	pgtest.Exec(t, conn, "SELECT pg_terminate_backend($1)", l.BackendPID())
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("a lost lock went unnoticed")
	}
	if !errors.Is(l.Err(), ErrLockLost) || !strings.Contains(l.Err().Error(), "next safe point") {
		t.Errorf("Err: %v", l.Err())
	}
}

func TestForceUnlock(t *testing.T) {
	db, conn := stateNode(t)
	ctx := context.Background()
	// A stale row is cleared without terminating anything.
	dead, _, err := AcquireRunLock(ctx, db.DSN, sql.DefaultSchema, Invocation{Command: "move", PID: 778}, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dead.conn.Close(ctx)
	waitFree(t, conn)
	res, err := ForceUnlock(ctx, conn, sql.DefaultSchema, false)
	if err != nil || !res.Cleared || res.Terminated != 0 {
		t.Fatalf("ForceUnlock: %+v, %v", res, err)
	}
	if st, _ := ReadLock(ctx, conn, sql.DefaultSchema); st.Holder != nil || st.Held {
		t.Errorf("after force-unlock: %+v", st)
	}
	// A live one only with terminate.
	acquire(t, db.DSN, Invocation{Command: "apply", PID: 5}, LockOptions{})
	res, err = ForceUnlock(ctx, conn, sql.DefaultSchema, true)
	if err != nil || res.Terminated == 0 || !res.Cleared {
		t.Fatalf("ForceUnlock --terminate: %+v, %v", res, err)
	}
	acquire(t, db.DSN, Invocation{Command: "apply"}, LockOptions{})
}

func TestJournalRecordsSteps(t *testing.T) {
	db, conn := stateNode(t)
	ctx := context.Background()
	j := openJournal(t, db.DSN)
	if _, err := j.BeginRun(ctx, ThisProcess("move", "--from postgres://u:secret@h/db --shard 2")); err != nil {
		t.Fatal(err)
	}
	step, err := j.BeginStep(ctx, StepStart{Kind: "move", Shard: 2, Schema: "sh0002", Source: "a", Destination: "b", Strategy: "native"})
	if err != nil {
		t.Fatal(err)
	}
	lag := int64(4096)
	st := StepState{Phase: "backfill", Bytes: 100, TotalBytes: 200, Rows: 7, LagBytes: &lag,
		Tables: []TableProgress{{Name: "t", State: "copying", Bytes: 100, Rows: 7, TotalBytes: 200}}}
	if err := step.Update(ctx, st); err != nil {
		t.Fatal(err)
	}
	st.Phase, st.Pause, st.Core, st.Retries = "done", 3*time.Millisecond, time.Millisecond, 2
	if err := step.End(ctx, st, OutcomeSucceeded, nil); err != nil {
		t.Fatal(err)
	}
	if err := j.EndRun(ctx, OutcomeSucceeded, nil); err != nil {
		t.Fatal(err)
	}
	runs, err := ReadRuns(ctx, conn, sql.DefaultSchema, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || len(runs[0].Steps) != 1 {
		t.Fatalf("runs %+v", runs)
	}
	r, s := runs[0], runs[0].Steps[0]
	if strings.Contains(r.Args, "secret") {
		t.Errorf("password stored: %q", r.Args)
	}
	if r.Outcome != OutcomeSucceeded || r.Finished == nil {
		t.Errorf("run %+v", r)
	}
	if s.Phase != "done" || s.Outcome != OutcomeSucceeded || s.Retries != 2 || s.PauseMS == nil || *s.PauseMS != 3 ||
		len(s.Tables) != 1 || s.Tables[0].Rows != 7 || s.LagBytes == nil || *s.LagBytes != 4096 {
		t.Errorf("step %+v", s)
	}
}
