package main

import (
	"context"
	"fmt"
	"io"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/state"
	"github.com/pgms-dev/pgms/views"
	"github.com/spf13/cobra"
)

// connectStateNode connects to the one node a journal command reads: the
// state node of the topology with --config (whose library schema it then
// uses), else the node dsn.ResolveOne picks.
func connectStateNode(ctx context.Context, stderr io.Writer, f *stateFlags, command string) (*pgutil.Node, error) {
	if f.config != "" {
		t, err := loadTopology(stderr, f.config)
		if err != nil {
			return nil, err
		}
		n, _ := t.Node(t.Cluster.StateNode)
		f.schema = t.Cluster.LibrarySchema
		node, err := pgutil.Connect(ctx, n.DSN)
		if err != nil {
			return nil, fmt.Errorf("state node %s: %w", n.Name, err)
		}
		return node, nil
	}
	target, err := dsn.ResolveOne(f.dsns, command)
	if err != nil {
		return nil, err
	}
	return pgutil.Connect(ctx, target)
}

// specsOf names the nodes given by DSN after their addresses.
func specsOf(dsns []string) []state.NodeSpec {
	specs := make([]state.NodeSpec, len(dsns))
	for i, d := range dsns {
		specs[i] = state.NodeSpec{Name: dsn.Name(d), DSN: d}
	}
	return specs
}

// nodeFailures ends a command that reported on every node: the errors of
// the nodes that failed go to standard error (in JSON they are in the
// document), and the command exits 1 saying how many of total failed.
func nodeFailures(cmd *cobra.Command, r views.Renderer, failed []string, summary string, total int) error {
	if len(failed) == 0 {
		return nil
	}
	if !views.IsJSON(r) {
		for _, e := range failed {
			fmt.Fprintln(cmd.ErrOrStderr(), "pgms: "+e)
		}
	}
	return withCode(exitError, fmt.Errorf(summary, len(failed), total))
}
