package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// DefaultParallelism is how many moves an apply runs at once unless told.
const DefaultParallelism = 2

// ApplyEnv is what Apply needs besides the plan.
type ApplyEnv struct {
	// Topology gives the nodes' DSNs and the cluster settings.
	Topology *config.Topology
	// Live is the state read under the run lock; cleanup steps take their
	// leftovers from it.
	Live *state.Cluster
	// Fleet is every node activations are checked against: the
	// topology's and the nodes its registry knows. Moves, allocations and
	// activations read it just before they activate.
	Fleet state.Fleet
	// Who describes the run in the shard claims its steps take.
	Who state.Invocation
	// Journal records the steps; nil records nothing.
	Journal *state.Journal
	// Parallelism bounds the moves running at once; each node also bounds
	// the moves it takes part in (max_concurrent_moves).
	Parallelism int
	// Move tunes every move; the topology's deactivate_sql, verify and
	// keep_copy fill DeactivateSQL, Verify and KeepCopyBytes when they
	// are not set.
	Move MoveOptions
	// Log receives a line as each step starts and ends.
	Log io.Writer
	// Output receives the migrate command's output.
	Output io.Writer
	// Reporter receives the progress of moves.
	Reporter Reporter
	// Observer, when set, is told as each step starts and ends.
	Observer StepObserver
	// Now is the time cleanup retention is measured against.
	Now time.Time
	// AfterInstall, when set, runs once the install steps are done (the
	// caller registers the nodes that got the library).
	AfterInstall func(context.Context) error
}

// StepResult is what became of one step.
type StepResult struct {
	Step planner.Step
	Took time.Duration
	Err  error
	// Move is set for moves that ran.
	Move *MoveResult
	// Ran is false for steps not started because an earlier one failed.
	Ran bool
}

// StepObserver follows an apply step by step (pgms apply -json, the live
// view). Its methods may be called from several goroutines: moves run in
// parallel.
type StepObserver interface {
	// StepStarted is called as step i (0-based, of the plan) starts.
	StepStarted(i int, s planner.Step)
	// StepEnded is called once step i has ended, with what became of it.
	StepEnded(i int, r StepResult)
}

// Observers tells each of os, skipping nils.
func Observers(os ...StepObserver) StepObserver {
	var list observers
	for _, o := range os {
		if o != nil {
			list = append(list, o)
		}
	}
	return list
}

type observers []StepObserver

func (l observers) StepStarted(i int, s planner.Step) {
	for _, o := range l {
		o.StepStarted(i, s)
	}
}

func (l observers) StepEnded(i int, r StepResult) {
	for _, o := range l {
		o.StepEnded(i, r)
	}
}

// ApplyResult lists the steps in plan order.
type ApplyResult struct {
	Steps []StepResult
}

// Moves returns the results of the moves that completed.
func (r ApplyResult) Moves() []MoveResult {
	var out []MoveResult
	for _, s := range r.Steps {
		if s.Move != nil && s.Err == nil {
			out = append(out, *s.Move)
		}
	}
	return out
}

// applier runs one plan.
type applier struct {
	env   ApplyEnv
	plan  *planner.Plan
	res   []StepResult
	mu    sync.Mutex
	nodes map[string]*pgutil.Node
}

// Apply carries out the plan's steps in order: installs, allocations,
// activations and deactivations, moves (several at once within the limits),
// cleanups, drops. Every step is idempotent and decides from what it finds,
// so applying a fresh plan after a failure or a crash continues where the
// last apply stopped. After a failed step no new step starts; moves already
// running finish or stop at a safe point. The error joins every failure.
func Apply(ctx context.Context, p *planner.Plan, env ApplyEnv) (ApplyResult, error) {
	if env.Parallelism <= 0 {
		env.Parallelism = DefaultParallelism
	}
	if env.Log == nil {
		env.Log = io.Discard
	}
	if env.Reporter == nil {
		env.Reporter = Discard
	}
	if env.Now.IsZero() {
		env.Now = time.Now()
	}
	if env.Move.DeactivateSQL == "" {
		env.Move.DeactivateSQL = env.Topology.Cluster.DeactivateSQL
	}
	if env.Move.Verify == "" {
		env.Move.Verify = env.Topology.Cluster.Verify
	}
	if env.Move.KeepCopyBytes == 0 {
		env.Move.KeepCopyBytes = env.Topology.Cluster.KeepCopy
	}
	if env.Move.RollbackWindow == 0 {
		env.Move.RollbackWindow = env.Topology.Cluster.RollbackWindow
	}
	a := &applier{env: env, plan: p, nodes: map[string]*pgutil.Node{}}
	defer a.closeNodes()
	a.res = make([]StepResult, len(p.Steps))
	for i, s := range p.Steps {
		a.res[i].Step = s
	}

	// Stages run one after another; within a stage, moves run in parallel
	// and the rest in plan order.
	stages := [][]int{}
	var current []int
	var kind planner.StepKind
	for i, s := range p.Steps {
		if len(current) > 0 && stageOf(s.Kind) != stageOf(kind) {
			stages = append(stages, current)
			current = nil
		}
		current = append(current, i)
		kind = s.Kind
	}
	if len(current) > 0 {
		stages = append(stages, current)
	}
	// A missing grant found halfway would leave the apply half done.
	if err := a.checkPrivileges(ctx); err != nil {
		return ApplyResult{Steps: a.res}, err
	}
	var failed error
	for _, stage := range stages {
		if failed != nil || ctx.Err() != nil {
			break
		}
		switch stageOf(p.Steps[stage[0]].Kind) {
		case "moves":
			failed = a.runMoves(ctx, stage)
		case "cleanup":
			failed = a.runCleanup(ctx, stage)
		default:
			for _, i := range stage {
				if err := a.runOne(ctx, i); err != nil {
					failed = err
					break
				}
			}
		}
		if failed == nil && p.Steps[stage[0]].Kind == planner.StepInstall && env.AfterInstall != nil {
			if err := env.AfterInstall(ctx); err != nil {
				a.logf("warning: registering the nodes: %s", pgutil.Describe(err))
			}
		}
	}
	var errs []error
	for _, r := range a.res {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	if len(errs) == 0 && ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrInterrupted, ctx.Err()))
	}
	return ApplyResult{Steps: a.res}, errors.Join(errs...)
}

// stageOf groups step kinds that run together.
func stageOf(k planner.StepKind) string {
	switch k {
	case planner.StepMove:
		return "moves"
	case planner.StepCleanup:
		return "cleanup"
	case planner.StepActivate, planner.StepDeactivate:
		return "flips"
	}
	return string(k)
}

// node returns an open connection to a topology node, opening it on first
// use.
func (a *applier) node(ctx context.Context, name string) (*pgutil.Node, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := a.nodes[name]; n != nil {
		return n, nil
	}
	d, err := a.dsnOf(name)
	if err != nil {
		return nil, err
	}
	n, err := pgutil.ConnectAs(ctx, name, d)
	if err != nil {
		return nil, err
	}
	n.Name = name
	a.nodes[name] = n
	return n, nil
}

// dsnOf returns how to reach a node: the topology's DSN, or for a node
// that left the files, the one its registry entry gives.
func (a *applier) dsnOf(name string) (string, error) {
	if tn, ok := a.env.Topology.Node(name); ok {
		return tn.DSN, nil
	}
	for _, n := range a.env.Fleet.Nodes {
		if n.Name == name {
			return n.DSN, nil
		}
	}
	return "", fmt.Errorf("node %s is neither in the topology nor in its registry", name)
}

// publisherDSNOf is the node's publisher_dsn: how the destinations of
// moves from it reach it ("" for the default, its DSN).
func (a *applier) publisherDSNOf(name string) string {
	if tn, ok := a.env.Topology.Node(name); ok {
		return tn.PublisherDSN
	}
	return ""
}

func (a *applier) closeNodes() {
	for _, n := range a.nodes {
		n.Close()
	}
}

func (a *applier) logf(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fmt.Fprintf(a.env.Log, format+"\n", args...)
}

// begin logs and journals the start of step i.
func (a *applier) begin(ctx context.Context, i int) *state.Step {
	s := a.plan.Steps[i]
	a.logf("[%d/%d] %s %s", i+1, len(a.plan.Steps), s.Symbol(), planner.Headline(s))
	if a.env.Observer != nil {
		a.env.Observer.StepStarted(i, s)
	}
	if s.Kind == planner.StepMove {
		return nil // moves journal themselves
	}
	start := state.StepStart{Kind: string(s.Kind), Source: s.From, Destination: s.Node}
	if s.Shards != nil {
		start.Shard = s.Shards.From
	}
	if len(s.Schemas) > 0 {
		start.Schema = s.Schemas[0]
	} else if s.Object != "" {
		start.Schema = s.Object
	}
	js, err := a.env.Journal.BeginStep(ctx, start)
	if err != nil {
		a.logf("warning: %v", err)
	}
	return js
}

// end records what became of step i.
func (a *applier) end(ctx context.Context, i int, js *state.Step, started time.Time, err error) {
	took := time.Since(started)
	a.mu.Lock()
	a.res[i].Ran, a.res[i].Took, a.res[i].Err = true, took, err
	res := a.res[i]
	a.mu.Unlock()
	if a.env.Observer != nil {
		a.env.Observer.StepEnded(i, res)
	}
	outcome := state.OutcomeSucceeded
	switch {
	case err != nil && ctx.Err() != nil:
		outcome = state.OutcomeInterrupted
	case err != nil:
		outcome = state.OutcomeFailed
	}
	if js != nil {
		// The run's context may be cancelled: record the end regardless.
		jctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		js.End(jctx, state.StepState{Phase: "done", Total: took}, outcome, err) //nolint:errcheck // best effort
	}
	if err != nil {
		a.logf("[%d/%d] failed after %s: %s", i+1, len(a.plan.Steps), took.Round(time.Millisecond), pgutil.Describe(err))
		return
	}
	a.logf("[%d/%d] done in %s", i+1, len(a.plan.Steps), took.Round(time.Millisecond))
}

// runOne runs a step that is neither a move nor a cleanup.
func (a *applier) runOne(ctx context.Context, i int) error {
	s := a.plan.Steps[i]
	js := a.begin(ctx, i)
	started := time.Now()
	err := a.do(ctx, s)
	a.end(ctx, i, js, started, err)
	return err
}

func (a *applier) do(ctx context.Context, s planner.Step) error {
	c := a.env.Topology.Cluster
	if s.Kind == planner.StepRetire {
		return a.retire(ctx, s)
	}
	n, err := a.node(ctx, s.Node)
	if err != nil {
		return err
	}
	switch s.Kind {
	case planner.StepInstall:
		naming := c.Naming()
		_, err := sql.Install(ctx, n.Conn, sql.Options{Schema: c.LibrarySchema, Naming: &naming})
		return pgutil.Wrap(err, "install the library on node %s", s.Node)
	case planner.StepAllocate:
		_, err := Allocate(ctx, n, AllocateSpec{
			From: s.Shards.From, To: s.Shards.To, MigrateCommand: c.MigrateCommand, Activate: s.Activate,
			LibrarySchema: c.LibrarySchema, Naming: c.Naming(), Fleet: &a.env.Fleet, Who: a.env.Who,
			Stdout: a.env.Output, Stderr: a.env.Output,
		})
		return err
	case planner.StepActivate:
		_, err := Activate(ctx, n, s.Shards.From, s.Shards.To, ActivateOptions{LibrarySchema: c.LibrarySchema, Fleet: &a.env.Fleet, Who: a.env.Who})
		return err
	case planner.StepDeactivate:
		_, err := Deactivate(ctx, n, s.Shards.From, s.Shards.To, ActivateOptions{LibrarySchema: c.LibrarySchema})
		return err
	case planner.StepDrop:
		_, err := DropShards(ctx, n, s.Shards.From, s.Shards.To, c.LibrarySchema)
		return err
	}
	return fmt.Errorf("step kind %q cannot run here", s.Kind)
}

// retire checks that a retired node holds nothing any more and removes it
// from the registry of every node of the topology. A node declared lost is
// not checked: it cannot be reached.
func (a *applier) retire(ctx context.Context, s planner.Step) error {
	c := a.env.Topology.Cluster
	if rn, ok := a.env.Topology.RetiredNode(s.Node); !ok || !rn.Lost {
		n, err := a.node(ctx, s.Node)
		if err != nil {
			return fmt.Errorf("retire node %s: %w", s.Node, err)
		}
		var held []string
		err = n.Conn.QueryRow(ctx, `SELECT COALESCE(array_agg(nspname::text ORDER BY nspname), '{}') FROM pg_catalog.pg_namespace WHERE starts_with(nspname, $1)`,
			c.SchemaPrefix).Scan(&held)
		if err != nil {
			return pgutil.Wrap(err, "retire node %s: list its schemas", s.Node)
		}
		var keep []string
		for _, name := range held {
			if _, ok := state.ParseLeftover(state.LeftoverOldSchema, name, c.Naming()); ok {
				keep = append(keep, name)
			} else if _, ok := state.ParseLeftover(state.LeftoverNewSchema, name, c.Naming()); ok {
				keep = append(keep, name)
			} else if _, ok := state.ShardNumber(c.Naming(), name); ok {
				keep = append(keep, name)
			}
		}
		if len(keep) > 0 {
			return fmt.Errorf("retire node %s: it still holds %s; it is not retired (plan again to see what moves them off)", s.Node, strings.Join(keep, ", "))
		}
	}
	var errs []error
	for _, tn := range a.env.Topology.Nodes {
		n, err := a.node(ctx, tn.Name)
		if err == nil {
			err = state.Unregister(ctx, n.Conn, c.LibrarySchema, s.NodeID)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: forget retired node %s: %w", tn.Name, s.Node, err))
		}
	}
	return errors.Join(errs...)
}

// runMoves runs the moves of a stage, as many at once as Parallelism and
// every node's max_concurrent_moves allow, in plan order. After a failure
// no new move starts.
func (a *applier) runMoves(ctx context.Context, stage []int) error {
	limit := func(node string) int {
		if n, ok := a.env.Topology.Node(node); ok && n.MaxConcurrentMoves > 0 {
			return n.MaxConcurrentMoves
		}
		return config.DefaultMaxConcurrentMoves
	}
	busy := map[string]int{}
	running := 0
	done := make(chan int)
	pending := append([]int(nil), stage...)
	var failed error
	for len(pending) > 0 || running > 0 {
		started := false
		if failed == nil && ctx.Err() == nil {
			for k, i := range pending {
				s := a.plan.Steps[i]
				if running >= a.env.Parallelism || busy[s.From] >= limit(s.From) || busy[s.To] >= limit(s.To) {
					continue
				}
				busy[s.From]++
				busy[s.To]++
				running++
				pending = append(pending[:k], pending[k+1:]...)
				go func() { a.move(ctx, i); done <- i }()
				started = true
				break
			}
		} else {
			pending = nil
		}
		if started {
			continue
		}
		if running == 0 {
			break
		}
		i := <-done
		s := a.plan.Steps[i]
		busy[s.From]--
		busy[s.To]--
		running--
		if err := a.res[i].Err; err != nil && failed == nil {
			failed = err
		}
	}
	return failed
}

func (a *applier) move(ctx context.Context, i int) {
	s := a.plan.Steps[i]
	a.begin(ctx, i)
	started := time.Now()
	var res MoveResult
	spec, err := a.moveSpec(s)
	if err == nil {
		res, err = Move(ctx, spec, a.env.Journal, a.env.Reporter)
	}
	a.mu.Lock()
	if err == nil {
		a.res[i].Move = &res
	}
	a.mu.Unlock()
	a.end(ctx, i, nil, started, err)
	if err == nil && res.Pause > 0 {
		a.logf("[%d/%d] %s: write pause %s (lock to commit %s), %d cutover retries", i+1, len(a.plan.Steps), s.Schemas[0],
			res.Pause.Round(10*time.Microsecond), res.Core.Round(10*time.Microsecond), res.Retries)
	}
}

// moveSpec is what Move needs for a move step.
func (a *applier) moveSpec(s planner.Step) (MoveSpec, error) {
	from, ferr := a.dsnOf(s.From)
	to, terr := a.dsnOf(s.To)
	c := a.env.Topology.Cluster
	return MoveSpec{
		Shard: s.Shards.From, Schema: s.Schemas[0],
		From:     Endpoint{Name: s.From, DSN: from, PublisherDSN: a.publisherDSNOf(s.From)},
		To:       Endpoint{Name: s.To, DSN: to, PublisherDSN: a.publisherDSNOf(s.To)},
		Activate: s.Activate, KeepInactive: !s.Activate,
		LibrarySchema: c.LibrarySchema, Options: a.env.Move, Fleet: a.env.Fleet, Who: a.env.Who,
	}, errors.Join(ferr, terr)
}

// runCleanup drops the leftovers of a stage: first the partial copies of
// abandoned moves (with their replication objects, through the move's own
// undo), then every node's subscriptions, then slots, publications and
// schemas. Each leftover is looked up in the live state read under the
// lock and checked again on its node before it goes.
func (a *applier) runCleanup(ctx context.Context, stage []int) error {
	c := a.env.Topology.Cluster
	var verdicts []state.Verdict
	byKey := map[string]int{}
	var failed error
	for _, i := range stage {
		s := a.plan.Steps[i]
		if s.ObjectKind == "window" {
			// A rollback window past its end: s.From serves the shard and
			// streams it back to the fenced source on s.Node.
			js := a.begin(ctx, i)
			started := time.Now()
			from, ferr := a.dsnOf(s.From)
			to, terr := a.dsnOf(s.Node)
			err := errors.Join(ferr, terr)
			if err == nil {
				_, err = CloseWindow(ctx, MoveSpec{Shard: s.Shards.From, Schema: s.Object, Activate: true,
					From: Endpoint{Name: s.From, DSN: from}, To: Endpoint{Name: s.Node, DSN: to},
					LibrarySchema: c.LibrarySchema, Options: a.env.Move, Who: a.env.Who}, nil, a.env.Reporter)
			}
			a.end(ctx, i, js, started, err)
			if err != nil && failed == nil {
				failed = err
			}
			continue
		}
		if s.From != "" && s.ObjectKind == "schema" {
			// The partial copy of a move from s.From to s.Node.
			js := a.begin(ctx, i)
			started := time.Now()
			from, ferr := a.dsnOf(s.From)
			to, terr := a.dsnOf(s.Node)
			err := errors.Join(ferr, terr)
			if err == nil {
				err = AbortMove(ctx, MoveSpec{Shard: s.Shards.From, Schema: s.Object,
					From: Endpoint{Name: s.From, DSN: from}, To: Endpoint{Name: s.Node, DSN: to},
					LibrarySchema: c.LibrarySchema, Options: a.env.Move, Who: a.env.Who}, a.env.Reporter)
			}
			a.end(ctx, i, js, started, err)
			if err != nil && failed == nil {
				failed = err
			}
			continue
		}
		l, ok := a.leftover(s.Node, s.Object)
		if !ok {
			// Gone since the plan was read (an abort above took it): done.
			a.begin(ctx, i)
			a.end(ctx, i, nil, time.Now(), nil)
			continue
		}
		byKey[s.Node+"\x00"+s.Object] = i
		verdicts = append(verdicts, state.Verdict{Node: s.Node, Leftover: l, Drop: true})
	}
	if failed != nil || len(verdicts) == 0 {
		return failed
	}
	nodes := map[string]*pgutil.Node{}
	for _, v := range verdicts {
		n, err := a.node(ctx, v.Node)
		if err != nil {
			return err
		}
		nodes[v.Node] = n
	}
	sort.SliceStable(verdicts, func(i, j int) bool {
		return state.KindOrder(verdicts[i].Leftover.Kind) < state.KindOrder(verdicts[j].Leftover.Kind)
	})
	starts := map[int]time.Time{}
	for _, v := range verdicts {
		i := byKey[v.Node+"\x00"+v.Leftover.Name]
		a.begin(ctx, i)
		starts[i] = time.Now()
	}
	outcomes, err := CleanupAll(ctx, nodes, verdicts, CleanupSpec{
		RetainOld: c.CleanupAfter, Now: a.env.Now, LibrarySchema: c.LibrarySchema, Naming: c.Naming(),
	})
	for _, o := range outcomes {
		i, ok := byKey[o.Node+"\x00"+o.Leftover.Name]
		if !ok {
			continue
		}
		stepErr := o.Err
		if stepErr == nil && !o.Dropped && o.Reason != "" && o.Reason != "already gone" {
			stepErr = fmt.Errorf("node %s: %s was not dropped: %s", o.Node, o.Leftover, o.Reason)
		}
		a.end(ctx, i, nil, starts[i], stepErr)
		if stepErr != nil && failed == nil {
			failed = stepErr
		}
	}
	if failed == nil {
		failed = err
	}
	return failed
}

func (a *applier) leftover(node, name string) (state.Leftover, bool) {
	n := a.env.Live.Node(node)
	if n == nil {
		return state.Leftover{}, false
	}
	for _, l := range n.Leftovers {
		if l.Name == name {
			return l, true
		}
	}
	return state.Leftover{}, false
}
