package runner

import (
	"context"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/state"
)

// FleetAround is every node an activation on target, outside a topology,
// is checked against: the target, the nodes listed (the DSN list
// variables), and the nodes their registries know (nodes pgms managed that
// may hold the shards). A node that cannot be read here is still in the
// fleet: the check that reads it reports it.
func FleetAround(ctx context.Context, target, librarySchema string, listed []string) *state.Fleet {
	f := state.Fleet{LibrarySchema: librarySchema}.With(state.NodeSpec{Name: dsn.Name(target), DSN: target})
	for _, d := range listed {
		f = f.With(state.NodeSpec{Name: dsn.Name(d), DSN: d})
	}
	for _, n := range append([]state.NodeSpec(nil), f.Nodes...) {
		c, err := pgutil.Connect(ctx, n.DSN)
		if err != nil {
			continue
		}
		reg, _ := state.ReadRegistry(ctx, c.Conn, librarySchema)
		c.Close()
		for _, r := range reg {
			f = f.With(state.NodeSpec{Name: r.Name, DSN: r.DSN})
		}
	}
	return &f
}
