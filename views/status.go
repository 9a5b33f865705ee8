package views

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/internal/words"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/state"
)

// Status is what pgms status shows: the run lock of the state node and
// the last runs of its journal, with their steps.
type Status struct {
	Header
	StateNode string           `json:"state_node"`
	Lock      state.LockStatus `json:"lock"`
	// Runs are the last runs, newest first.
	Runs []state.Run `json:"runs"`
	// Windows are the rollback windows open on the topology's nodes (read
	// only with the topology files).
	Windows []planner.Window `json:"windows,omitempty"`
	// Now dates running steps in the text ("updated 2s ago").
	Now time.Time `json:"-"`
}

// NewStatus builds the status report; now dates running steps.
func NewStatus(stateNode string, lock state.LockStatus, runs []state.Run, now time.Time) *Status {
	if runs == nil {
		runs = []state.Run{}
	}
	return &Status{StateNode: stateNode, Lock: lock, Runs: runs, Now: now}
}

func (v *Status) text(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "State node %s\n", v.StateNode)
	switch {
	case v.Lock.Held && v.Lock.Holder != nil:
		fmt.Fprintf(&b, "Lock: held by %s (session %d)\n", v.Lock.Holder, v.Lock.HolderPID)
	case v.Lock.Held:
		fmt.Fprintf(&b, "Lock: held by session %d, which wrote no holder row\n", v.Lock.HolderPID)
	case v.Lock.Stale():
		fmt.Fprintf(&b, "Lock: free, but a stale holder row remains: %s; that run is gone (pgms force-unlock clears the row; the next run replaces it anyway)\n", v.Lock.Holder)
	default:
		b.WriteString("Lock: free\n")
	}
	if len(v.Windows) > 0 {
		b.WriteString("\nRollback windows (pgms rollback --shard=N switches back):\n")
		for _, win := range v.Windows {
			state := "open until"
			if win.Expired {
				state = "ended at"
			}
			fmt.Fprintf(&b, "  shard %d (%s) moved %s → %s at %s, %s %s; the stream back retains %s\n", win.Shard, win.Schema, win.Node, win.To,
				win.Since.UTC().Format("2006-01-02 15:04:05"), state, win.Until.UTC().Format("2006-01-02 15:04:05 UTC"), units.FormatBytes(float64(win.RetainedBytes)))
		}
	}
	if len(v.Runs) == 0 {
		b.WriteString("\nNo runs recorded.\n")
		return flush(w, &b)
	}
	for _, r := range v.Runs {
		b.WriteString("\n")
		took := ""
		if r.Finished != nil {
			took = ", took " + r.Finished.Sub(r.Started).Round(time.Millisecond).String()
		} else if r.Outcome == state.OutcomeRunning {
			took = ", running for " + v.Now.Sub(r.Started).Round(time.Second).String()
		}
		fmt.Fprintf(&b, "Run %d: %s %s — %s, started %s by %s on %s (pid %d)%s\n", r.ID, r.Command, dsn.Redact(r.Args), r.Outcome,
			r.Started.UTC().Format("2006-01-02 15:04:05 UTC"), orDash(r.User), orDash(r.Host), r.PID, took)
		if r.Version != "" || r.CIRun != "" {
			fmt.Fprintf(&b, "  pgms %s", orDash(r.Version))
			if r.CIRun != "" {
				fmt.Fprintf(&b, ", CI run %s", r.CIRun)
			}
			b.WriteString("\n")
		}
		if r.Error != "" && (len(r.Steps) == 0 || r.Steps[len(r.Steps)-1].Error != r.Error) {
			fmt.Fprintf(&b, "  error: %s\n", r.Error)
		}
		for _, s := range r.Steps {
			writeJournalStep(&b, s, v.Now)
		}
	}
	return flush(w, &b)
}

// writeJournalStep writes a step of the journal; now dates a running one.
func writeJournalStep(b *strings.Builder, s state.StepRow, now time.Time) {
	shard := s.Schema
	switch {
	case s.Source != "":
		fmt.Fprintf(b, "  %s %s: %s → %s, %s", s.Kind, shard, s.Source, s.Destination, s.Outcome)
	case shard != "":
		fmt.Fprintf(b, "  %s %s on %s, %s", s.Kind, shard, s.Destination, s.Outcome)
	default:
		fmt.Fprintf(b, "  %s on %s, %s", s.Kind, s.Destination, s.Outcome)
	}
	if s.Outcome != state.OutcomeSucceeded {
		fmt.Fprintf(b, " in phase %s", s.Phase)
	}
	if s.Outcome == state.OutcomeRunning {
		fmt.Fprintf(b, " (updated %s ago)", now.Sub(s.Updated).Round(time.Second))
	}
	if s.TotalMS != nil {
		fmt.Fprintf(b, ", took %s", fromMS(*s.TotalMS).Round(time.Millisecond))
	}
	b.WriteString("\n")
	if len(s.Tables) > 0 || s.TotalBytes > 0 {
		ready := 0
		for _, t := range s.Tables {
			if t.State == "ready" {
				ready++
			}
		}
		fmt.Fprintf(b, "    copy (%s): %d/%d tables ready, ~%s of %s, %d rows", orDash(s.Strategy), ready, len(s.Tables),
			units.FormatBytes(float64(s.Bytes)), units.FormatBytes(float64(s.TotalBytes)), s.Rows)
		if s.BackfillMS != nil && *s.BackfillMS > 0 {
			d := fromMS(*s.BackfillMS)
			fmt.Fprintf(b, " in %s (%s/s)", d.Round(time.Millisecond), units.FormatBytes(float64(s.Bytes)/d.Seconds()))
		}
		b.WriteString("\n")
	}
	if s.Verify != "" {
		fmt.Fprintf(b, "    %s\n", s.Verify)
	}
	if s.LagBytes != nil && s.Outcome == state.OutcomeRunning {
		fmt.Fprintf(b, "    replication lag %s\n", units.FormatBytes(float64(*s.LagBytes)))
	}
	if s.PauseMS != nil {
		core := "?"
		if s.CoreMS != nil {
			core = units.FormatMS(fromMS(*s.CoreMS))
		}
		blocked := ""
		if s.BlockedMS != nil {
			blocked = fmt.Sprintf("writers blocked at most %s (lock wait and pause of any attempt); ", units.FormatMS(fromMS(*s.BlockedMS)))
		}
		fmt.Fprintf(b, "    %swrite pause %s (lock to commit %s), %s\n", blocked, units.FormatMS(fromMS(*s.PauseMS)), core, lockRetries(s.Retries))
	} else if s.Retries > 0 {
		fmt.Fprintf(b, "    %s\n", lockRetries(s.Retries))
	}
	if s.Outcome != state.OutcomeSucceeded && len(s.Tables) > 0 {
		tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
		for _, t := range s.Tables {
			fmt.Fprintf(tw, "    %s\t%s\t%s\tof %s\t%d rows\n", t.Name, t.State, units.FormatBytes(float64(t.Bytes)), units.FormatBytes(float64(t.TotalBytes)), t.Rows)
		}
		tw.Flush()
	}
	if s.Error != "" {
		fmt.Fprintf(b, "    error: %s\n", strings.TrimSpace(s.Error))
	}
}

// fromMS turns the journal's milliseconds into a duration.
func fromMS(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

func lockRetries(n int) string {
	return strconv.Itoa(n) + " " + words.Plural(n, "lock retry", "lock retries")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
