package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/state"
	"github.com/pgms-dev/pgms/views"
)

func newCleanupCommand() *cobra.Command {
	var (
		nodes     nodeFlags
		retain    time.Duration
		yes       bool
		dryRun    bool
		terminate bool
		format    formatFlag
	)
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Drop what interrupted and finished moves left behind",
		Long:  longHelp("cleanup"),
		Example: `  PGDSNS=postgres://admin@db1/app,postgres://admin@db2/app pgms cleanup
  pgms cleanup --dsn postgres://admin@db1/app --retain 72h --auto-approve`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := format.renderer()
			if err != nil {
				return err
			}
			if retain < 0 {
				return fmt.Errorf("--retain=%s: a retention cannot be negative", units.FormatDuration(retain))
			}
			dsns, err := nodes.resolve()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			out, errOut, text := cmd.OutOrStdout(), cmd.ErrOrStderr(), textOut(cmd, r)
			specs := specsOf(dsns)
			policy := state.CleanupPolicy{Now: time.Now(), RetainOld: retain, TerminateOrphanWalsenders: terminate}
			live, standbys, verdicts := runner.Leftovers(ctx, specs, nodes.schema, policy)
			failed := 0
			for _, n := range live.Nodes {
				if n.Err != nil {
					fmt.Fprintf(errOut, "pgms: %v\n", n.Err)
					failed++
				}
			}
			for _, name := range standbys {
				fmt.Fprintf(errOut, "pgms: node %s is a standby; skipped\n", name)
			}
			report := views.NewCleanup(live, verdicts, retain)
			report.DryRun = dryRun
			if err := report.Listing(text); err != nil {
				return err
			}
			finish := func() error {
				if views.IsJSON(r) {
					return r.Render(out, report)
				}
				return report.Conclusion(out)
			}
			if report.ToDrop == 0 || dryRun {
				if err := finish(); err != nil {
					return err
				}
				return failedNodes(failed, len(dsns))
			}
			if !yes {
				q := question{text: "\nDrop these objects?", terminal: true,
					skip: "pass --auto-approve to drop, or --dry-run to only list"}
				ok, err := q.ask(cmd.InOrStdin(), text)
				if err != nil {
					return err
				}
				if report.Declined = !ok; !ok {
					return finish()
				}
			}
			spec := executor.CleanupSpec{
				RetainOld: retain, Now: policy.Now, TerminateOrphanWalsenders: terminate, LibrarySchema: nodes.schema,
				Report: func(o executor.Outcome) {
					report.Record(o)
					switch {
					case o.Err != nil:
						fmt.Fprintf(errOut, "pgms: %s\n", pgutil.Describe(o.Err))
					case !views.IsJSON(r):
						fmt.Fprint(out, views.OutcomeLine(o))
					}
				},
			}
			err = runner.Cleanup(ctx, specs, verdicts, spec)
			var partial *runner.DropError
			if err != nil && !errors.As(err, &partial) {
				return err
			}
			if ferr := finish(); ferr != nil {
				return ferr
			}
			switch {
			case err != nil && ctx.Err() != nil:
				return ctx.Err()
			case err != nil:
				return withCode(exitError, errors.New("some objects could not be dropped (see above)"))
			}
			return failedNodes(failed, len(dsns))
		},
	}
	nodes.add(cmd)
	format.add(cmd, views.FormatText, views.FormatJSON)
	cmd.Flags().DurationVar(&retain, "retain", config.DefaultCleanupAfter, "keep renamed move sources this long after their rename")
	autoApproveFlag(cmd, &yes, "drop", "yes")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only list what would be dropped")
	cmd.Flags().BoolVar(&terminate, "terminate-orphan-walsenders", false,
		"end a walsender that holds an orphaned slot (never a subscription's or a running pgms's) so the slot can go")
	return cmd
}

func failedNodes(failed, total int) error {
	if failed == 0 {
		return nil
	}
	return withCode(exitError, fmt.Errorf("%d of %d nodes could not be read; their leftovers were not looked at", failed, total))
}
