package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/state"
	"github.com/pgms-dev/pgms/views"
)

func newListCommand() *cobra.Command {
	var (
		nodes     nodeFlags
		naming    namingFlags
		weightSQL string
		format    formatFlag
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the active shards of every node with their weights",
		Long:  longHelp("list"),
		Example: `  pgms list --dsn postgres://admin@db1/app --dsn postgres://admin@db2/app
  pgms list --weight-sql "SELECT count(*) FROM users" --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if asJSON {
				format.value = views.FormatJSON
			}
			r, err := format.renderer()
			if err != nil {
				return err
			}
			dsns, err := nodes.resolve()
			if err != nil {
				return err
			}
			live := state.Refresh(cmd.Context(), specsOf(dsns), state.RefreshOptions{LibrarySchema: nodes.schema, Naming: naming.Naming,
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
			return nodeFailures(cmd, r, report.Failed(), "%d of %d nodes could not be listed", len(dsns))
		},
	}
	nodes.add(cmd)
	naming.add(cmd, "shard schema name prefix, for nodes whose library names shards otherwise")
	format.add(cmd, views.FormatText, views.FormatJSON)
	cmd.Flags().StringVar(&weightSQL, "weight-sql", envOr("WEIGHT_SQL", ""), "query returning a shard's weight, run with search_path set to the shard ($WEIGHT_SQL)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "same as --format json")
	return cmd
}
