package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

func init() { register(newMoveCommand) }

func newMoveCommand() *cobra.Command {
	var (
		shard           int
		from, to        string
		activate        string
		library         string
		prefix          string
		digits          int
		opts            executor.MoveOptions
		maxLag          string
		copyRange       string
		keepCopy        string
		stateDSN        string
		runLockWait     time.Duration
		progressEvery   time.Duration
		publisherDSN    string
		deactivateSQLev = envOr("DEACTIVATE_SQL", "")
	)
	cmd := &cobra.Command{
		Use:   "move",
		Short: "Move a shard to another node online, with a write pause of milliseconds",
		Long: `Move copies a shard's schema from one node to another with logical
replication while the application keeps writing, then switches it over:

  1. preflight: both nodes primaries, wal_level=logical on the source, free
     replication slots, a primary key (or replica identity) on every table,
     the library installed on both;
  2. the schema definition is copied with pg_dump --schema-only (with
     --copy=fast, the default, without indexes, constraints and triggers:
     those follow the data);
  3. a publication and a slot on the source; the tables are copied from the
     slot's exported snapshot in parallel COPY streams, each table's indexes
     and constraints built once its rows are in, and a subscription on the
     destination streams the changes made since the snapshot; with
     --copy=native the subscription copies the tables itself, into their
     indexes;
  4. once the lag is small and a probe shows the stream healthy, the
     source's tables are locked (each attempt bounded by
     --cutover-lock-timeout, retried with backoff), the destination
     confirms it has every change, the source schema is deactivated and
     renamed to <schema>old<UTC time>, and the shard is activated on the
     destination with its sequences at the source's exact values;
  5. subscription, slot and publication are dropped.

Writes to the shard pause only during step 4 (typically a few milliseconds);
writers blocked there get "relation does not exist" and, finding the shard
through microsharding_list_active_shards(), go to the destination.

A failure or Ctrl-C before the switch undoes everything the move created
and leaves the source as it was. After the switch committed, running the
same command again finishes the move; a crash anywhere is handled the same
way: run the same command again.

With --activate-on-destination=no the copy is left inactive on the
destination as <schema>new and the source keeps serving (a rehearsal).

The shard is claimed on both nodes for the whole move: any other pgms run
that would touch it (apply, move, cleanup) is refused, naming this one. The
run lock of the state node (default: the source) is taken too, and the run
and its steps are recorded there (see pgms status); --lock-timeout waits for
a run lock another run holds.`,
		Example: `  pgms move --shard=12 --from=postgres://admin@db1/app --to=postgres://admin@db2/app --activate-on-destination=yes
  pgms move --shard=12 --from=$SRC --to=$DST --activate-on-destination=no --lock-timeout=100ms`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			if !slices.Contains(executor.CopyStrategies, opts.Strategy) {
				return fmt.Errorf("--copy=%s: use %s", opts.Strategy, strings.Join(executor.CopyStrategies, " or "))
			}
			if err := executor.CheckVerify(opts.Verify); err != nil {
				return fmt.Errorf("--verify: %w", err)
			}
			if dsn.Name(from) == dsn.Name(to) {
				return fmt.Errorf("--from and --to name the same database (%s)", dsn.Name(from))
			}
			if opts.CopyRangeBytes, err = sizeFlag("--copy-range", copyRange); err != nil {
				return err
			}
			if opts.KeepCopyBytes, err = sizeFlag("--keep-copy", keepCopy); err != nil {
				return err
			}
			if maxLag != "" {
				if opts.MaxLag, err = units.ParseBytes(maxLag); err != nil {
					return fmt.Errorf("--max-lag=%s: %w", maxLag, err)
				}
			}
			if opts.DeactivateSQL == "" {
				opts.DeactivateSQL = deactivateSQLev
			}
			spec := executor.MoveSpec{
				Shard: shard, Activate: act, LibrarySchema: library, Options: opts,
				From: executor.Endpoint{DSN: from, PublisherDSN: publisherDSN},
				To:   executor.Endpoint{DSN: to},
			}
			if cmd.Flags().Changed("schema-prefix") || cmd.Flags().Changed("schema-digits") {
				spec.Schema = sql.Naming{Prefix: prefix, Digits: digits}.SchemaName(shard)
			}
			if err := executor.CheckCutoverLockTimeout(opts.LockTimeout); err != nil {
				return fmt.Errorf("--cutover-lock-timeout: %w", err)
			}
			spec.Options = opts
			if stateDSN == "" {
				stateDSN = from
			}
			if list, _ := dsn.FromEnv(); len(list) > 0 {
				for _, d := range list {
					spec.Fleet = spec.Fleet.With(state.NodeSpec{Name: dsn.Name(d), DSN: d})
				}
			}
			return runMove(cmd, spec, stateDSN, runLockWait, progressEvery)
		},
	}
	f := cmd.Flags()
	f.IntVar(&shard, "shard", 0, "number of the shard to move (required)")
	f.StringVar(&from, "from", "", "DSN of the node the shard is on (required)")
	f.StringVar(&to, "to", "", "DSN of the node to move it to (required)")
	f.StringVar(&activate, "activate-on-destination", "", "yes: switch the shard over; no: leave the copy inactive as <schema>new (required)")
	f.StringVar(&library, "schema", envOr("PGMS_SCHEMA", sql.DefaultSchema), "schema of the microsharding library ($PGMS_SCHEMA)")
	f.StringVar(&prefix, "schema-prefix", sql.DefaultNaming.Prefix, "shard schema name prefix; without this and --schema-digits the source's library names the shard")
	f.IntVar(&digits, "schema-digits", sql.DefaultNaming.Digits, "digits of the zero-padded shard number")
	f.DurationVar(&opts.LockTimeout, "cutover-lock-timeout", executor.DefaultCutoverLockTimeout, fmt.Sprintf("longest wait for the source's table locks per cutover attempt, at most %v: writers queue behind a waiting lock for up to this long", executor.MaxCutoverLockTimeout))
	f.DurationVar(&runLockWait, "lock-timeout", 0, "how long to wait for the run lock when another run holds it (0: fail at once, naming the holder)")
	f.DurationVar(&opts.MaxPause, "max-pause", executor.DefaultMaxPause, "write-pause budget: give up an attempt if the destination has not caught up this long after the lock")
	f.IntVar(&opts.LockAttempts, "lock-attempts", executor.DefaultLockAttempts, "cutover attempts before giving up")
	f.StringVar(&maxLag, "max-lag", "1MB", "replication lag under which the switch-over is tried")
	f.BoolVar(&opts.ReplicaIdentityFull, "replica-identity-full", false, "set REPLICA IDENTITY FULL on tables without a primary key instead of refusing")
	f.StringVar(&opts.DeactivateSQL, "deactivate-sql", "", "SQL run on the source in the switch-over transaction for each table of the renamed schema, $1 being the quoted table name as a string literal ($DEACTIVATE_SQL)")
	f.StringVar(&stateDSN, "state-dsn", "", "DSN of the node keeping the journal and the run lock (default: --from)")
	f.StringVar(&publisherDSN, "publisher-dsn", "", "DSN the destination server uses to reach the source, if not --from")
	f.BoolVar(&opts.KeepOnInterrupt, "keep-on-interrupt", false, "on Ctrl-C before the switch-over, keep the copy and replication objects so that running the command again continues")
	f.DurationVar(&progressEvery, "progress-every", 5*time.Second, "how often progress lines are printed during the copy")
	f.StringVar(&opts.Strategy, "copy", "fast", "how the tables are copied: fast (parallel COPY from the slot's snapshot, indexes built after the data) or native (the subscription copies them); fast falls back to native, saying why, where it cannot run")
	f.IntVar(&opts.CopyWorkers, "copy-workers", 0, "tables copied, and indexes built, at once by the fast copy (default: this machine's CPUs, 2 to 8)")
	f.StringVar(&opts.Verify, "verify", executor.DefaultVerify, verifyFlagHelp)
	f.StringVar(&copyRange, "copy-range", "", "the fast copy cuts tables larger than this into page ranges copied, and committed, separately, so that an interruption loses only the ranges in flight (default 64MB; 0: never)")
	f.StringVar(&keepCopy, "keep-copy", "", keepCopyHelp)
	return cmd
}

// runMove takes the run lock, records the run and moves.
func runMove(cmd *cobra.Command, spec executor.MoveSpec, stateDSN string, lockWait, every time.Duration) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	inv := invocation("move", moveArgs(spec))
	spec.Who = inv
	lock, takeover, err := state.AcquireRunLock(ctx, stateDSN, spec.LibrarySchema, inv, state.LockOptions{Wait: lockWait,
		OnWait: func(st state.LockStatus) {
			fmt.Fprintf(stderr, "pgms: waiting up to %s for the run lock, held by %s\n", lockWait, lockHolderText(st))
		}})
	if err != nil {
		return err
	}
	defer lock.Release(context.WithoutCancel(ctx)) //nolint:errcheck // the session end releases it anyway
	if takeover != nil {
		fmt.Fprintf(stderr, "pgms: took over the run lock: %s\n", takeover)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-lock.Lost():
			cancel(lock.Err())
		case <-ctx.Done():
		}
	}()
	journal, err := state.OpenJournal(ctx, stateDSN, spec.LibrarySchema)
	if err != nil {
		return err
	}
	defer journal.Close(context.WithoutCancel(ctx))
	runID, err := journal.BeginRun(ctx, inv)
	if err != nil {
		return err
	}
	lock.SetRun(ctx, runID)
	res, err := executor.Move(ctx, spec, journal, executor.NewLineReporter(stderr, every))
	outcome := state.OutcomeSucceeded
	code := exitError
	switch {
	case errors.Is(err, executor.ErrInterrupted) && errors.Is(context.Cause(ctx), state.ErrLockLost):
		outcome = state.OutcomeInterrupted
		err = fmt.Errorf("%w: %w", context.Cause(ctx), err)
	case errors.Is(err, executor.ErrInterrupted):
		outcome, code = state.OutcomeInterrupted, interruptedCode()
	case err != nil:
		outcome = state.OutcomeFailed
	}
	if jerr := journal.EndRun(context.WithoutCancel(ctx), outcome, err); jerr != nil {
		fmt.Fprintf(stderr, "pgms: %s\n", describe(jerr))
	}
	if err != nil {
		return withCode(code, errors.New(describe(err)))
	}
	printMoveResult(cmd.OutOrStdout(), spec, res)
	return nil
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

func printMoveResult(w io.Writer, spec executor.MoveSpec, r executor.MoveResult) {
	from, to := dsn.Name(spec.From.DSN), dsn.Name(spec.To.DSN)
	switch {
	case r.AlreadyDone:
		fmt.Fprintf(w, "%s is already active on %s; nothing to do\n", r.Schema, to)
		return
	case r.NewSchema != "":
		fmt.Fprintf(w, "copied %s from %s to %s as %s (inactive) in %s\n", r.Schema, from, to, r.NewSchema, r.Total.Round(time.Millisecond))
	case r.Resumed && r.Pause == 0:
		fmt.Fprintf(w, "finished the move of %s from %s to %s (source renamed to %s)\n", r.Schema, from, to, r.OldSchema)
		return
	default:
		fmt.Fprintf(w, "moved %s from %s to %s in %s\n", r.Schema, from, to, r.Total.Round(time.Millisecond))
	}
	if r.Backfill > 0 {
		rate := ""
		if s := r.Backfill.Seconds(); s > 0 {
			rate = fmt.Sprintf(", %s/s", units.FormatBytes(float64(r.Bytes)/s))
		}
		fmt.Fprintf(w, "  copied %s, %s, %d rows in %s%s\n", plural(r.Tables, "table"), units.FormatBytes(float64(r.Bytes)), r.Rows, r.Backfill.Round(time.Millisecond), rate)
	}
	if r.Resume != nil {
		fmt.Fprintf(w, "  %s\n", r.Resume)
	}
	if r.Verify != nil {
		fmt.Fprintf(w, "  %s\n", r.Verify)
	}
	if r.Pause > 0 {
		fmt.Fprintf(w, "  writers blocked at most %s (lock wait and pause of any cutover attempt); write pause %s (lock to commit %s), %s\n",
			fmtDuration(r.Blocked), fmtDuration(r.Pause), fmtDuration(r.Core), retries(r.Retries))
		if r.Outage > 0 {
			fmt.Fprintf(w, "  the shard was served by no node for %s while the activation was retried\n", r.Outage.Round(time.Millisecond))
		}
		fmt.Fprintf(w, "  source schema renamed to %s on %s; drop it with pgms cleanup when no longer needed\n", r.OldSchema, from)
	}
	if r.NewSchema != "" {
		fmt.Fprintf(w, "\nATTENTION: the shard was copied but NOT activated on the destination: the data still lives on %s and is served from there. Run the move with --activate-on-destination=yes to switch it over.\n", from)
	}
}

func retries(n int) string {
	if n == 1 {
		return "1 lock retry"
	}
	return fmt.Sprintf("%d lock retries", n)
}

func fmtDuration(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
