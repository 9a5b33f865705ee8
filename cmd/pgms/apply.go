package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/state"
)

func init() { register(newApplyCommand) }

func newApplyCommand() *cobra.Command {
	var (
		path        string
		autoApprove bool
		parallelism int
		lockTimeout time.Duration
		cutoverWait time.Duration
		maxPause    time.Duration
		progress    time.Duration
		copyMode    string
		verify      string
		keepCopy    string
		keepAll     bool
	)
	cmd := &cobra.Command{
		Use:   "apply [PLANFILE]",
		Short: "Make the cluster match the topology files",
		Long: `Apply carries out a plan: it installs the library where needed, allocates
shards (running migrate_command before activating them), activates and
deactivates, moves shards online with logical replication and a short
bounded cutover, cleans up leftovers, and retires nodes.

Apply first takes the run lock on the state node (the cluster's state_node,
default the first node by name): one run at a time. A lock another run holds
fails at once naming that run, or is waited for with --lock-timeout. Under
the lock apply reads the cluster and plans; without PLANFILE it shows the
plan and asks for "yes" (or takes --auto-approve). With PLANFILE (from pgms
plan --out) it applies exactly that plan, and refuses, naming each
difference, if the topology files or the live cluster changed since.

Every step is recorded in the journal on the state node (pgms status) and
decides from what it finds, so a killed or failed apply is resumed by
applying again: interrupted moves continue, or are undone when the files no
longer ask for them. Each shard being worked on is also claimed on every
node involved, so no other pgms (apply, move, cleanup) touches it meanwhile.`,
		Example: `  pgms apply --config topology/
  pgms plan --out release.plan && pgms apply release.plan
  pgms apply --auto-approve --parallelism 4 --lock-timeout 10m`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			if !slices.Contains(executor.CopyStrategies, copyMode) {
				return fmt.Errorf("--copy=%s: use %s", copyMode, strings.Join(executor.CopyStrategies, " or "))
			}
			if err := executor.CheckCutoverLockTimeout(cutoverWait); err != nil {
				return fmt.Errorf("--cutover-lock-timeout: %w", err)
			}
			if err := executor.CheckVerify(verify); err != nil {
				return fmt.Errorf("--verify: %w", err)
			}
			keepBytes, err := sizeFlag("--keep-copy", keepCopy)
			if err != nil {
				return err
			}
			req := runner.ApplyRequest{
				LockTimeout: lockTimeout,
				OnLockWait: func(st state.LockStatus) {
					fmt.Fprintf(stderr, "Waiting up to %s for the run lock, held by %s.\n", lockTimeout, lockHolderText(st))
				},
				OnTakeover: func(t state.Takeover) {
					fmt.Fprintf(stderr, "Note: took over the run lock: %s.\n", t)
				},
				Show: func(p *planner.Plan) error { return (planner.Text{}).Render(out, p) },
				Started: func(stateNode string, p *planner.Plan) {
					fmt.Fprintf(out, "\nApplying %d steps (journal and lock on %s).\n", len(p.Steps), stateNode)
				},
				Parallelism: parallelism,
				Move:        executor.MoveOptions{LockTimeout: cutoverWait, MaxPause: maxPause, Strategy: copyMode, Verify: verify, KeepCopyBytes: keepBytes, KeepOnInterrupt: keepAll},
				Log:         out, Output: stderr, Reporter: executor.NewLineReporter(stderr, progress),
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
			t, err := loadTopology(stderr, path)
			if err != nil {
				return err
			}
			req.Topology = t
			req.Invocation = invocation("apply", strings.TrimSpace("--config "+path+" "+strings.Join(args, " ")))
			if !autoApprove {
				req.Confirm = func(*planner.Plan) (bool, error) {
					return confirm(cmd.InOrStdin(), out, "\nApply these changes? Only 'yes' is accepted: ")
				}
			}
			res, err := runner.Apply(ctx, req)
			if res.Ran {
				summarizeApply(out, res.Result, res.Took)
			}
			switch {
			case err == nil:
				return nil
			case errors.Is(err, runner.ErrDeclined):
				fmt.Fprintln(out, "Apply cancelled; nothing changed.")
				return withCode(exitError, errReported)
			case errors.Is(err, runner.ErrPlanErrors):
				return withCode(exitError, errReported)
			case !res.Ran:
				return err
			case errors.Is(err, state.ErrLockLost):
				return fmt.Errorf("apply stopped at a safe point because it lost its run lock; apply again to continue: %s", describe(err))
			case ctx.Err() != nil:
				return withCode(interruptedCode(), fmt.Errorf("apply interrupted at a safe point; apply again to continue: %s", describe(err)))
			}
			return fmt.Errorf("apply failed; fix the cause and apply again (it continues where it stopped): %s", describe(err))
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&autoApprove, "auto-approve", false, "apply without asking (for pipelines)")
	cmd.Flags().IntVar(&parallelism, "parallelism", executor.DefaultParallelism, "moves running at once (each node also honours its max_concurrent_moves)")
	cmd.Flags().DurationVar(&lockTimeout, "lock-timeout", 0, "how long to wait for the run lock when another run holds it (0: fail at once, naming the holder)")
	cmd.Flags().DurationVar(&cutoverWait, "cutover-lock-timeout", executor.DefaultCutoverLockTimeout, fmt.Sprintf("longest wait for a move's cutover lock per attempt, at most %v: writers to the shard queue behind a waiting lock, so this wait blocks them too", executor.MaxCutoverLockTimeout))
	cmd.Flags().DurationVar(&maxPause, "max-pause", executor.DefaultMaxPause, "write-pause budget of a cutover attempt before it backs off")
	cmd.Flags().DurationVar(&progress, "progress", 5*time.Second, "interval of progress lines during moves")
	cmd.Flags().StringVar(&copyMode, "copy", "fast", "how moves copy tables: fast (parallel COPY from the slot's snapshot, indexes built after) or native (the subscription copies them)")
	cmd.Flags().StringVar(&verify, "verify", "", verifyFlagHelp+" (default: the files' verify, else "+executor.DefaultVerify+")")
	cmd.Flags().StringVar(&keepCopy, "keep-copy", "", keepCopyHelp)
	cmd.Flags().BoolVar(&keepAll, "keep-on-interrupt", false, "on Ctrl-C, keep every unfinished move's copy and replication objects: a native copy goes on on the servers, and apply continues it later")
	return cmd
}

// lockHolderText names the run that holds the run lock.
func lockHolderText(st state.LockStatus) string {
	if st.Holder == nil {
		return fmt.Sprintf("a session (backend pid %d) without a holder row", st.HolderPID)
	}
	s := st.Holder.String()
	for _, step := range st.Steps {
		shard := ""
		if step.Shard != nil {
			shard = fmt.Sprintf(" shard %d", *step.Shard)
		}
		s += fmt.Sprintf("; running %s%s (%s)", step.Kind, shard, step.Phase)
	}
	return s
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
	var pauses []time.Duration
	var blocked time.Duration
	for _, m := range moves {
		if m.Pause > 0 {
			pauses = append(pauses, m.Pause)
		}
		blocked = max(blocked, m.Blocked)
	}
	sort.Slice(pauses, func(i, j int) bool { return pauses[i] < pauses[j] })
	if len(pauses) > 0 {
		fmt.Fprintf(w, "Moves: %d; writers blocked at most %s (lock wait and pause of any cutover attempt); write pause median %s, max %s.\n", len(moves),
			blocked.Round(10*time.Microsecond), pauses[len(pauses)/2].Round(10*time.Microsecond), pauses[len(pauses)-1].Round(10*time.Microsecond))
	}
}
