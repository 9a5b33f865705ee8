package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/state"
	"github.com/pgms-dev/pgms/views"
)

func newApplyCommand() *cobra.Command {
	var (
		path        string
		autoApprove bool
		parallelism int
		lockTimeout time.Duration
		moves       moveFlags
		format      formatFlag
	)
	cmd := &cobra.Command{
		Use:   "apply [PLANFILE]",
		Short: "Make the cluster match the topology files",
		Long:  longHelp("apply"),
		Example: `  pgms apply --config topology/
  pgms plan --out release.plan && pgms apply release.plan
  pgms apply --auto-approve --parallelism 4 --lock-timeout 10m`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := format.renderer()
			if err != nil {
				return err
			}
			if err := moves.check(); err != nil {
				return err
			}
			ctx := cmd.Context()
			out, stderr, log := cmd.OutOrStdout(), cmd.ErrOrStderr(), textOut(cmd, r)
			req := runner.ApplyRequest{
				LockTimeout: lockTimeout,
				OnLockWait: func(st state.LockStatus) {
					fmt.Fprintf(stderr, "Waiting up to %s for the run lock, held by %s.\n", lockTimeout, views.LockHolder(st))
				},
				OnTakeover: func(t state.Takeover) { fmt.Fprintf(stderr, "Note: took over the run lock: %s.\n", t) },
				Show:       func(p *planner.Plan) error { return (planner.Text{}).Render(log, p) },
				Started: func(stateNode string, p *planner.Plan) {
					fmt.Fprintf(log, "\nApplying %d steps (journal and lock on %s).\n", len(p.Steps), stateNode)
				},
				Parallelism: parallelism, Move: moves.opts,
				Log: log, Output: stderr, Reporter: executor.NewLineReporter(stderr, moves.progress),
			}
			if len(args) == 1 {
				f, err := planner.LoadFile(args[0])
				if err != nil {
					return err
				}
				req.Saved, req.SavedPath = f, args[0]
				if !cmd.Flags().Changed("config") {
					path = f.ConfigPath
				}
			}
			if req.Topology, err = loadTopology(stderr, path); err != nil {
				return err
			}
			req.Invocation = runner.Invocation("apply", strings.TrimSpace("--config "+path+" "+strings.Join(args, " ")))
			if !autoApprove {
				q := question{text: "\nApply these changes?", skip: "pass --auto-approve to apply without asking"}
				req.Confirm = func(*planner.Plan) (bool, error) { return q.ask(cmd.InOrStdin(), log) }
			}
			res, err := runner.Apply(ctx, req)
			report := views.NewApply(res, err, ctx.Err() != nil)
			if rerr := r.Render(out, report); rerr != nil {
				return rerr
			}
			return applyError(ctx, res, err)
		},
	}
	configFlag(cmd, &path)
	format.add(cmd, views.FormatText, views.FormatJSON)
	autoApproveFlag(cmd, &autoApprove, "apply", "")
	cmd.Flags().IntVar(&parallelism, "parallelism", executor.DefaultParallelism, "moves running at once (each node also honours its max_concurrent_moves)")
	lockTimeoutFlag(cmd, &lockTimeout)
	moves.add(cmd)
	return cmd
}

// applyError is the error apply ends with: what to do next, and the exit
// code.
func applyError(ctx context.Context, res runner.ApplyOutcome, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, runner.ErrDeclined), errors.Is(err, runner.ErrPlanErrors):
		return withCode(exitError, errReported)
	case !res.Ran:
		return err
	case errors.Is(err, state.ErrLockLost):
		return fmt.Errorf("apply stopped at a safe point because it lost its run lock; apply again to continue: %s", pgutil.Describe(err))
	case ctx.Err() != nil:
		return withCode(interruptedCode(), fmt.Errorf("apply interrupted at a safe point; apply again to continue: %s", pgutil.Describe(err)))
	}
	return fmt.Errorf("apply failed; fix the cause and apply again (it continues where it stopped): %s", pgutil.Describe(err))
}
