package runner

import (
	"context"
	"errors"
	"time"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/state"
)

// MoveRequest is what Move needs.
type MoveRequest struct {
	Spec executor.MoveSpec
	// StateDSN is the node that keeps the journal and the run lock.
	StateDSN string
	// LockTimeout is how long to wait for a run lock another run holds;
	// 0 fails at once naming the holder. OnLockWait is told when waiting
	// starts, OnTakeover when a stale holder was replaced.
	LockTimeout time.Duration
	OnLockWait  func(state.LockStatus)
	OnTakeover  func(state.Takeover)
	// Reporter receives the move's progress.
	Reporter executor.Reporter
	// OnJournalError is told when the end of the run cannot be recorded.
	OnJournalError func(error)
}

// Move moves one shard as its own run: it takes the run lock on the state
// node, records the run in the journal there, and moves (executor.Move),
// as Apply does for a plan. Spec.Who describes the run. A move stopped by
// the loss of its lock fails with an error that wraps state.ErrLockLost
// and executor.ErrInterrupted.
func Move(ctx context.Context, req MoveRequest) (executor.MoveResult, error) {
	var res executor.MoveResult
	err := asRun(ctx, req, func(ctx context.Context, journal *state.Journal) error {
		var err error
		res, err = executor.Move(ctx, req.Spec, journal, req.Reporter)
		return err
	})
	return res, err
}

// asRun runs do as a run of its own: under the run lock of the state
// node, recorded in its journal.
func asRun(ctx context.Context, req MoveRequest, do func(context.Context, *state.Journal) error) error {
	spec := req.Spec
	lock, takeover, err := state.AcquireRunLock(ctx, req.StateDSN, spec.LibrarySchema, spec.Who,
		state.LockOptions{Wait: req.LockTimeout, OnWait: req.OnLockWait})
	if err != nil {
		return err
	}
	defer lock.Release(context.WithoutCancel(ctx)) //nolint:errcheck // the session end releases it anyway
	if takeover != nil && req.OnTakeover != nil {
		req.OnTakeover(*takeover)
	}
	ctx, cancel := watchLock(ctx, lock)
	defer cancel(nil)
	journal, err := state.OpenJournal(ctx, req.StateDSN, spec.LibrarySchema)
	if err != nil {
		return err
	}
	defer journal.Close(context.WithoutCancel(ctx))
	runID, err := journal.BeginRun(ctx, spec.Who)
	if err != nil {
		return err
	}
	lock.SetRun(ctx, runID)
	err = do(ctx, journal)
	outcome := state.OutcomeSucceeded
	switch {
	case errors.Is(err, executor.ErrInterrupted):
		outcome = state.OutcomeInterrupted
		err = stopCause(ctx, err)
	case err != nil:
		outcome = state.OutcomeFailed
	}
	if jerr := journal.EndRun(context.WithoutCancel(ctx), outcome, err); jerr != nil && req.OnJournalError != nil {
		req.OnJournalError(jerr)
	}
	return err
}
