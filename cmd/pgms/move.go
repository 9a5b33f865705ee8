package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/state"
	"github.com/pgms-dev/pgms/views"
)

func newMoveCommand() *cobra.Command {
	var (
		shard        int
		from, to     string
		activate     string
		library      string
		naming       namingFlags
		moves        moveFlags
		maxLag       string
		stateDSN     string
		lockTimeout  time.Duration
		publisherDSN string
		copyRange    string
		format       formatFlag
	)
	cmd := &cobra.Command{
		Use:   "move",
		Short: "Move a shard to another node online, with a write pause of milliseconds",
		Long:  longHelp("move"),
		Example: `  pgms move --shard=12 --from=postgres://admin@db1/app --to=postgres://admin@db2/app --activate-on-destination=yes
  pgms move --shard=12 --from=$SRC --to=$DST --activate-on-destination=no --cutover-lock-timeout=100ms`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r views.Renderer
			var stream *views.EventStream
			var err error
			if format.name() == views.FormatEvents {
				stream = views.NewEventStream(cmd.OutOrStdout(), moves.progress)
			} else if r, err = format.renderer(); err != nil {
				return err
			}
			if !cmd.Flags().Changed("shard") {
				return errors.New("--shard is required: the number of the shard to move")
			}
			if from == "" || to == "" {
				return errors.New("--from and --to are required: the DSNs of the source and destination nodes")
			}
			if activate == "" {
				return errors.New("--activate-on-destination is required: yes to switch the shard over, no to leave an inactive copy")
			}
			act, err := parseYesNo("--activate-on-destination", activate)
			if err != nil {
				return err
			}
			if err := moves.check(); err != nil {
				return err
			}
			if dsn.Name(from) == dsn.Name(to) {
				return fmt.Errorf("--from and --to name the same database (%s)", dsn.Name(from))
			}
			opts := moves.opts
			if opts.CopyRangeBytes, err = sizeFlag("--copy-range", copyRange); err != nil {
				return err
			}
			if maxLag != "" {
				if opts.MaxLag, err = parseSize("--max-lag", maxLag); err != nil {
					return err
				}
			}
			if opts.DeactivateSQL == "" {
				opts.DeactivateSQL = envOr("DEACTIVATE_SQL", "")
			}
			spec := executor.MoveSpec{
				Shard: shard, Activate: act, LibrarySchema: library, Options: opts,
				From: executor.Endpoint{DSN: from, PublisherDSN: publisherDSN},
				To:   executor.Endpoint{DSN: to},
			}
			if naming.given(cmd) {
				spec.Schema = naming.SchemaName(shard)
			}
			if list, _ := dsn.FromEnv(); len(list) > 0 {
				for _, d := range list {
					spec.Fleet = spec.Fleet.With(state.NodeSpec{Name: dsn.Name(d), DSN: d})
				}
			}
			spec.Who = runner.Invocation("move", moveArgs(spec))
			if stateDSN == "" {
				stateDSN = from
			}
			stderr := cmd.ErrOrStderr()
			progress := newProgressView(stderr, moves.progress)
			defer progress.Close()
			var reporter executor.Reporter = progress
			step := planner.Step{Kind: planner.StepMove, From: dsn.Name(from), To: dsn.Name(to), Shards: &planner.Range{From: shard, To: shard}, Activate: act}
			if spec.Schema != "" {
				step.Schemas = []string{spec.Schema}
			}
			began := time.Now()
			if stream != nil {
				stream.RunStart("move", spec.Who.Args, spec.Who.Version, spec.Who.CIRun)
				stream.StepStarted(0, step)
				reporter = executor.Reporters(reporter, stream)
			}
			res, err := runner.Move(cmd.Context(), runner.MoveRequest{
				Spec: spec, StateDSN: stateDSN, LockTimeout: lockTimeout,
				OnLockWait: func(st state.LockStatus) {
					fmt.Fprintf(stderr, "pgms: waiting up to %s for the run lock, held by %s\n", lockTimeout, views.LockHolder(st))
				},
				OnTakeover:     func(t state.Takeover) { fmt.Fprintf(stderr, "pgms: took over the run lock: %s\n", t) },
				Reporter:       reporter,
				OnJournalError: func(err error) { fmt.Fprintf(stderr, "pgms: %s\n", pgutil.Describe(err)) },
			})
			progress.Close() // the live block goes before the result is printed
			if stream != nil {
				sr := executor.StepResult{Step: step, Took: time.Since(began), Err: err, Ran: true}
				if err == nil {
					sr.Move = &res
				}
				stream.StepEnded(0, sr)
				stream.MoveEnd(views.NewMove(dsn.Name(from), dsn.Name(to), res), err, cmd.Context().Err() != nil)
			}
			switch {
			case errors.Is(err, executor.ErrInterrupted) && !errors.Is(err, state.ErrLockLost):
				return withCode(interruptedCode(), errors.New(pgutil.Describe(err)))
			case err != nil:
				return withCode(exitError, errors.New(pgutil.Describe(err)))
			}
			if stream != nil {
				if err := stream.Err(); err != nil {
					return err
				}
				return (views.Text{}).Render(stderr, views.NewMove(dsn.Name(from), dsn.Name(to), res))
			}
			return r.Render(cmd.OutOrStdout(), views.NewMove(dsn.Name(from), dsn.Name(to), res))
		},
	}
	f := cmd.Flags()
	f.IntVar(&shard, "shard", 0, "number of the shard to move (required)")
	f.StringVar(&from, "from", "", "DSN of the node the shard is on (required)")
	f.StringVar(&to, "to", "", "DSN of the node to move it to (required)")
	f.StringVar(&activate, "activate-on-destination", "", "yes: switch the shard over; no: leave the copy inactive as <schema>new (required)")
	libraryFlag(cmd, &library)
	naming.add(cmd, "shard schema name prefix; without this and --schema-digits the source's library names the shard")
	format.add(cmd, views.FormatText, views.FormatJSON, views.FormatEvents)
	moves.add(cmd)
	lockTimeoutFlag(cmd, &lockTimeout)
	f.IntVar(&moves.opts.LockAttempts, "lock-attempts", executor.DefaultLockAttempts, "cutover attempts before giving up")
	f.StringVar(&maxLag, "max-lag", units.FormatBytes(executor.DefaultMaxLag), "replication lag under which the switch-over is tried")
	f.BoolVar(&moves.opts.ReplicaIdentityFull, "replica-identity-full", false, "set REPLICA IDENTITY FULL on tables without a primary key instead of refusing")
	f.StringVar(&moves.opts.DeactivateSQL, "deactivate-sql", "", "SQL run on the source in the switch-over transaction for each table of the renamed schema, $1 being the quoted table name as a string literal ($DEACTIVATE_SQL)")
	f.StringVar(&stateDSN, "state-dsn", "", "DSN of the node keeping the journal and the run lock (default: --from)")
	f.StringVar(&publisherDSN, "publisher-dsn", "", "DSN the destination server uses to reach the source, if not --from")
	f.IntVar(&moves.opts.CopyWorkers, "copy-workers", 0, "tables copied, and indexes built, at once by the fast copy (default: this machine's CPUs, 2 to 8)")
	f.StringVar(&copyRange, "copy-range", "", "the fast copy cuts tables larger than this into page ranges copied, and committed, separately, so that an interruption loses only the ranges in flight (default 64MB; 0: never)")
	return cmd
}

// moveArgs is the command line as recorded in the journal: DSNs without
// passwords.
func moveArgs(s executor.MoveSpec) string {
	args := []string{
		fmt.Sprintf("--shard=%d", s.Shard),
		"--from=" + dsn.WithoutPassword(s.From.DSN),
		"--to=" + dsn.WithoutPassword(s.To.DSN),
		"--activate-on-destination=" + map[bool]string{true: "yes", false: "no"}[s.Activate],
	}
	return dsn.Redact(strings.Join(args, " "))
}
