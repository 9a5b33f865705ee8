package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/rebalance"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/views"
)

// rebalanceArgs are the flags of pgms rebalance.
type rebalanceArgs struct {
	path      string
	format    formatFlag
	drain     []string
	tolerance string
	maxMoves  int
	maxBytes  string
	write     bool
}

func newRebalanceCommand() *cobra.Command {
	var a rebalanceArgs
	cmd := &cobra.Command{
		Use:   "rebalance",
		Short: "Compute a better placement from live weights and rewrite the topology files",
		Long:  longHelp("rebalance"),
		Example: `  pgms rebalance --config topology/
  pgms rebalance --drain c --max-bytes 50GB --write`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRebalance(cmd, a) },
	}
	configFlag(cmd, &a.path)
	a.format.add(cmd, views.FormatText, views.FormatMarkdown, views.FormatJSON)
	f := cmd.Flags()
	f.StringArrayVar(&a.drain, "drain", nil, "node to empty, in addition to nodes with drain = true (repeatable)")
	f.StringVar(&a.tolerance, "tolerance", strconv.FormatFloat(100*rebalance.DefaultTolerance, 'f', -1, 64)+"%", "accepted deviation of a node's weight from its fair share, a percentage")
	f.IntVar(&a.maxMoves, "max-moves", 0, "move at most this many shards (0: no limit)")
	f.StringVar(&a.maxBytes, "max-bytes", "", "move at most this much data, such as 50GB (needs weights in bytes)")
	f.BoolVar(&a.write, "write", false, "rewrite the topology files")
	return cmd
}

func runRebalance(cmd *cobra.Command, a rebalanceArgs) error {
	r, err := a.format.renderer()
	if err != nil {
		return err
	}
	tolerance, err := parseTolerance(a.tolerance)
	if err != nil {
		return err
	}
	if a.maxMoves < 0 {
		return fmt.Errorf("--max-moves %d: want a number of moves >= 1, or 0 for no limit", a.maxMoves)
	}
	var maxBytes int64
	if a.maxBytes != "" {
		if maxBytes, err = units.ParseBytes(a.maxBytes); err != nil || maxBytes <= 0 {
			return fmt.Errorf("--max-bytes %q: want a size above zero such as 500MB or 50GB (units B, kB, MB, GB, TB), or leave it out for no limit", a.maxBytes)
		}
	}
	t, err := loadTopology(cmd.ErrOrStderr(), a.path)
	if err != nil {
		return err
	}
	// Mistakes in the flags are reported before any node is read.
	drain, err := rebalance.Drained(t, a.drain)
	if err != nil {
		return err
	}
	live := runner.Refresh(cmd.Context(), t, true)
	if err := cmd.Context().Err(); err != nil {
		return err
	}
	p, err := rebalance.Propose(rebalance.Request{
		Topology: t, Live: live, Drain: drain, Now: time.Now(), MaxBytes: maxBytes,
		Options: rebalance.Options{Tolerance: tolerance / 100, MaxMoves: a.maxMoves},
	})
	var unplannable *rebalance.UnplannableError
	if errors.As(err, &unplannable) {
		printProblems(cmd.ErrOrStderr(), unplannable)
	}
	if err != nil {
		return err
	}
	report := views.NewRebalance(views.RebalanceSource{Topology: t, Live: live, Proposal: p,
		TolerancePercent: tolerance, MaxMoves: a.maxMoves, MaxBytes: maxBytes})
	if a.write && len(p.Result.Moves) > 0 {
		for _, f := range report.Files {
			if err := config.WriteFile(f.Path, p.Files[f.Path]); err != nil {
				return fmt.Errorf("write %s: %w", f.Path, err)
			}
		}
		report.Written = true
	}
	return r.Render(cmd.OutOrStdout(), report)
}

// printProblems writes why the live state cannot be planned.
func printProblems(w io.Writer, e *rebalance.UnplannableError) {
	for _, p := range e.Problems {
		fmt.Fprintf(w, "Error: %s\n", p.Summary)
		if p.Detail != "" {
			fmt.Fprintf(w, "  %s\n", p.Detail)
		}
	}
}

// parseTolerance reads a percentage such as "5%" or "2.5" (the sign is
// optional), strictly between 0 and 100.
func parseTolerance(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%")), 64)
	if err != nil || math.IsNaN(v) || v <= 0 || v >= 100 {
		return 0, fmt.Errorf("--tolerance %q: want a percentage between 0 and 100 (exclusive), such as 5%% or 2.5%%", s)
	}
	return v, nil
}
