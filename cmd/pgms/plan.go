package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/views"
)

func newPlanCommand() *cobra.Command {
	var (
		path             string
		format           formatFlag
		out              string
		detailedExitCode bool
	)
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what apply would change to make the cluster match the topology files",
		Long: `Plan reads the topology files and the live state of every node, and prints
the ordered steps that would make the cluster match: install or upgrade the
library, allocate shards, activate or deactivate them, move shards between
nodes, clean up leftovers of earlier moves, and drop shards listed in removed
blocks. It changes nothing.

The same files and the same live state always give the same plan. Shards
present on a node but placed by no shards block are reported as unmanaged and
never touched. When the live state is contradictory (a shard active on two
nodes, a standby given as a node) or a move could not run (wal_level,
replication slots, tables without a primary key), plan says so and stops.

--format markdown suits pull-request comments (summary first, steps collapsed,
under 65,000 characters); --format json is versioned (format_version).
--out saves the plan with fingerprints of the files and of the live state, for
pgms show and apply, which refuse or warn when either changed.

A plan made while another pgms run holds the run lock names that run and
what it does; shards another run is working on (it holds their claims) are
listed as in progress and left alone.

Exit codes: 0 success, 1 error; with --detailed-exitcode 0 no changes,
1 error, 2 changes pending (steps, shards in progress, or drained nodes
that still hold shards).`,
		Example: `  pgms plan --config topology/
  pgms plan --format markdown > plan.md
  pgms plan --out release.plan --detailed-exitcode`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := planner.RendererFor(format.value)
			if err != nil {
				return err
			}
			t, err := loadTopology(cmd.ErrOrStderr(), path)
			if err != nil {
				return err
			}
			p, live := runner.Plan(cmd.Context(), t, time.Now())
			if err := cmd.Context().Err(); err != nil {
				return err
			}
			if err := r.Render(cmd.OutOrStdout(), p); err != nil {
				return err
			}
			if p.HasErrors() {
				return withCode(exitError, errReported)
			}
			if out != "" {
				if err := planner.NewFile(p, path, t, live.Snapshot()).Save(out); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Saved the plan to %s.\n", out)
			}
			if detailedExitCode && p.Pending() {
				return withCode(exitChanges, errReported)
			}
			return nil
		},
	}
	configFlag(cmd, &path)
	format.add(cmd, views.FormatText, views.FormatMarkdown, views.FormatJSON)
	cmd.Flags().StringVar(&out, "out", "", "save the plan to this file for show and apply")
	cmd.Flags().BoolVar(&detailedExitCode, "detailed-exitcode", false, "exit 2 when there are changes, 0 when none, 1 on error")
	return cmd
}
