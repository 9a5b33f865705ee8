package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/state"
)

func init() { register(newStatusCommand) }

// statusView is what pgms status shows, in text or JSON.
type statusView struct {
	Node string           `json:"state_node"`
	Lock state.LockStatus `json:"lock"`
	Runs []state.Run      `json:"runs"`
}

func newStatusCommand() *cobra.Command {
	var (
		nodes  stateFlags
		runs   int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running or last runs recorded on the state node",
		Long: `Status reads the journal kept on the state node: who holds the run lock (or
whether a dead run left a stale holder behind), and the last runs with their
steps: phase, copy progress per table, replication lag, the write-pause
window of each switch-over, retries and errors.`,
		Example: `  pgms status --config topology/
  pgms status --dsn postgres://admin@db1/app
  pgms status --dsn postgres://admin@db1/app --runs 10 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			n, err := connectStateNode(ctx, cmd.ErrOrStderr(), &nodes, "status")
			if err != nil {
				return err
			}
			defer n.Close()
			v := statusView{Node: n.Name}
			if v.Lock, err = state.ReadLock(ctx, n.Conn, nodes.schema); err != nil {
				return pgutil.Wrap(err, "state node %s", n.Name)
			}
			if v.Runs, err = state.ReadRuns(ctx, n.Conn, nodes.schema, runs); err != nil {
				return pgutil.Wrap(err, "state node %s", n.Name)
			}
			if v.Runs == nil {
				v.Runs = []state.Run{}
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			renderStatus(cmd.OutOrStdout(), v, time.Now())
			return nil
		},
	}
	nodes.add(cmd)
	cmd.Flags().IntVar(&runs, "runs", 3, "how many of the last runs to show")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// connectStateNode connects to the one node a journal command reads: the
// --dsn given, else the only node of the DSN list variables or the libpq
// variables.
func connectStateNode(ctx context.Context, stderr io.Writer, f *stateFlags, command string) (*pgutil.Node, error) {
	if f.config != "" {
		t, err := loadTopology(stderr, f.config)
		if err != nil {
			return nil, err
		}
		n := stateNodeOf(t)
		f.schema = t.Cluster.LibrarySchema
		node, err := pgutil.Connect(ctx, n.DSN)
		if err != nil {
			return nil, fmt.Errorf("state node %s: %w", n.Name, err)
		}
		return node, nil
	}
	target, err := targetNode(f.dsns, command)
	if err != nil {
		return nil, err
	}
	return pgutil.Connect(ctx, target)
}

// stateFlags choose the state node: the topology's (--config) or a DSN.
type stateFlags struct {
	nodeFlags
	config string
}

func (f *stateFlags) add(cmd *cobra.Command) {
	f.nodeFlags.add(cmd)
	cmd.Flags().StringVar(&f.config, "config", "", "topology files: use their state node and library schema instead of --dsn")
}

// stateNodeOf is the node holding the journal and the run lock: the
// cluster's state_node, or the first node by name.
func stateNodeOf(t *config.Topology) *config.Node {
	name := t.Cluster.StateNode
	if name == "" {
		name = t.Nodes[0].Name
	}
	n, _ := t.Node(name)
	return n
}

// renderStatus writes the status for a person; now dates running steps.
func renderStatus(w io.Writer, v statusView, now time.Time) {
	fmt.Fprintf(w, "State node %s\n", v.Node)
	switch {
	case v.Lock.Held && v.Lock.Holder != nil:
		fmt.Fprintf(w, "Lock: held by %s (session %d)\n", v.Lock.Holder, v.Lock.HolderPID)
	case v.Lock.Held:
		fmt.Fprintf(w, "Lock: held by session %d, which wrote no holder row\n", v.Lock.HolderPID)
	case v.Lock.Stale():
		fmt.Fprintf(w, "Lock: free, but a stale holder row remains: %s; that run is gone (pgms force-unlock clears the row; the next run replaces it anyway)\n", v.Lock.Holder)
	default:
		fmt.Fprintln(w, "Lock: free")
	}
	if len(v.Runs) == 0 {
		fmt.Fprintln(w, "\nNo runs recorded.")
		return
	}
	for _, r := range v.Runs {
		fmt.Fprintln(w)
		took := ""
		if r.Finished != nil {
			took = ", took " + r.Finished.Sub(r.Started).Round(time.Millisecond).String()
		} else if r.Outcome == state.OutcomeRunning {
			took = ", running for " + now.Sub(r.Started).Round(time.Second).String()
		}
		fmt.Fprintf(w, "Run %d: %s %s — %s, started %s by %s on %s (pid %d)%s\n", r.ID, r.Command, dsn.Redact(r.Args), r.Outcome,
			r.Started.UTC().Format("2006-01-02 15:04:05 UTC"), orDash(r.User), orDash(r.Host), r.PID, took)
		if r.Version != "" || r.CIRun != "" {
			fmt.Fprintf(w, "  pgms %s", orDash(r.Version))
			if r.CIRun != "" {
				fmt.Fprintf(w, ", CI run %s", r.CIRun)
			}
			fmt.Fprintln(w)
		}
		if r.Error != "" && (len(r.Steps) == 0 || r.Steps[len(r.Steps)-1].Error != r.Error) {
			fmt.Fprintf(w, "  error: %s\n", r.Error)
		}
		for _, s := range r.Steps {
			renderStep(w, s, now)
		}
	}
}

func renderStep(w io.Writer, s state.StepRow, now time.Time) {
	shard := s.Schema
	switch {
	case s.Source != "":
		fmt.Fprintf(w, "  %s %s: %s → %s, %s", s.Kind, shard, s.Source, s.Destination, s.Outcome)
	case shard != "":
		fmt.Fprintf(w, "  %s %s on %s, %s", s.Kind, shard, s.Destination, s.Outcome)
	default:
		fmt.Fprintf(w, "  %s on %s, %s", s.Kind, s.Destination, s.Outcome)
	}
	if s.Outcome != state.OutcomeSucceeded {
		fmt.Fprintf(w, " in phase %s", s.Phase)
	}
	if s.Outcome == state.OutcomeRunning {
		fmt.Fprintf(w, " (updated %s ago)", now.Sub(s.Updated).Round(time.Second))
	}
	if s.TotalMS != nil {
		fmt.Fprintf(w, ", took %s", msDuration(*s.TotalMS).Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	if len(s.Tables) > 0 || s.TotalBytes > 0 {
		ready := 0
		for _, t := range s.Tables {
			if t.State == "ready" {
				ready++
			}
		}
		line := fmt.Sprintf("    copy (%s): %d/%d tables ready, ~%s of %s, %d rows", orDash(s.Strategy), ready, len(s.Tables),
			units.FormatBytes(float64(s.Bytes)), units.FormatBytes(float64(s.TotalBytes)), s.Rows)
		if s.BackfillMS != nil && *s.BackfillMS > 0 {
			d := msDuration(*s.BackfillMS)
			line += fmt.Sprintf(" in %s (%s/s)", d.Round(time.Millisecond), units.FormatBytes(float64(s.Bytes)/d.Seconds()))
		}
		fmt.Fprintln(w, line)
	}
	if s.Verify != "" {
		fmt.Fprintf(w, "    %s\n", s.Verify)
	}
	if s.LagBytes != nil && s.Outcome == state.OutcomeRunning {
		fmt.Fprintf(w, "    replication lag %s\n", units.FormatBytes(float64(*s.LagBytes)))
	}
	if s.PauseMS != nil {
		core := "?"
		if s.CoreMS != nil {
			core = fmt.Sprintf("%.1f ms", *s.CoreMS)
		}
		blocked := ""
		if s.BlockedMS != nil {
			blocked = fmt.Sprintf("writers blocked at most %.1f ms (lock wait and pause of any attempt); ", *s.BlockedMS)
		}
		fmt.Fprintf(w, "    %swrite pause %.1f ms (lock to commit %s), %s\n", blocked, *s.PauseMS, core, retries(s.Retries))
	} else if s.Retries > 0 {
		fmt.Fprintf(w, "    %s\n", retries(s.Retries))
	}
	if s.Outcome != state.OutcomeSucceeded && len(s.Tables) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range s.Tables {
			fmt.Fprintf(tw, "    %s\t%s\t%s\tof %s\t%d rows\n", t.Name, t.State, units.FormatBytes(float64(t.Bytes)), units.FormatBytes(float64(t.TotalBytes)), t.Rows)
		}
		tw.Flush()
	}
	if s.Error != "" {
		fmt.Fprintf(w, "    error: %s\n", strings.TrimSpace(s.Error))
	}
}

func msDuration(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
