package main

import (
	"context"
	"fmt"
	"io"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/state"
)

// loadTopology reads the topology files, printing every diagnostic; it
// fails when any is an error.
func loadTopology(stderr io.Writer, path string) (*config.Topology, error) {
	t, diags := config.Load(path)
	if err := printDiagnostics(stderr, t.Sources, diags); err != nil {
		return nil, err
	}
	if diags.HasErrors() {
		return nil, fmt.Errorf("the configuration is not valid: %s (pgms validate shows the same)", count(errorCount(diags), "error"))
	}
	return t, nil
}

// refreshTopology reads the live state of every node of a topology.
func refreshTopology(ctx context.Context, t *config.Topology, weights bool) *state.Cluster {
	specs := make([]state.NodeSpec, len(t.Nodes))
	for i, n := range t.Nodes {
		specs[i] = state.NodeSpec{Name: n.Name, DSN: n.DSN}
	}
	return state.Refresh(ctx, specs, state.RefreshOptions{
		LibrarySchema: t.Cluster.LibrarySchema,
		Naming:        t.Cluster.Naming(),
		Weights:       weights,
		WeightSQL:     t.Cluster.WeightSQL,
	})
}
