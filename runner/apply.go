package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// ApplyRequest is what Apply needs.
type ApplyRequest struct {
	Topology *config.Topology
	// Saved is a plan saved by plan -out; nil plans now, under the lock.
	Saved *planner.File
	// SavedPath names the saved plan in messages.
	SavedPath string
	// Show receives the plan about to be carried out (nil: not shown).
	Show func(*planner.Plan) error
	// Confirm is asked before a fresh plan with changes is carried out;
	// nil carries it out without asking (auto-approve). A saved plan was
	// approved when it was made and is not asked about.
	Confirm func(*planner.Plan) (bool, error)
	// LockTimeout is how long to wait for a run lock another run holds;
	// 0 fails at once naming the holder. OnLockWait is told when waiting
	// starts, OnTakeover when a stale holder was replaced.
	LockTimeout time.Duration
	OnLockWait  func(state.LockStatus)
	OnTakeover  func(state.Takeover)
	// Invocation describes this run in the journal and in claims.
	Invocation state.Invocation
	// Started is told once the steps begin (after the lock, the plan and
	// the confirmation), with the state node's name.
	Started func(stateNode string, p *planner.Plan)

	Parallelism int
	Move        executor.MoveOptions
	Log         io.Writer // a line as each step starts and ends
	Output      io.Writer // the migrate command's output
	Reporter    executor.Reporter
}

// ApplyOutcome says what Apply did.
type ApplyOutcome struct {
	Plan      *planner.Plan
	Result    executor.ApplyResult
	Took      time.Duration
	StateNode string
	// Ran: steps were carried out (false when there was nothing to do or
	// the run stopped before).
	Ran bool
}

// Typed failures of Apply, for callers that branch on them; the error
// messages say what happened and the fix.
var (
	// ErrDeclined: the confirmation was refused; nothing changed.
	ErrDeclined = errors.New("apply cancelled; nothing changed")
	// ErrPlanErrors: the planner refused to plan (see Plan.Errors).
	ErrPlanErrors = errors.New("the cluster cannot be planned")
)

// StalePlanError says a saved plan no longer matches the files or the
// cluster.
type StalePlanError struct {
	File    string
	Changes []string
}

func (e *StalePlanError) Error() string {
	return fmt.Sprintf("the saved plan %s is stale; since it was made:\n  %s\nMake a new plan with pgms plan", e.File, strings.Join(e.Changes, "\n  "))
}

// Apply carries out the topology: it takes the run lock on the state node
// (waiting up to LockTimeout), registers the nodes, reads the cluster,
// plans (or checks the saved plan against what it reads), asks for
// confirmation, and carries out the steps, recording them in the journal.
// Planning under the lock means the plan shown is the plan carried out:
// nothing else changes the cluster meanwhile. A run that loses its lock
// stops at the next safe point.
func Apply(ctx context.Context, req ApplyRequest) (ApplyOutcome, error) {
	t := req.Topology
	out := ApplyOutcome{}
	sn, ok := t.Node(t.Cluster.StateNode)
	if !ok {
		return out, fmt.Errorf("the topology names no state node")
	}
	out.StateNode = sn.Name
	inv := req.Invocation
	lock, takeover, err := state.AcquireRunLock(ctx, sn.DSN, t.Cluster.LibrarySchema, inv, state.LockOptions{Wait: req.LockTimeout, OnWait: req.OnLockWait})
	if err != nil {
		return out, err
	}
	defer lock.Release(context.WithoutCancel(ctx)) //nolint:errcheck // the session end releases it anyway
	if takeover != nil && req.OnTakeover != nil {
		req.OnTakeover(*takeover)
	}
	ctx, cancel := watchLock(ctx, lock)
	defer cancel(nil)

	live := Refresh(ctx, t, false)
	if err := ctx.Err(); err != nil {
		return out, stopCause(ctx, err)
	}
	p := planner.Compute(planner.Input{Desired: t, Live: live, Now: time.Now(), LibraryVersion: sql.Version})
	if req.Saved != nil {
		if changes := req.Saved.Changes(t, live.Snapshot()); len(changes) > 0 {
			return out, &StalePlanError{File: req.SavedPath, Changes: changes}
		}
		p = req.Saved.Plan
	}
	out.Plan = p
	if req.Show != nil {
		if err := req.Show(p); err != nil {
			return out, err
		}
	}
	if p.HasErrors() {
		return out, ErrPlanErrors
	}
	if !p.HasChanges() {
		return out, nil
	}
	if req.Saved == nil && req.Confirm != nil {
		ok, err := req.Confirm(p)
		if err != nil {
			return out, err
		}
		if !ok {
			return out, ErrDeclined
		}
	}
	// The journal lives in the library schema of the state node: a fresh
	// state node gets the library now, once the plan is approved.
	if err := ensureLibrary(ctx, sn, t); err != nil {
		return out, err
	}
	if err := lock.Record(ctx); err != nil {
		return out, err
	}
	// Every node of the files joins the registry before anything changes,
	// so that a node that later leaves the files is still known.
	if !registered(t, live) {
		if err := Register(ctx, t, false); err != nil {
			return out, err
		}
	}
	journal, err := state.OpenJournal(ctx, sn.DSN, t.Cluster.LibrarySchema)
	if err != nil {
		return out, err
	}
	defer journal.Close(context.WithoutCancel(ctx))
	runID, err := journal.BeginRun(ctx, inv)
	if err != nil {
		return out, err
	}
	lock.SetRun(ctx, runID)
	if req.Started != nil {
		req.Started(sn.Name, p)
	}
	began := time.Now()
	res, applyErr := executor.Apply(ctx, p, executor.ApplyEnv{
		Topology: t, Live: live, Fleet: FleetOf(t, live), Who: inv, Journal: journal,
		Parallelism: req.Parallelism, Move: req.Move,
		Log: req.Log, Output: req.Output, Reporter: req.Reporter,
		// Nodes installed by this apply join the registry.
		AfterInstall: func(ctx context.Context) error { return Register(ctx, t, true) },
	})
	out.Result, out.Took, out.Ran = res, time.Since(began), true
	outcome := state.OutcomeSucceeded
	switch {
	case applyErr != nil && ctx.Err() != nil:
		outcome = state.OutcomeInterrupted
		applyErr = stopCause(ctx, applyErr)
	case applyErr != nil:
		outcome = state.OutcomeFailed
	}
	journal.EndRun(context.WithoutCancel(ctx), outcome, applyErr) //nolint:errcheck // the outcome is returned either way
	return out, applyErr
}

// watchLock returns a context that ends when the run lock is lost, with
// the loss as its cause: the run stops at its next safe point.
func watchLock(ctx context.Context, lock *state.RunLock) (context.Context, context.CancelCauseFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-lock.Lost():
			cancel(lock.Err())
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// stopCause names why the run's context ended: its lost lock, or the
// caller's interruption.
func stopCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && errors.Is(cause, state.ErrLockLost) {
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}

// ensureLibrary installs or upgrades the library on the state node, which
// the journal and the lock's holder row live in. Installing is idempotent
// and serialised on the node.
func ensureLibrary(ctx context.Context, sn *config.Node, t *config.Topology) error {
	n, err := pgutil.Connect(ctx, sn.DSN)
	if err != nil {
		return fmt.Errorf("state node %s: %w", sn.Name, err)
	}
	defer n.Close()
	v, err := sql.InstalledVersion(ctx, n.Conn, t.Cluster.LibrarySchema)
	if err != nil {
		return pgutil.Wrap(err, "state node %s", sn.Name)
	}
	if v >= sql.Version {
		return nil
	}
	naming := t.Cluster.Naming()
	if _, err := sql.Install(ctx, n.Conn, sql.Options{Schema: t.Cluster.LibrarySchema, Naming: &naming}); err != nil {
		return fmt.Errorf("install the library on state node %s: %s", sn.Name, pgutil.Describe(err))
	}
	return nil
}

// registered reports whether every readable node of the files with the
// library has its pgms id and every such node's registry already records
// all of them as the files name them: then there is nothing to write.
func registered(t *config.Topology, live *state.Cluster) bool {
	var nodes []*state.NodeState
	for _, cn := range t.Nodes {
		n := live.Node(cn.Name)
		if n == nil || n.Err != nil || !n.Library.Installed {
			continue
		}
		if n.Identity.ID == "" {
			return false
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		known := map[string]state.RegisteredNode{}
		for _, r := range n.Registry {
			known[r.ID] = r
		}
		for _, o := range nodes {
			r, ok := known[o.Identity.ID]
			if !ok || r.Name != o.Name || r.Addr != o.Addr {
				return false
			}
		}
	}
	return true
}

// Register gives every node of the files that has the library a pgms id
// and records all of them in the registry of each: a node that later
// leaves the files is still known to those that stay. Nodes that cannot
// be reached, or lack the library, are skipped (with all, a node that
// cannot be reached fails it).
func Register(ctx context.Context, t *config.Topology, all bool) error {
	type reached struct {
		node *pgutil.Node
		id   state.Identity
	}
	nodes := make([]reached, len(t.Nodes))
	errs := make([]error, len(t.Nodes))
	var wg sync.WaitGroup
	for i, cn := range t.Nodes {
		wg.Go(func() {
			n, err := pgutil.Connect(ctx, cn.DSN)
			if err != nil {
				errs[i] = err
				return
			}
			n.Name = cn.Name
			v, err := sql.InstalledVersion(ctx, n.Conn, t.Cluster.LibrarySchema)
			if err != nil || v < 0 {
				n.Close()
				errs[i] = err
				return
			}
			id, err := state.EnsureIdentity(ctx, n.Conn, t.Cluster.LibrarySchema)
			if err != nil {
				n.Close()
				errs[i] = pgutil.Wrap(err, "node %s: give it its pgms id", cn.Name)
				return
			}
			nodes[i] = reached{node: n, id: id}
		})
	}
	wg.Wait()
	defer func() {
		for _, r := range nodes {
			r.node.Close()
		}
	}()
	var entries []state.RegistryEntry
	for i, r := range nodes {
		if r.node != nil {
			entries = append(entries, state.RegistryEntry{Name: t.Nodes[i].Name, DSN: t.Nodes[i].DSN, Identity: r.id, Authoritative: true})
		}
	}
	// Two names for one server must not both be registered: the planner
	// refuses such a topology, and the registry keeps the first.
	for i, r := range nodes {
		if r.node == nil {
			continue
		}
		if err := state.Register(ctx, r.node.Conn, t.Cluster.LibrarySchema, entries); err != nil {
			errs[i] = pgutil.Wrap(err, "node %s: record the node registry", t.Nodes[i].Name)
		}
	}
	if all {
		return errors.Join(errs...)
	}
	return nil
}
