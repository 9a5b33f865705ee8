package state

import (
	"context"
	"errors"
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

func TestLockSecondRunFailsAtOnce(t *testing.T) {
	db, conn := stateNode(t)
	ctx := context.Background()
	first := openJournal(t, db.DSN)
	inv := Invocation{Command: "move", Args: "--shard 3", Host: "host-a", PID: 1234, User: "alice"}
	if _, err := first.Lock(ctx, inv); err != nil {
		t.Fatal(err)
	}
	second := openJournal(t, db.DSN)
	began := time.Now()
	_, err := second.Lock(ctx, Invocation{Command: "move", Host: "host-b", PID: 99})
	if took := time.Since(began); took > time.Second {
		t.Errorf("second Lock took %v", took)
	}
	var held *LockHeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrLockHeld) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"pid 1234 on host host-a", "user alice", "running `move --shard 3`", "pgms force-unlock", "since "} {
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
	if err := first.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := second.Lock(ctx, Invocation{Command: "move", Host: "host-b", PID: 99}); err != nil {
		t.Fatalf("lock after release: %v", err)
	}
}

// waitLockReleased waits for the run lock to be free: the server ends a
// closed session's backend, and so releases its advisory lock, a moment
// after the connection closes.
func waitLockReleased(t *testing.T, conn *pgx.Conn) LockStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ReadLock(context.Background(), conn, sql.DefaultSchema)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Held || time.Now().After(deadline) {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLockStaleHolder(t *testing.T) {
	db, conn := stateNode(t)
	ctx := context.Background()
	// A run that dies without releasing: its session ends, its row stays.
	dead, err := OpenJournal(ctx, db.DSN, sql.DefaultSchema)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dead.BeginRun(ctx, Invocation{Command: "move"}); err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Lock(ctx, Invocation{Command: "move", Args: "--shard 1", Host: "gone", PID: 777}); err != nil {
		t.Fatal(err)
	}
	dead.conn.Close(ctx) // like a crash: no Unlock

	st := waitLockReleased(t, conn)
	if !st.Stale() || st.Holder.PID != 777 {
		t.Fatalf("stale holder not detected: %+v", st)
	}
	// The next run takes over, reports the stale holder and closes the
	// abandoned run.
	j := openJournal(t, db.DSN)
	prev, err := j.Lock(ctx, Invocation{Command: "move", Host: "here", PID: 1})
	if err != nil {
		t.Fatal(err)
	}
	if prev == nil || prev.PID != 777 {
		t.Errorf("previous holder %+v", prev)
	}
	runs, err := ReadRuns(ctx, conn, sql.DefaultSchema, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Outcome != OutcomeAbandoned {
		t.Errorf("runs %+v", runs)
	}
	j.Unlock(ctx)

	// force-unlock clears a stale row without terminating anything.
	dead2, _ := OpenJournal(ctx, db.DSN, sql.DefaultSchema)
	dead2.Lock(ctx, Invocation{Command: "move", PID: 778})
	dead2.conn.Close(ctx)
	waitLockReleased(t, conn)
	res, err := ForceUnlock(ctx, conn, sql.DefaultSchema, false)
	if err != nil || !res.Cleared || res.Terminated != 0 {
		t.Fatalf("ForceUnlock: %+v, %v", res, err)
	}
	if st, _ := ReadLock(ctx, conn, sql.DefaultSchema); st.Holder != nil || st.Held {
		t.Errorf("after force-unlock: %+v", st)
	}
}

func TestForceUnlockTerminates(t *testing.T) {
	db, conn := stateNode(t)
	ctx := context.Background()
	live := openJournal(t, db.DSN)
	if _, err := live.Lock(ctx, Invocation{Command: "apply", PID: 5}); err != nil {
		t.Fatal(err)
	}
	res, err := ForceUnlock(ctx, conn, sql.DefaultSchema, true)
	if err != nil || res.Terminated == 0 || !res.Cleared {
		t.Fatalf("ForceUnlock --terminate: %+v, %v", res, err)
	}
	other := openJournal(t, db.DSN)
	if _, err := other.Lock(ctx, Invocation{Command: "apply"}); err != nil {
		t.Fatalf("lock after terminate: %v", err)
	}
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
