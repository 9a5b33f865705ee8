package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

func init() { register(newApplyCommand) }

func newApplyCommand() *cobra.Command {
	var (
		path        string
		autoApprove bool
		parallelism int
		lockTimeout time.Duration
		maxPause    time.Duration
		progress    time.Duration
		copyMode    string
	)
	cmd := &cobra.Command{
		Use:   "apply [PLANFILE]",
		Short: "Make the cluster match the topology files",
		Long: `Apply carries out a plan: it installs the library where needed, allocates
shards (running migrate_command before activating them), activates and
deactivates, moves shards online with logical replication and a short
bounded cutover, and cleans up leftovers.

Without PLANFILE it plans first, shows the plan and asks for "yes" (or takes
--auto-approve). With PLANFILE (from pgms plan --out) it applies exactly that
plan, and refuses, naming each difference, if the topology files or the live
cluster changed since it was made.

One run at a time: apply takes the run lock on the state node (the
cluster's state_node, default the first node by name) and records every step
in the journal there (pgms status). Every step decides from what it finds,
so a killed or failed apply is resumed by applying again: interrupted moves
continue, or are undone when the files no longer ask for them.`,
		Example: `  pgms apply --config topology/
  pgms plan --out release.plan && pgms apply release.plan
  pgms apply --auto-approve --parallelism 4`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			if !slices.Contains(executor.CopyStrategies, copyMode) {
				return fmt.Errorf("--copy=%s: use %s", copyMode, strings.Join(executor.CopyStrategies, " or "))
			}
			var saved *planner.File
			if len(args) == 1 {
				f, err := planner.LoadFile(args[0])
				if err != nil {
					return err
				}
				saved = f
				if !cmd.Flags().Changed("config") {
					path = f.ConfigPath
				}
			}
			t, err := loadTopology(stderr, path)
			if err != nil {
				return err
			}
			live := refreshTopology(ctx, t, false)
			p := planner.Compute(planner.Input{Desired: t, Live: live, Now: time.Now(), LibraryVersion: sql.Version})
			if saved != nil {
				if changes := saved.Changes(t, live.Snapshot()); len(changes) > 0 {
					return staleError(args[0], changes)
				}
				p = saved.Plan
			}
			if err := (planner.Text{}).Render(out, p); err != nil {
				return err
			}
			if p.HasErrors() {
				return withCode(exitError, errReported)
			}
			if !p.HasChanges() {
				return nil
			}
			if saved == nil && !autoApprove {
				ok, err := confirm(cmd.InOrStdin(), out, "\nApply these changes? Only 'yes' is accepted: ")
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintln(out, "Apply cancelled; nothing changed.")
					return nil
				}
			}
			return runApply(ctx, out, stderr, t, p, applyOptions{
				parallelism: parallelism, progress: progress,
				move: executor.MoveOptions{LockTimeout: lockTimeout, MaxPause: maxPause, Strategy: copyMode},
			}, strings.TrimSpace("--config "+path+" "+strings.Join(args, " ")))
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&autoApprove, "auto-approve", false, "apply without asking (for pipelines)")
	cmd.Flags().IntVar(&parallelism, "parallelism", executor.DefaultParallelism, "moves running at once (each node also honours its max_concurrent_moves)")
	cmd.Flags().DurationVar(&lockTimeout, "lock-timeout", 50*time.Millisecond, "longest wait for the cutover lock per attempt (writers queue behind it)")
	cmd.Flags().DurationVar(&maxPause, "max-pause", 2*time.Second, "write-pause budget of a cutover attempt before it backs off")
	cmd.Flags().DurationVar(&progress, "progress", 5*time.Second, "interval of progress lines during moves")
	cmd.Flags().StringVar(&copyMode, "copy", "fast", "how moves copy tables: fast (parallel COPY from the slot's snapshot, indexes built after) or native (the subscription copies them)")
	return cmd
}

type applyOptions struct {
	parallelism int
	progress    time.Duration
	move        executor.MoveOptions
}

func staleError(file string, changes []string) error {
	return fmt.Errorf("the saved plan %s is stale; since it was made:\n  %s\nMake a new plan with pgms plan", file, strings.Join(changes, "\n  "))
}

// confirm asks a question and reads the answer. A closed or empty input is
// a refusal to guess: pipelines must say --auto-approve.
func confirm(in io.Reader, out io.Writer, question string) (bool, error) {
	fmt.Fprint(out, question)
	line, err := bufio.NewReader(in).ReadString('\n')
	answer := strings.TrimSpace(line)
	if answer == "" && err != nil {
		return false, errors.New("no answer on standard input; pass --auto-approve to apply without asking")
	}
	return answer == "yes", nil
}

// runApply takes the run lock, makes sure the plan still holds under it,
// and carries it out.
func runApply(ctx context.Context, out, stderr io.Writer, t *config.Topology, p *planner.Plan, opts applyOptions, command string) error {
	sn := stateNodeOf(t)
	stateNode := sn.Name
	// The journal lives in the library schema: a fresh state node gets its
	// install step now, before the lock (installing is idempotent and
	// serialised on the node).
	for _, s := range p.Steps {
		if s.Kind == planner.StepInstall && s.Node == stateNode {
			n, err := connectNode(ctx, sn)
			if err != nil {
				return err
			}
			naming := t.Cluster.Naming()
			_, err = sql.Install(ctx, n.Conn, sql.Options{Schema: t.Cluster.LibrarySchema, Naming: &naming})
			n.Close()
			if err != nil {
				return fmt.Errorf("install the library on state node %s: %s", stateNode, describe(err))
			}
		}
	}
	journal, err := state.OpenJournal(ctx, sn.DSN, t.Cluster.LibrarySchema)
	if err != nil {
		return err
	}
	defer journal.Close(context.WithoutCancel(ctx))
	inv := state.ThisProcess("apply", command)
	if stale, err := journal.Lock(ctx, inv); err != nil {
		return err
	} else if stale != nil {
		fmt.Fprintf(stderr, "Note: the previous run (%s) ended without releasing the lock; continuing where it stopped.\n", stale)
	}

	// Under the lock nothing else changes the cluster: the plan must still
	// be what the state asks for, or it was made against a state that moved.
	live := refreshTopology(ctx, t, false)
	fresh := planner.Compute(planner.Input{Desired: t, Live: live, Now: time.Now(), LibraryVersion: sql.Version})
	if fresh.HasErrors() {
		(planner.Text{}).Render(stderr, fresh)
		return withCode(exitError, errors.New("the cluster changed since the plan was made and can no longer be planned"))
	}
	if diff := stepDiff(p, fresh, stateNode); len(diff) > 0 {
		return fmt.Errorf("the cluster changed since the plan was made; steps that differ now:\n  %s\nPlan again", strings.Join(diff, "\n  "))
	}
	if _, err := journal.BeginRun(ctx, inv); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nApplying %d steps (journal and lock on %s).\n", len(fresh.Steps), journal.Node())
	begin := time.Now()
	res, applyErr := executor.Apply(ctx, fresh, executor.ApplyEnv{
		Topology: t, Live: live, Journal: journal, Parallelism: opts.parallelism, Move: opts.move,
		Log: out, Output: stderr, Reporter: executor.NewLineReporter(stderr, opts.progress),
	})
	outcome := state.OutcomeSucceeded
	switch {
	case applyErr != nil && ctx.Err() != nil:
		outcome = state.OutcomeInterrupted
	case applyErr != nil:
		outcome = state.OutcomeFailed
	}
	journal.EndRun(context.WithoutCancel(ctx), outcome, applyErr) //nolint:errcheck // reported below if it matters
	summarizeApply(out, res, time.Since(begin))
	if applyErr != nil {
		if ctx.Err() != nil {
			return withCode(exitInterrupted, fmt.Errorf("apply interrupted at a safe point; apply again to continue: %s", describe(applyErr)))
		}
		return fmt.Errorf("apply failed; fix the cause and apply again (it continues where it stopped): %s", describe(applyErr))
	}
	return nil
}

// stepDiff compares what was approved with what the state asks for now,
// step by step, ignoring the state node's install that runApply did first.
func stepDiff(approved, fresh *planner.Plan, stateNode string) []string {
	key := func(s planner.Step) string {
		rng := ""
		if s.Shards != nil {
			rng = s.Shards.String()
		}
		return fmt.Sprintf("%s %s%s→%s %s %s", s.Kind, s.Node, s.From, s.To, rng, s.Object)
	}
	set := func(p *planner.Plan) map[string]planner.Step {
		m := map[string]planner.Step{}
		for _, s := range p.Steps {
			if s.Kind == planner.StepInstall && s.Node == stateNode {
				continue
			}
			m[key(s)] = s
		}
		return m
	}
	a, f := set(approved), set(fresh)
	var diff []string
	for k, s := range a {
		if _, ok := f[k]; !ok {
			diff = append(diff, "no longer needed: "+planner.Headline(s))
		}
	}
	for k, s := range f {
		if _, ok := a[k]; !ok {
			diff = append(diff, "now needed: "+planner.Headline(s))
		}
	}
	sort.Strings(diff)
	return diff
}

func summarizeApply(w io.Writer, res executor.ApplyResult, took time.Duration) {
	done, failed, notRun := 0, 0, 0
	for _, s := range res.Steps {
		switch {
		case !s.Ran:
			notRun++
		case s.Err != nil:
			failed++
		default:
			done++
		}
	}
	fmt.Fprintf(w, "\nApply finished in %s: %d done", took.Round(time.Millisecond), done)
	if failed > 0 {
		fmt.Fprintf(w, ", %d failed", failed)
	}
	if notRun > 0 {
		fmt.Fprintf(w, ", %d not started", notRun)
	}
	fmt.Fprintln(w, ".")
	moves := res.Moves()
	if len(moves) == 0 {
		return
	}
	pauses := make([]time.Duration, 0, len(moves))
	var bytes int64
	for _, m := range moves {
		if m.Pause > 0 {
			pauses = append(pauses, m.Pause)
		}
		bytes += m.Bytes
	}
	sort.Slice(pauses, func(i, j int) bool { return pauses[i] < pauses[j] })
	if len(pauses) > 0 {
		fmt.Fprintf(w, "Moves: %d, write pause median %s, max %s.\n", len(moves),
			pauses[len(pauses)/2].Round(10*time.Microsecond), pauses[len(pauses)-1].Round(10*time.Microsecond))
	}
}

// connectNode opens a connection to a topology node named as in the files.
func connectNode(ctx context.Context, n *config.Node) (*pgutil.Node, error) {
	node, err := pgutil.Connect(ctx, n.DSN)
	if err != nil {
		return nil, err
	}
	node.Name = n.Name
	return node, nil
}
