package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/views"
)

func newShowCommand() *cobra.Command {
	var (
		format  formatFlag
		path    string
		offline bool
	)
	cmd := &cobra.Command{
		Use:   "show PLANFILE",
		Short: "Print a saved plan and say whether it still matches the files and the cluster",
		Long:  longHelp("show"),
		Example: `  pgms show release.plan
  pgms show release.plan --format json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := planner.RendererFor(format.value)
			if err != nil {
				return err
			}
			f, err := planner.LoadFile(args[0])
			if err != nil {
				return err
			}
			if err := r.Render(cmd.OutOrStdout(), f.Plan); err != nil {
				return err
			}
			if offline {
				return nil
			}
			if path == "" {
				path = f.ConfigPath
			}
			stderr := cmd.ErrOrStderr()
			changes, err := runner.Changes(cmd.Context(), f, path)
			if err != nil {
				fmt.Fprintf(stderr, "\nWarning: cannot tell whether the plan is current: %v\n", err)
				return nil
			}
			if len(changes) > 0 {
				fmt.Fprintf(stderr, "\nWarning: this plan is stale; apply would refuse it. Since it was made:\n")
				for _, c := range changes {
					fmt.Fprintf(stderr, "  %s\n", c)
				}
				fmt.Fprintf(stderr, "Make a new plan with pgms plan.\n")
			}
			return nil
		},
	}
	format.add(cmd, views.FormatText, views.FormatMarkdown, views.FormatJSON)
	cmd.Flags().StringVar(&path, "config", "", "topology files to compare with (default: those the plan was made from)")
	cmd.Flags().BoolVar(&offline, "offline", false, "only print the plan; do not check whether it is current")
	return cmd
}
