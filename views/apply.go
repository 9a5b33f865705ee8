package views

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/runner"
	"github.com/pgms-dev/pgms/state"
)

// Apply is what pgms apply shows once it has run: the plan carried out,
// what became of each step, and the write pauses of the moves. In text
// the plan and the steps are shown as they happen; the report adds the
// summary.
type Apply struct {
	Header
	// StateNode holds the journal and the run lock of the run.
	StateNode string `json:"state_node"`
	// Plan is the plan carried out, in the plan's own JSON form.
	Plan *planner.Plan `json:"plan"`
	// Outcome is succeeded, no_changes, failed, declined or interrupted.
	Outcome string `json:"outcome"`
	// Error says why the run failed or stopped.
	Error string `json:"error,omitempty"`
	// Ran says steps were carried out; the counts and timings below are
	// set only then.
	Ran        bool        `json:"ran"`
	Steps      []ApplyStep `json:"steps"`
	Done       int         `json:"done"`
	Failed     int         `json:"failed"`
	NotStarted int         `json:"not_started"`
	TookMS     float64     `json:"took_ms"`
	// Moves sums up the write pauses of the moves that completed.
	Moves *ApplyMoves `json:"moves,omitempty"`
}

// ApplyStep is a step of the plan and what became of it.
type ApplyStep struct {
	planner.Step
	// Outcome is done, failed or not_started.
	Outcome string  `json:"outcome"`
	TookMS  float64 `json:"took_ms"`
	Error   string  `json:"error,omitempty"`
	// Move is set for moves that completed.
	Move *Move `json:"move,omitempty"`
}

// ApplyMoves sums up the moves of an apply.
type ApplyMoves struct {
	Count int `json:"count"`
	// WritersBlockedMaxMS is the longest time writers waited on any
	// cutover attempt (lock wait and pause).
	WritersBlockedMaxMS float64 `json:"writers_blocked_max_ms"`
	PauseMedianMS       float64 `json:"pause_median_ms"`
	PauseMaxMS          float64 `json:"pause_max_ms"`

	pauses  []time.Duration
	blocked time.Duration
}

// The outcomes of an apply.
const (
	OutcomeSucceeded   = "succeeded"
	OutcomeNoChanges   = "no_changes"
	OutcomeFailed      = "failed"
	OutcomeDeclined    = "declined"
	OutcomeInterrupted = "interrupted"
)

// NewApply builds the report of an apply from what runner.Apply returned;
// interrupted says a signal stopped it.
func NewApply(res runner.ApplyOutcome, err error, interrupted bool) *Apply {
	return newApply(res.StateNode, res.Plan, res.Ran, res.Result, res.Took, applyOutcome(res, err, interrupted), err)
}

func applyOutcome(res runner.ApplyOutcome, err error, interrupted bool) string {
	switch {
	case err == nil && res.Ran:
		return OutcomeSucceeded
	case err == nil:
		return OutcomeNoChanges
	case errors.Is(err, runner.ErrDeclined):
		return OutcomeDeclined
	case interrupted:
		return OutcomeInterrupted
	}
	return OutcomeFailed
}

func newApply(stateNode string, p *planner.Plan, ran bool, res executor.ApplyResult, took time.Duration, outcome string, err error) *Apply {
	a := &Apply{StateNode: stateNode, Plan: p, Outcome: outcome, Ran: ran, Steps: []ApplyStep{}}
	if err != nil {
		a.Error = dsn.Redact(pgutil.Describe(err))
	}
	if !ran {
		return a
	}
	a.TookMS = ms(took)
	for _, s := range res.Steps {
		st := ApplyStep{Step: s.Step, TookMS: ms(s.Took)}
		switch {
		case !s.Ran:
			st.Outcome = "not_started"
			a.NotStarted++
		case s.Err != nil:
			st.Outcome, st.Error = "failed", dsn.Redact(pgutil.Describe(s.Err))
			a.Failed++
		default:
			st.Outcome = "done"
			a.Done++
			if s.Move != nil {
				st.Move = NewMove(s.Step.From, s.Step.To, *s.Move)
				a.addMove(*s.Move)
			}
		}
		a.Steps = append(a.Steps, st)
	}
	if a.Moves != nil && len(a.Moves.pauses) > 0 {
		m := a.Moves
		sort.Slice(m.pauses, func(i, j int) bool { return m.pauses[i] < m.pauses[j] })
		m.PauseMedianMS, m.PauseMaxMS = ms(m.pauses[len(m.pauses)/2]), ms(m.pauses[len(m.pauses)-1])
		m.WritersBlockedMaxMS = ms(m.blocked)
	}
	return a
}

func (a *Apply) addMove(r executor.MoveResult) {
	if a.Moves == nil {
		a.Moves = &ApplyMoves{}
	}
	a.Moves.Count++
	if r.Pause > 0 {
		a.Moves.pauses = append(a.Moves.pauses, r.Pause)
	}
	a.Moves.blocked = max(a.Moves.blocked, r.Blocked)
}

func (a *Apply) text(w io.Writer) error {
	if a.Outcome == OutcomeDeclined {
		_, err := io.WriteString(w, "Apply cancelled; nothing changed.\n")
		return err
	}
	if !a.Ran {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nApply finished in %s: %d done", fromMS(a.TookMS).Round(time.Millisecond), a.Done)
	if a.Failed > 0 {
		fmt.Fprintf(&b, ", %d failed", a.Failed)
	}
	if a.NotStarted > 0 {
		fmt.Fprintf(&b, ", %d not started", a.NotStarted)
	}
	b.WriteString(".\n")
	if m := a.Moves; m != nil && len(m.pauses) > 0 {
		round := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
		fmt.Fprintf(&b, "Moves: %d; writers blocked at most %s (lock wait and pause of any cutover attempt); write pause median %s, max %s.\n", m.Count,
			round(m.blocked), round(m.pauses[len(m.pauses)/2]), round(m.pauses[len(m.pauses)-1]))
	}
	return flush(w, &b)
}

// ms is a duration in milliseconds, as the JSON documents give them.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// LockHolder names the run that holds a run lock, with the steps it runs.
func LockHolder(st state.LockStatus) string {
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
