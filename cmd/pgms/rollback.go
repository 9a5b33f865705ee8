package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
	"github.com/pgms-dev/pgms/views"
)

func newRollbackCommand() *cobra.Command {
	var (
		shard       int
		closeIt     bool
		nodes       stateFlags
		naming      namingFlags
		lockTimeout time.Duration
		opts        executor.MoveOptions
		format      formatFlag
	)
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Switch a moved shard back to its old home during its rollback window",
		Long:  longHelp("rollback"),
		Example: `  pgms rollback --config topology/ --shard=12
  pgms rollback --dsn $A --dsn $B --shard=12
  pgms rollback --config topology/ --shard=12 --close`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := format.renderer()
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("shard") {
				return errors.New("--shard is required: the number of the shard to roll back")
			}
			if err := executor.CheckCutoverLockTimeout(opts.LockTimeout); err != nil {
				return fmt.Errorf("--cutover-lock-timeout: %w", err)
			}
			ctx, stderr := cmd.Context(), cmd.ErrOrStderr()
			var specs []state.NodeSpec
			var live *state.Cluster
			stateDSN := ""
			library := nodes.schema
			if nodes.config != "" {
				t, err := loadTopology(stderr, nodes.config)
				if err != nil {
					return err
				}
				live = runner.Refresh(ctx, t, false)
				for _, n := range t.Nodes {
					specs = append(specs, state.NodeSpec{Name: n.Name, DSN: n.DSN})
				}
				for _, n := range live.Nodes {
					for _, reg := range n.Registry {
						specs = append(specs, state.NodeSpec{Name: reg.Name, DSN: reg.DSN})
					}
				}
				sn, _ := t.Node(t.Cluster.StateNode)
				stateDSN, library = sn.DSN, t.Cluster.LibrarySchema
				opts.DeactivateSQL = t.Cluster.DeactivateSQL
			} else {
				dsns, err := nodes.resolve()
				if err != nil {
					return err
				}
				specs = specsOf(dsns)
				n := naming.Naming
				if !naming.given(cmd) {
					n = sql.DefaultNaming
				}
				live = state.Refresh(ctx, specs, state.RefreshOptions{LibrarySchema: library, Naming: n})
				opts.DeactivateSQL = envOr("DEACTIVATE_SQL", "")
			}
			w, err := runner.FindWindow(live, specs, shard)
			if err != nil {
				return err
			}
			args := fmt.Sprintf("--shard=%d", shard)
			if closeIt {
				args += " --close"
			}
			progress := newProgressView(stderr, executor.DefaultProgressInterval)
			defer progress.Close()
			req := runner.MoveRequest{
				Spec:     executor.MoveSpec{LibrarySchema: library, Options: opts, Who: runner.Invocation("rollback", dsn.Redact(args))},
				StateDSN: stateDSN, LockTimeout: lockTimeout,
				OnLockWait: func(st state.LockStatus) {
					fmt.Fprintf(stderr, "pgms: waiting up to %s for the run lock, held by %s\n", lockTimeout, views.LockHolder(st))
				},
				OnTakeover:     func(t state.Takeover) { fmt.Fprintf(stderr, "pgms: took over the run lock: %s\n", t) },
				Reporter:       progress,
				OnJournalError: func(err error) { fmt.Fprintf(stderr, "pgms: %s\n", pgutil.Describe(err)) },
			}
			res, renamed, err := runner.Rollback(ctx, w, closeIt, req)
			progress.Close() // the live block goes before the result is printed
			switch {
			case errors.Is(err, executor.ErrInterrupted) && !errors.Is(err, state.ErrLockLost):
				return withCode(interruptedCode(), errors.New(pgutil.Describe(err)))
			case err != nil:
				return withCode(exitError, errors.New(pgutil.Describe(err)))
			}
			report := views.NewRollback(shard, w.Schema, w.Home.Name, w.Old.Name, res)
			if closeIt {
				report = views.NewWindowClosed(shard, w.Schema, w.Home.Name, w.Old.Name, renamed)
			}
			return r.Render(cmd.OutOrStdout(), report)
		},
	}
	f := cmd.Flags()
	f.IntVar(&shard, "shard", 0, "number of the shard to roll back (required)")
	f.BoolVar(&closeIt, "close", false, "close the rollback window now instead: drop the stream back and rename the old home's copy; the shard stays where it is")
	nodes.add(cmd)
	naming.add(cmd, "shard schema name prefix of nodes given by --dsn")
	format.add(cmd, views.FormatText, views.FormatJSON)
	lockTimeoutFlag(cmd, &lockTimeout)
	f.DurationVar(&opts.LockTimeout, "cutover-lock-timeout", executor.DefaultCutoverLockTimeout, fmt.Sprintf("longest wait for the serving node's table locks per cutover attempt, at most %v: writers queue behind a waiting lock for up to this long", executor.MaxCutoverLockTimeout))
	f.DurationVar(&opts.MaxPause, "max-pause", executor.DefaultMaxPause, "write-pause budget: give up an attempt if the old home has not caught up this long after the lock")
	return cmd
}
