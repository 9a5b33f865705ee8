package runner

import (
	"context"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/state"
)

// Leftovers reads the nodes and decides, for every leftover of a move on
// them, whether cleanup drops it (state.Cluster.Triage). Standbys are left
// out of the cluster and named apart; a node that cannot be read stays in
// it with its error, so that what it might use is kept.
func Leftovers(ctx context.Context, nodes []state.NodeSpec, librarySchema string, policy state.CleanupPolicy) (*state.Cluster, []string, []state.Verdict) {
	live := state.Refresh(ctx, nodes, state.RefreshOptions{LibrarySchema: librarySchema})
	var standbys []string
	kept := live.Nodes[:0]
	for _, n := range live.Nodes {
		if n.Err == nil && n.Standby {
			standbys = append(standbys, n.Name)
			continue
		}
		kept = append(kept, n)
	}
	live.Nodes = kept
	return live, standbys, live.Triage(policy)
}

// DropError says some leftovers could not be dropped; spec.Report was told
// of each failure.
type DropError struct{ Err error }

func (e *DropError) Error() string { return e.Err.Error() }
func (e *DropError) Unwrap() error { return e.Err }

// Cleanup drops what the verdicts drop (executor.CleanupAll), connecting
// first to the nodes that hold such leftovers: a node that cannot be
// reached fails it before anything is dropped. Failed drops end it with a
// *DropError.
func Cleanup(ctx context.Context, nodes []state.NodeSpec, verdicts []state.Verdict, spec executor.CleanupSpec) error {
	dsns := map[string]string{}
	for _, n := range nodes {
		dsns[n.Name] = n.DSN
	}
	conns := map[string]*pgutil.Node{}
	defer func() {
		for _, n := range conns {
			n.Close()
		}
	}()
	for _, v := range verdicts {
		if _, done := conns[v.Node]; done || !v.Drop {
			continue
		}
		n, err := pgutil.Connect(ctx, dsns[v.Node])
		if err != nil {
			return err
		}
		conns[v.Node] = n
	}
	if _, err := executor.CleanupAll(ctx, conns, verdicts, spec); err != nil {
		return &DropError{Err: err}
	}
	return nil
}
