package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
)

// nodeFlags are the flags of commands that act on a list of nodes given
// directly rather than through topology files.
type nodeFlags struct {
	dsns   []string
	schema string
}

func (f *nodeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.dsns, "dsn", nil, "node DSN (repeatable); default: $PGMS_DSNS, $PGDSNS or $DSNS (comma-separated), else the libpq variables (PGHOST, …)")
	cmd.Flags().StringVar(&f.schema, "schema", envOr("PGMS_SCHEMA", sql.DefaultSchema), "schema of the microsharding library ($PGMS_SCHEMA)")
}

func (f *nodeFlags) resolve() ([]string, error) { return dsn.Resolve(f.dsns) }

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

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func nodeNameOf(connString string) string { return dsn.Name(connString) }
