package main

import (
	"context"
	"fmt"
	"io"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
)

// connectAll opens a connection to every node; failures are returned per
// node (index-aligned) so that a command can report them and go on.
func connectAll(ctx context.Context, dsns []string) ([]*pgutil.Node, []error) {
	nodes := make([]*pgutil.Node, len(dsns))
	errs := make([]error, len(dsns))
	done := make(chan int, len(dsns))
	for i, d := range dsns {
		go func() {
			nodes[i], errs[i] = pgutil.Connect(ctx, d)
			done <- i
		}()
	}
	for range dsns {
		<-done
	}
	return nodes, errs
}

func closeAll(nodes []*pgutil.Node) {
	for _, n := range nodes {
		n.Close()
	}
}

// targetNode picks the one node an imperative command acts on: the --dsn
// given, else the only node of the DSN list variables, else the libpq
// variables.
func targetNode(flags []string, command string) (string, error) {
	switch len(flags) {
	case 0:
	case 1:
		return flags[0], nil
	default:
		return "", fmt.Errorf("%s acts on one node and --dsn was given %d times", command, len(flags))
	}
	if list, from := dsn.FromEnv(); len(list) > 1 {
		return "", fmt.Errorf("%s acts on one node and %s lists %d; pass --dsn to choose one", command, from, len(list))
	}
	list, err := dsn.Resolve(nil)
	if err != nil {
		return "", err
	}
	return list[0], nil
}

// connectStateNode connects to the one node a journal command reads: the
// state node of the topology with --config (whose library schema it then
// uses), else the node targetNode picks.
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
	target, err := targetNode(f.dsns, command)
	if err != nil {
		return nil, err
	}
	return pgutil.Connect(ctx, target)
}
