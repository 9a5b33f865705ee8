package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/state"
)

func init() { register(newCleanupCommand) }

// stdinIsTerminal says whether the confirmation prompt can be answered;
// tests replace it.
var stdinIsTerminal = func(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func newCleanupCommand() *cobra.Command {
	var (
		nodes     nodeFlags
		retain    time.Duration
		yes       bool
		dryRun    bool
		terminate bool
	)
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Drop what interrupted and finished moves left behind",
		Long: `Cleanup finds, on every node, the leftovers of moves made by pgms or by
pg-microsharding, recognised by their names only, and drops those that are
safe to drop:

  - renamed move sources (sh0001old20260102030405, sh0001old_1700000000, …)
    once the retention has passed; their names say when they were renamed
  - copies never activated (sh0001new)
  - subscriptions of moves that cannot be running: disabled, detached from
    their slot, or streaming into a shard that is active or gone
  - replication slots no subscription uses any more: an orphaned slot keeps
    WAL from being recycled until the disk fills; the listing shows how much
  - publications whose move has no slot or subscription left

Objects of a move that may still be running are kept, and so is everything
whose name no move gives. A slot held by a walsender that is neither a
subscription's nor a running pgms's is kept unless
--terminate-orphan-walsenders ends that walsender first. While a node cannot
be read, slots and publications are kept: its subscriptions may use them.

Cleanup lists what it would drop, with sizes and retained WAL, and asks for
confirmation ("yes") on a terminal; --yes skips the question for pipelines,
--dry-run only lists.`,
		Example: `  PGDSNS=postgres://admin@db1/app,postgres://admin@db2/app pgms cleanup
  pgms cleanup --dsn postgres://admin@db1/app --retain 72h --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if retain < 0 {
				return fmt.Errorf("--retain=%s: a retention cannot be negative", units.FormatDuration(retain))
			}
			dsns, err := nodes.resolve()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			specs := make([]state.NodeSpec, len(dsns))
			byName := map[string]string{}
			for i, d := range dsns {
				specs[i] = state.NodeSpec{Name: dsn.Name(d), DSN: d}
				byName[specs[i].Name] = d
			}
			live := state.Refresh(ctx, specs, state.RefreshOptions{LibrarySchema: nodes.schema})
			failed := 0
			kept := live.Nodes[:0]
			for _, n := range live.Nodes {
				switch {
				case n.Err != nil:
					fmt.Fprintf(errOut, "pgms: %v\n", n.Err)
					failed++
				case n.Standby:
					fmt.Fprintf(errOut, "pgms: node %s is a standby; skipped\n", n.Name)
					continue
				}
				kept = append(kept, n)
			}
			live.Nodes = kept

			policy := state.CleanupPolicy{Now: time.Now(), RetainOld: retain, TerminateOrphanWalsenders: terminate}
			verdicts := live.Triage(policy)
			count := renderCleanup(out, live, verdicts, retain)
			switch {
			case count == 0:
				fmt.Fprintln(out, "Nothing to clean up.")
				return failedNodes(failed, len(dsns))
			case dryRun:
				fmt.Fprintln(out, "Dry run: nothing dropped.")
				return failedNodes(failed, len(dsns))
			case !yes:
				if !stdinIsTerminal(cmd.InOrStdin()) {
					return errors.New("refusing to drop without confirmation: standard input is not a terminal; pass --yes to drop, or --dry-run to only list")
				}
				fmt.Fprint(out, "\nDrop these objects? Only 'yes' will be accepted: ")
				answer, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && answer == "" {
					// A character device that ends at once (/dev/null) is no
					// terminal either.
					fmt.Fprintln(out)
					return errors.New("refusing to drop without confirmation: standard input ended without an answer; pass --yes to drop, or --dry-run to only list")
				}
				if strings.TrimSpace(answer) != "yes" {
					fmt.Fprintln(out, "Nothing dropped.")
					return nil
				}
			}

			conns := map[string]*pgutil.Node{}
			defer func() {
				for _, n := range conns {
					n.Close()
				}
			}()
			for _, v := range verdicts {
				if _, done := conns[v.Node]; done || !v.Drop {
					continue
				}
				n, err := pgutil.Connect(ctx, byName[v.Node])
				if err != nil {
					return err
				}
				conns[v.Node] = n
			}
			var dropped, wal int64
			spec := executor.CleanupSpec{
				RetainOld: retain, Now: policy.Now, TerminateOrphanWalsenders: terminate,
				LibrarySchema: nodes.schema,
				Report: func(o executor.Outcome) {
					switch {
					case o.Err != nil:
						fmt.Fprintf(errOut, "pgms: %s\n", describe(o.Err))
					case !o.Dropped:
						fmt.Fprintf(out, "%s: kept %s: %s\n", o.Node, o.Leftover, o.Reason)
					default:
						dropped++
						wal += o.RetainedBytes
						fmt.Fprintf(out, "%s: dropped %s%s\n", o.Node, o.Leftover, droppedNote(o))
					}
				},
			}
			_, err = executor.CleanupAll(ctx, conns, verdicts, spec)
			fmt.Fprintf(out, "\nDropped %d of %d objects", dropped, count)
			if wal > 0 {
				fmt.Fprintf(out, "; the slots dropped had retained %s of WAL", units.FormatBytes(float64(wal)))
			}
			fmt.Fprintln(out, ".")
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return withCode(exitError, errors.New("some objects could not be dropped (see above)"))
			}
			return failedNodes(failed, len(dsns))
		},
	}
	nodes.add(cmd)
	cmd.Flags().DurationVar(&retain, "retain", 168*time.Hour, "keep renamed move sources this long after their rename")
	cmd.Flags().BoolVar(&yes, "yes", false, "drop without asking")
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

// renderCleanup lists per node what cleanup drops and what it keeps, and
// returns how many objects it drops.
func renderCleanup(w io.Writer, live *state.Cluster, verdicts []state.Verdict, retain time.Duration) int {
	fmt.Fprintf(w, "Cleanup of %s; renamed move sources are kept for %s.\n", plural(len(live.Nodes), "node"), units.FormatDuration(retain))
	byNode := map[string][]state.Verdict{}
	for _, v := range verdicts {
		byNode[v.Node] = append(byNode[v.Node], v)
	}
	var count, tables, wal int64
	nodes := 0
	for _, n := range live.Nodes {
		if n.Err != nil {
			continue
		}
		fmt.Fprintln(w)
		vs := byNode[n.Name]
		var drop, keep []state.Verdict
		for _, v := range vs {
			if v.Drop {
				drop = append(drop, v)
			} else {
				keep = append(keep, v)
			}
		}
		switch {
		case len(vs) == 0:
			fmt.Fprintf(w, "%s: no leftovers\n", n.Name)
			continue
		case len(drop) == 0:
			fmt.Fprintf(w, "%s: nothing to drop\n", n.Name)
		default:
			fmt.Fprintf(w, "%s: %d to drop\n", n.Name, len(drop))
			nodes++
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, v := range drop {
			count++
			tables += v.Leftover.Bytes
			if v.Leftover.Kind == state.LeftoverSlot {
				wal += v.Leftover.RetainedBytes
			}
			fmt.Fprintf(tw, "  - %s\t%s\t%s\n", v.Leftover, sizeNote(v.Leftover), v.Reason)
		}
		for _, v := range keep {
			fmt.Fprintf(tw, "    kept: %s\t%s\t%s\n", v.Leftover, sizeNote(v.Leftover), v.Reason)
		}
		tw.Flush()
	}
	if count > 0 {
		fmt.Fprintf(w, "\n%s to drop on %s", plural(int(count), "object"), plural(nodes, "node"))
		var parts []string
		if tables > 0 {
			parts = append(parts, units.FormatBytes(float64(tables))+" of tables")
		}
		if wal > 0 {
			parts = append(parts, units.FormatBytes(float64(wal))+" of WAL retained by slots")
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, ": %s", strings.Join(parts, ", "))
		}
		fmt.Fprintln(w, ".")
	} else {
		fmt.Fprintln(w)
	}
	return int(count)
}

// sizeNote is what a leftover costs: a schema's size, a slot's retained WAL.
func sizeNote(l state.Leftover) string {
	switch l.Kind {
	case state.LeftoverOldSchema, state.LeftoverNewSchema:
		return units.FormatBytes(float64(l.Bytes))
	case state.LeftoverSlot:
		return units.FormatBytes(float64(l.RetainedBytes)) + " WAL"
	}
	return ""
}

func droppedNote(o executor.Outcome) string {
	switch o.Leftover.Kind {
	case state.LeftoverSlot:
		return fmt.Sprintf(" (it retained %s of WAL)", units.FormatBytes(float64(o.RetainedBytes)))
	case state.LeftoverOldSchema, state.LeftoverNewSchema:
		return fmt.Sprintf(" (%s) in %s", units.FormatBytes(float64(o.Leftover.Bytes)), o.Took.Round(time.Millisecond))
	}
	return ""
}
