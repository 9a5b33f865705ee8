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
		Long:  longHelp("plan"),
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
