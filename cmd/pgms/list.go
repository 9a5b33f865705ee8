package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/state"
	"github.com/pgms-dev/pgms/views"
)

func newListCommand() *cobra.Command {
	var (
		nodes     topologyNodeFlags
		naming    namingFlags
		weightSQL string
		format    formatFlag
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the active shards of every node with their weights",
		Long:  longHelp("list"),
		Example: `  pgms list --dsn postgres://admin@db1/app --dsn postgres://admin@db2/app
  pgms list --weight-sql "SELECT count(*) FROM users" --format json
  pgms list --config topology/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := format.renderer()
			if err != nil {
				return err
			}
			specs, t, err := nodes.specs(cmd)
			if err != nil {
				return err
			}
			if t != nil && !naming.given(cmd) {
				naming.Naming = t.Cluster.Naming()
			}
			live := state.Refresh(cmd.Context(), specs, state.RefreshOptions{LibrarySchema: nodes.schema, Naming: naming.Naming,
				Weights: true, WeightSQL: weightSQL, ActiveWeightsOnly: true})
			for _, n := range live.Nodes {
				if n.Standby {
					fmt.Fprintf(cmd.ErrOrStderr(), "pgms: node %s is a standby; skipped\n", n.Name)
				}
			}
			report := views.NewList(live, nodes.schema, weightSQL)
			if err := r.Render(cmd.OutOrStdout(), report); err != nil {
				return err
			}
			return nodeFailures(cmd, r, report.Failed(), "%d of %d nodes could not be listed", len(specs))
		},
	}
	nodes.add(cmd)
	naming.add(cmd, "shard schema name prefix, for nodes whose library names shards otherwise")
	format.add(cmd, views.FormatText, views.FormatJSON)
	cmd.Flags().StringVar(&weightSQL, "weight-sql", envOr("WEIGHT_SQL", ""), "query returning a shard's weight, run with search_path set to the shard ($WEIGHT_SQL)")
	return cmd
}
