// Package runner carries out pgms's operations: reading the cluster the
// topology files and the node registry describe, planning, the apply
// protocol (the run lock, the check of a saved plan, registration of the
// nodes, the journal, the steps) and the same protocol for a single move,
// and the work of the commands that take nodes by DSN (install, import,
// cleanup). It is what the commands call; it prints nothing and asks
// nothing itself: callers pass what to show and how to confirm, and branch
// on its typed errors.
//
// runner depends on config, state, planner, executor and sql; none of them
// depends on it.
package runner

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// Refresh reads the live state of every node of the topology, and of every
// node the registries of those nodes know that the files no longer list
// (marked Registered), except retired nodes declared lost. A node that
// leaves the files is still read: its shards are live data.
func Refresh(ctx context.Context, t *config.Topology, weights bool) *state.Cluster {
	opts := refreshOptions(t, weights)
	live := state.Refresh(ctx, specsOf(t), opts)
	extra := registeredOutside(t, live)
	if len(extra) == 0 {
		return live
	}
	more := state.Refresh(ctx, extra, opts)
	for _, n := range more.Nodes {
		n.Registered = true
	}
	live.Nodes = append(live.Nodes, more.Nodes...)
	sort.SliceStable(live.Nodes, func(i, j int) bool { return live.Nodes[i].Name < live.Nodes[j].Name })
	return live
}

func refreshOptions(t *config.Topology, weights bool) state.RefreshOptions {
	return state.RefreshOptions{
		LibrarySchema: t.Cluster.LibrarySchema,
		Naming:        t.Cluster.Naming(),
		Weights:       weights,
		WeightSQL:     t.Cluster.WeightSQL,
	}
}

func specsOf(t *config.Topology) []state.NodeSpec {
	specs := make([]state.NodeSpec, len(t.Nodes))
	for i, n := range t.Nodes {
		specs[i] = state.NodeSpec{Name: n.Name, DSN: n.DSN}
	}
	return specs
}

// registeredOutside lists the registered nodes that no node of the files
// is: not the same pgms id, not the same name. A retired node's DSN from
// the files wins over the registry's; a retired node declared lost is not
// read at all.
func registeredOutside(t *config.Topology, live *state.Cluster) []state.NodeSpec {
	inFiles := map[string]bool{}
	for _, n := range live.Nodes {
		if n.Identity.ID != "" {
			inFiles[n.Identity.ID] = true
		}
	}
	seen := map[string]bool{}
	var out []state.NodeSpec
	for _, n := range live.Nodes {
		for _, r := range n.Registry {
			if inFiles[r.ID] || seen[r.ID] {
				continue
			}
			seen[r.ID] = true
			if _, declared := t.Node(r.Name); declared {
				// The name is in the files but reaches another server: the
				// planner reports it; the registered one is read under a
				// name of its own so that both can be told apart.
				out = append(out, state.NodeSpec{Name: fmt.Sprintf("%s@%s", r.Name, r.Addr), DSN: r.DSN})
				continue
			}
			spec := state.NodeSpec{Name: r.Name, DSN: r.DSN}
			if rn, ok := t.RetiredNode(r.Name); ok {
				if rn.Lost {
					continue
				}
				if rn.DSN != "" {
					spec.DSN = rn.DSN
				}
			}
			out = append(out, spec)
		}
	}
	// A retired node with a DSN in the files that no registry knows (a
	// cluster managed before registries existed) is read too.
	for _, rn := range t.Retired {
		if rn.Lost || rn.DSN == "" {
			continue
		}
		known := false
		for _, s := range out {
			known = known || s.Name == rn.Name
		}
		if !known {
			out = append(out, state.NodeSpec{Name: rn.Name, DSN: rn.DSN})
		}
	}
	return out
}

// FleetOf is every node an activation must be checked against: the
// topology's and the registered ones the refresh found.
func FleetOf(t *config.Topology, live *state.Cluster) state.Fleet {
	f := state.Fleet{LibrarySchema: t.Cluster.LibrarySchema, Nodes: specsOf(t)}
	files := &state.Cluster{}
	for _, n := range live.Nodes {
		if !n.Registered {
			files.Nodes = append(files.Nodes, n)
		}
	}
	for _, r := range registeredOutside(t, files) {
		f = f.With(r)
	}
	return f
}

// ReadLock reads the run lock of the topology's state node, with the steps
// its holder runs; nil when the state node cannot be read or has no
// library yet (a plan then simply says nothing about other runs).
func ReadLock(ctx context.Context, t *config.Topology) *state.LockStatus {
	sn, ok := t.Node(t.Cluster.StateNode)
	if !ok {
		return nil
	}
	n, err := pgutil.Connect(ctx, sn.DSN)
	if err != nil {
		return nil
	}
	defer n.Close()
	st, err := state.ReadLock(ctx, n.Conn, t.Cluster.LibrarySchema)
	if err != nil {
		return nil
	}
	return &st
}

// Plan reads the cluster and the run lock and plans.
func Plan(ctx context.Context, t *config.Topology, now time.Time) (*planner.Plan, *state.Cluster) {
	live := Refresh(ctx, t, false)
	lock := ReadLock(ctx, t)
	return planner.Compute(planner.Input{Desired: t, Live: live, Now: now, LibraryVersion: sql.Version, Lock: lock}), live
}

// Changes says how the topology files at path and the live cluster
// differ from those a saved plan was made from (none: the plan is
// current). It fails when it cannot tell: the files do not load, or a node
// cannot be read.
func Changes(ctx context.Context, f *planner.File, path string) ([]string, error) {
	t, diags := config.Load(path)
	if diags.HasErrors() {
		return nil, fmt.Errorf("the topology files at %s do not load (pgms validate --config %s says why)", path, path)
	}
	live := Refresh(ctx, t, false)
	for _, n := range live.Nodes {
		if n.Err != nil {
			return nil, n.Err
		}
	}
	return f.Changes(t, live.Snapshot()), nil
}
