package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/state"
	"github.com/pgms-dev/pgms/views"
)

func newStatusCommand() *cobra.Command {
	var (
		nodes  stateFlags
		runs   int
		format formatFlag
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running or last runs recorded on the state node",
		Long:  longHelp("status"),
		Example: `  pgms status --config topology/
  pgms status --dsn postgres://admin@db1/app
  pgms status --dsn postgres://admin@db1/app --runs 10 --format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := format.renderer()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			n, err := connectStateNode(ctx, cmd.ErrOrStderr(), &nodes, "status")
			if err != nil {
				return err
			}
			defer n.Close()
			lock, err := state.ReadLock(ctx, n.Conn, nodes.schema)
			if err != nil {
				return pgutil.Wrap(err, "state node %s", n.Name)
			}
			list, err := state.ReadRuns(ctx, n.Conn, nodes.schema, runs)
			if err != nil {
				return pgutil.Wrap(err, "state node %s", n.Name)
			}
			report := views.NewStatus(n.Name, lock, list, time.Now())
			if nodes.config != "" {
				// The windows live on the nodes, not in the journal.
				t, err := loadTopology(cmd.ErrOrStderr(), nodes.config)
				if err != nil {
					return err
				}
				report.Windows = runner.Windows(runner.Refresh(ctx, t, false), report.Now)
			}
			return r.Render(cmd.OutOrStdout(), report)
		},
	}
	nodes.add(cmd)
	format.add(cmd, views.FormatText, views.FormatJSON)
	cmd.Flags().IntVar(&runs, "runs", 3, "how many of the last runs to show")
	return cmd
}
