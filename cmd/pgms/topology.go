package main

import (
	"context"
	"fmt"
	"io"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/runner"
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

// refreshTopology reads the live state of every node of a topology and of
// the registered nodes that left it.
func refreshTopology(ctx context.Context, t *config.Topology, weights bool) *state.Cluster {
	return runner.Refresh(ctx, t, weights)
}
