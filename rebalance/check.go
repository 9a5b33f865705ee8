package rebalance

import (
	"fmt"
	"time"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/words"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// UnplannableError says the live state stops a plan (an unreadable node,
// a shard active twice): a rebalance computed from it would mislead.
type UnplannableError struct {
	Problems []planner.Problem
}

func (e *UnplannableError) Error() string {
	return fmt.Sprintf("cannot rebalance: the live state has %s (pgms plan shows the same)", words.Count(len(e.Problems), "error"))
}

// CheckPending refuses to rebalance while the cluster differs from the
// files in where shards live: the placement computed from the files would
// be stacked on top of moves not yet made. It returns an
// *UnplannableError on anything that stops a plan.
func CheckPending(t *config.Topology, live *state.Cluster, now time.Time) error {
	p := planner.Compute(planner.Input{Desired: t, Live: live, Now: now, LibraryVersion: sql.Version})
	if p.HasErrors() {
		return &UnplannableError{Problems: p.Errors}
	}
	moves := 0
	for _, s := range p.Steps {
		if s.Kind == planner.StepMove {
			moves++
		}
	}
	if moves == 0 {
		return nil
	}
	pending := words.Count(len(p.Steps), "pending step")
	if moves != len(p.Steps) {
		pending += fmt.Sprintf(", %d of them %s", moves, words.Plural(moves, "a move", "moves"))
	}
	return fmt.Errorf("the cluster does not match the files yet (%s); run pgms apply first, or pgms plan to see them", pending)
}

// CheckRewrite loads the rewritten files and makes sure they place every
// shard as the placement says: plan must show exactly these moves.
func CheckRewrite(t *config.Topology, rewritten map[string][]byte, placement map[int]string) error {
	sources := make(map[string][]byte, len(t.Sources))
	for f, src := range t.Sources {
		sources[f] = src
	}
	for f, src := range rewritten {
		sources[f] = src
	}
	nt, diags := config.LoadSources(sources)
	if diags.HasErrors() {
		return fmt.Errorf("the rewritten files do not load (a bug in pgms; nothing was written): %s", diags.Error())
	}
	got := nt.Placement()
	for n, node := range placement {
		if got[n].Node != node {
			return fmt.Errorf("the rewritten files place shard %d on %q, not %q (a bug in pgms; nothing was written)", n, got[n].Node, node)
		}
	}
	if len(got) != len(placement) {
		return fmt.Errorf("the rewritten files place %d shards, not %d (a bug in pgms; nothing was written)", len(got), len(placement))
	}
	return nil
}
