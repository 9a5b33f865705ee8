package views

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/planner"
)

// FormatEvents is the format of apply --json and move --json: one JSON
// object per line as the run goes (an Event), rather than one document at
// its end.
const FormatEvents = "events"

// EventsFormatVersion is the version of the event stream, in every
// event's format_version. Like the documents' FormatVersion, it changes
// only when a field changes meaning or disappears.
const EventsFormatVersion = 1

// The event types, in the order a run emits them. docs/events.schema.json
// describes each one's payload.
const (
	EventRunStart  = "run_start"  // the command starts: which pgms, which CI job
	EventPlan      = "plan"       // apply: the plan about to be carried out
	EventStepStart = "step_start" // a step starts
	EventPhase     = "phase"      // a move enters a phase
	EventProgress  = "progress"   // a move's copy or catch-up, every progress interval
	EventLog       = "log"        // something worth a line: info, retry or warning
	EventCutover   = "cutover"    // a move switched over: lock wait, pause, writers blocked
	EventStepEnd   = "step_end"   // a step ended
	EventRunEnd    = "run_end"    // the run ended, with its outcome
)

// Event is one line of the event stream. The envelope (format_version,
// type, time, message, and step and schema where they apply) is the same
// for every type; the payload sits under the key named like the type.
type Event struct {
	FormatVersion int    `json:"format_version"`
	Type          string `json:"type"`
	// Time is when it happened, RFC 3339 in UTC with sub-second digits.
	Time time.Time `json:"time"`
	// Message says the same as the payload in one line for a person.
	Message string `json:"message"`
	// Step is the 1-based number of the plan step the event belongs to.
	Step   int    `json:"step,omitempty"`
	Schema string `json:"schema,omitempty"`

	RunStart  *RunStartEvent  `json:"run_start,omitempty"`
	Plan      *planner.Plan   `json:"plan,omitempty"`
	StepStart *StepStartEvent `json:"step_start,omitempty"`
	Phase     *PhaseEvent     `json:"phase,omitempty"`
	Progress  *ProgressEvent  `json:"progress,omitempty"`
	Log       *LogEvent       `json:"log,omitempty"`
	Cutover   *CutoverEvent   `json:"cutover,omitempty"`
	StepEnd   *StepEndEvent   `json:"step_end,omitempty"`
	RunEnd    *RunEndEvent    `json:"run_end,omitempty"`
}

type (
	// RunStartEvent names the run.
	RunStartEvent struct {
		// Command is apply or move; Args its arguments, without passwords.
		Command string `json:"command"`
		Args    string `json:"args,omitempty"`
		// Version is the pgms version as the journal records it; CIRun
		// the CI job, when the environment names one.
		Version string `json:"pgms_version"`
		CIRun   string `json:"ci_run,omitempty"`
	}

	// StepStartEvent is a plan step starting.
	StepStartEvent struct {
		// Of is the number of steps of the plan.
		Of int `json:"of"`
		// PlanStep is the step as the plan document has it.
		PlanStep planner.Step `json:"plan_step"`
	}

	// PhaseEvent is a move entering a phase (preflight, ddl, replicate,
	// backfill, catch-up, cutover, finish, cleanup, undo, done).
	PhaseEvent struct {
		Phase string `json:"phase"`
	}

	// ProgressEvent is the state of a move's copy (phase backfill) or of
	// its catch-up (phase catch-up, with LagBytes).
	ProgressEvent struct {
		Phase string `json:"phase"`
		// Bytes of TotalBytes of table data (indexes excluded) copied,
		// and the rows written.
		Bytes      int64 `json:"bytes,omitempty"`
		TotalBytes int64 `json:"total_bytes,omitempty"`
		Rows       int64 `json:"rows,omitempty"`
		// Tables of the shard, and those completely copied.
		Tables      int `json:"tables,omitempty"`
		TablesReady int `json:"tables_ready,omitempty"`
		// RateBytesPerS is the copy rate since the previous report; ETAMS
		// the time left at that rate.
		RateBytesPerS float64  `json:"rate_bytes_per_s,omitempty"`
		ETAMS         *float64 `json:"eta_ms,omitempty"`
		// LagBytes is the WAL the destination has still to confirm.
		LagBytes *int64 `json:"lag_bytes,omitempty"`
	}

	// LogEvent is a line of a move that is neither a phase nor progress.
	LogEvent struct {
		// Level is info, retry (a cutover attempt given up, to be tried
		// again) or warning.
		Level string `json:"level"`
		Phase string `json:"phase"`
	}

	// CutoverEvent gives the figures of a move's switch-over.
	CutoverEvent struct {
		// LockWaitMS: the successful attempt's wait for its lock; PauseMS:
		// from the lock to the shard active on the destination; CoreMS:
		// from the lock to the commit on the source.
		LockWaitMS float64 `json:"lock_wait_ms"`
		PauseMS    float64 `json:"pause_ms"`
		CoreMS     float64 `json:"core_ms"`
		// WritersBlockedMS is the longest time any attempt kept the
		// shard's writers waiting (lock wait and time under the lock):
		// what an application sees.
		WritersBlockedMS float64 `json:"writers_blocked_ms"`
		Retries          int     `json:"retries"`
		// OldSchema is the source's name after the cutover.
		OldSchema string `json:"old_schema"`
	}

	// StepEndEvent is what became of a step.
	StepEndEvent struct {
		// Outcome is done, failed or interrupted.
		Outcome string  `json:"outcome"`
		TookMS  float64 `json:"took_ms"`
		Error   string  `json:"error,omitempty"`
		// Move is the move's report, for a move that completed.
		Move *Move `json:"move,omitempty"`
	}

	// RunEndEvent is the run's outcome.
	RunEndEvent struct {
		// Outcome is, for apply, succeeded, no_changes, failed, declined or
		// interrupted; for move, moved, copied, finished, already_done,
		// failed or interrupted.
		Outcome string  `json:"outcome"`
		Error   string  `json:"error,omitempty"`
		TookMS  float64 `json:"took_ms"`
		// StateNode holds the run's journal and lock (apply).
		StateNode string `json:"state_node,omitempty"`
		// Steps done, failed and not started.
		Done       int `json:"done"`
		Failed     int `json:"failed"`
		NotStarted int `json:"not_started"`
		// Moves sums up the cutovers of an apply.
		Moves *ApplyMoves `json:"moves,omitempty"`
	}
)

// EventStream writes a run as JSON lines. It is the executor's Reporter
// and StepObserver, safe for concurrent use; progress events of each
// shard are written at most once per interval. Every string from a node
// (errors, messages) loses any password a DSN in it carried.
type EventStream struct {
	w     io.Writer
	every time.Duration
	now   func() time.Time

	mu       sync.Mutex
	began    time.Time
	of       int
	stepOf   map[string]int // schema -> 1-based step of its move
	lastProg map[string]time.Time
	err      error
}

// The stream follows moves and steps.
var (
	_ executor.Reporter     = (*EventStream)(nil)
	_ executor.StepObserver = (*EventStream)(nil)
)

// NewEventStream writes events to w, progress at most once per interval
// and shard.
func NewEventStream(w io.Writer, every time.Duration) *EventStream {
	return &EventStream{w: w, every: every, now: time.Now, stepOf: map[string]int{}, lastProg: map[string]time.Time{}}
}

// Err is the first error writing an event met.
func (s *EventStream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// emit writes one event; the caller holds mu.
func (s *EventStream) emit(e Event) {
	e.FormatVersion = EventsFormatVersion
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	e.Time = e.Time.UTC()
	e.Message = dsn.Redact(e.Message)
	b, err := json.Marshal(e)
	if err == nil {
		b = append(b, '\n')
		_, err = s.w.Write(b)
	}
	if err != nil && s.err == nil {
		s.err = err
	}
}

// RunStart opens the stream.
func (s *EventStream) RunStart(command, args, version, ciRun string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.began = s.now()
	s.emit(Event{Type: EventRunStart, Time: s.began, Message: fmt.Sprintf("pgms %s %s", version, command),
		RunStart: &RunStartEvent{Command: command, Args: dsn.Redact(args), Version: version, CIRun: ciRun}})
}

// Plan reports the plan an apply carries out.
func (s *EventStream) Plan(p *planner.Plan) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.of = len(p.Steps)
	s.emit(Event{Type: EventPlan, Message: planner.SummaryLine(p), Plan: p})
}

// StepStarted implements executor.StepObserver.
func (s *EventStream) StepStarted(i int, st planner.Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.of = max(s.of, i+1)
	of := s.of
	schema := ""
	if st.Kind == planner.StepMove && len(st.Schemas) == 1 {
		schema = st.Schemas[0]
		s.stepOf[schema] = i + 1
	}
	s.emit(Event{Type: EventStepStart, Step: i + 1, Schema: schema, Message: fmt.Sprintf("[%d/%d] %s %s", i+1, of, st.Symbol(), planner.Headline(st)),
		StepStart: &StepStartEvent{Of: of, PlanStep: st}})
}

// StepEnded implements executor.StepObserver.
func (s *EventStream) StepEnded(i int, r executor.StepResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := &StepEndEvent{Outcome: "done", TookMS: ms(r.Took)}
	msg := fmt.Sprintf("[%d/%d] done in %s", i+1, max(s.of, i+1), r.Took.Round(time.Millisecond))
	if r.Err != nil {
		end.Outcome, end.Error = "failed", dsn.Redact(pgutil.Describe(r.Err))
		if isInterrupted(r.Err) {
			end.Outcome = "interrupted"
		}
		msg = fmt.Sprintf("[%d/%d] %s after %s: %s", i+1, max(s.of, i+1), end.Outcome, r.Took.Round(time.Millisecond), end.Error)
	}
	if r.Move != nil && r.Err == nil {
		end.Move = NewMove(r.Step.From, r.Step.To, *r.Move)
		end.Move.Header = Header{}
	}
	schema := ""
	if r.Step.Kind == planner.StepMove && len(r.Step.Schemas) == 1 {
		schema = r.Step.Schemas[0]
	}
	s.emit(Event{Type: EventStepEnd, Step: i + 1, Schema: schema, Message: msg, StepEnd: end})
}

// Report implements executor.Reporter: a move's phases, progress, lines
// and cutover.
func (s *EventStream) Report(e executor.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	step := s.stepOf[e.Schema]
	if step == 0 && s.of == 1 {
		step = 1 // pgms move: its one step, whose schema may not have been known
	}
	// The line without its leading clock time: the event has its time.
	msg := strings.TrimPrefix(executor.FormatEvent(e), e.Time.Format("15:04:05 "))
	ev := Event{Time: e.Time, Step: step, Schema: e.Schema, Message: msg}
	switch e.Kind {
	case executor.EventPhase:
		ev.Type, ev.Phase = EventPhase, &PhaseEvent{Phase: string(e.Phase)}
	case executor.EventProgress:
		if t, ok := s.lastProg[e.Schema]; ok && e.Time.Sub(t) < s.every {
			return
		}
		s.lastProg[e.Schema] = e.Time
		ev.Type, ev.Progress = EventProgress, progressOf(e)
	case executor.EventEnd:
		return // step_end and run_end say it
	case executor.EventCutover:
		c := e.Cutover
		ev.Type = EventCutover
		ev.Cutover = &CutoverEvent{LockWaitMS: ms(c.LockWait), PauseMS: ms(c.Pause), CoreMS: ms(c.Core),
			WritersBlockedMS: ms(c.WritersBlocked), Retries: c.Retries, OldSchema: c.OldSchema}
		ev.Message = fmt.Sprintf("%s cutover: writers blocked at most %s (lock wait %s, pause %s, lock to commit %s), %s; source renamed to %s",
			e.Schema, units.FormatMS(c.WritersBlocked), units.FormatMS(c.LockWait), units.FormatMS(c.Pause), units.FormatMS(c.Core), lockRetries(c.Retries), c.OldSchema)
	default:
		level := map[executor.EventKind]string{executor.EventRetry: "retry", executor.EventWarning: "warning"}[e.Kind]
		if level == "" {
			level = "info"
		}
		ev.Type, ev.Log = EventLog, &LogEvent{Level: level, Phase: string(e.Phase)}
	}
	s.emit(ev)
}

// progressOf is the payload of a progress event.
func progressOf(e executor.Event) *ProgressEvent {
	p := &ProgressEvent{Phase: string(e.Phase)}
	if c := e.Copy; c != nil {
		p.Bytes, p.TotalBytes, p.Rows, p.Tables, p.TablesReady, p.RateBytesPerS = c.Bytes, c.TotalBytes, c.Rows, len(c.Tables), c.Ready, c.Rate
		if c.Rate > 0 && c.TotalBytes >= c.Bytes {
			eta := float64(c.TotalBytes-c.Bytes) / c.Rate * 1000
			p.ETAMS = &eta
		}
	}
	if e.LagBytes >= 0 {
		lag := e.LagBytes
		p.LagBytes = &lag
	}
	return p
}

// RunEnd closes the stream of an apply with its report.
func (s *EventStream) RunEnd(a *Apply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := &RunEndEvent{Outcome: a.Outcome, Error: a.Error, TookMS: ms(s.now().Sub(s.began)), StateNode: a.StateNode,
		Done: a.Done, Failed: a.Failed, NotStarted: a.NotStarted, Moves: a.Moves}
	msg := "apply " + a.Outcome
	if a.Error != "" {
		msg += ": " + a.Error
	}
	s.emit(Event{Type: EventRunEnd, Message: msg, RunEnd: end})
}

// MoveEnd closes the stream of pgms move: its outcome (the report's, or
// failed or interrupted with the error).
func (s *EventStream) MoveEnd(m *Move, err error, interrupted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	end := &RunEndEvent{TookMS: ms(s.now().Sub(s.began))}
	switch {
	case err != nil:
		end.Outcome, end.Error, end.Failed = "failed", dsn.Redact(pgutil.Describe(err)), 1
		if interrupted {
			end.Outcome = "interrupted"
		}
	default:
		end.Outcome, end.Done = m.Outcome, 1
	}
	msg := "move " + end.Outcome
	if end.Error != "" {
		msg += ": " + end.Error
	}
	s.emit(Event{Type: EventRunEnd, Message: msg, RunEnd: end})
}

// isInterrupted reports whether a step stopped because the run was
// interrupted rather than because it failed.
func isInterrupted(err error) bool {
	return errors.Is(err, executor.ErrInterrupted)
}
