package executor

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/state"
)

// Phase is a phase of a move, in order.
type Phase string

// The phases of a move.
const (
	PhasePreflight Phase = "preflight"
	PhaseDDL       Phase = "ddl"
	PhaseReplicate Phase = "replicate" // publication, slot, subscription
	PhaseBackfill  Phase = "backfill"
	PhaseCatchUp   Phase = "catch-up"
	PhaseCutover   Phase = "cutover"
	PhaseFinish    Phase = "finish"  // sequences and activation on the destination
	PhaseCleanup   Phase = "cleanup" // dropping subscription, slot, publication
	PhaseWindow    Phase = "window"  // the rollback window's reverse stream
	PhaseUndo      Phase = "undo"
	PhaseDone      Phase = "done"
)

// EventKind says what an Event reports.
type EventKind int

// Event kinds.
const (
	EventPhase    EventKind = iota // a phase begins
	EventProgress                  // periodic progress of a long phase
	EventRetry                     // a cutover attempt gave up and will be retried
	EventInfo                      // something worth a line
	EventWarning                   // something the user should look at
)

// Event is one report of a move in progress.
type Event struct {
	Time    time.Time
	Shard   int
	Schema  string
	Phase   Phase
	Kind    EventKind
	Message string
	// Copy is set on progress events of the backfill.
	Copy *CopyProgress
	// LagBytes is the replication lag on catch-up progress events, else -1.
	LagBytes int64
}

// CopyProgress is the state of the initial copy.
type CopyProgress struct {
	Tables     []state.TableProgress
	Ready      int
	Bytes      int64 // estimated bytes copied (source table sizes of ready tables)
	TotalBytes int64 // total size of the source tables
	Rows       int64
	Rate       float64 // bytes per second since the previous report
	Errors     int64   // table sync and apply errors on the destination
}

// Reporter receives the events of moves; it must be safe for concurrent use
// when moves run in parallel.
type Reporter interface {
	Report(Event)
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(Event)

// Report calls f.
func (f ReporterFunc) Report(e Event) { f(e) }

// Discard drops every event.
var Discard Reporter = ReporterFunc(func(Event) {})

// LineReporter writes events as plain lines, fit for CI logs: phase
// changes, retries and warnings at once, progress at most once per Every
// for each shard.
type LineReporter struct {
	W     io.Writer
	Every time.Duration

	mu   sync.Mutex
	last map[string]time.Time
}

// NewLineReporter returns a LineReporter printing progress every interval.
func NewLineReporter(w io.Writer, every time.Duration) *LineReporter {
	return &LineReporter{W: w, Every: every}
}

// Report writes the event if it is due.
func (r *LineReporter) Report(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]time.Time{}
	}
	if e.Kind == EventProgress {
		if t, ok := r.last[e.Schema]; ok && e.Time.Sub(t) < r.Every {
			return
		}
		r.last[e.Schema] = e.Time
	}
	fmt.Fprintln(r.W, FormatEvent(e))
}

// FormatEvent renders an event on one line.
func FormatEvent(e Event) string {
	var b strings.Builder
	b.WriteString(e.Time.Format("15:04:05"))
	b.WriteString(" ")
	b.WriteString(e.Schema)
	b.WriteString(" ")
	b.WriteString(string(e.Phase))
	switch e.Kind {
	case EventRetry:
		b.WriteString(" retry")
	case EventWarning:
		b.WriteString(" WARNING")
	}
	b.WriteString(": ")
	switch {
	case e.Copy != nil:
		b.WriteString(formatCopy(e.Copy))
	case e.LagBytes >= 0 && e.Kind == EventProgress:
		fmt.Fprintf(&b, "lag %s", units.FormatBytes(float64(e.LagBytes)))
	}
	if e.Message != "" {
		if e.Copy != nil || (e.LagBytes >= 0 && e.Kind == EventProgress) {
			b.WriteString("; ")
		}
		b.WriteString(e.Message)
	}
	return b.String()
}

func formatCopy(c *CopyProgress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d tables ready, ~%s of %s, %d rows", c.Ready, len(c.Tables),
		units.FormatBytes(float64(c.Bytes)), units.FormatBytes(float64(c.TotalBytes)), c.Rows)
	if c.Rate > 0 {
		fmt.Fprintf(&b, ", %s/s", units.FormatBytes(c.Rate))
	}
	for _, t := range c.Tables {
		if t.State == "copying" {
			fmt.Fprintf(&b, "; copying %s: %s, %d rows", t.Name, units.FormatBytes(float64(t.Bytes)), t.Rows)
		}
	}
	if c.Errors > 0 {
		fmt.Fprintf(&b, "; %d replication errors on the destination (see its server log)", c.Errors)
	}
	return b.String()
}

// DefaultProgressInterval is how often a LineReporter prints a move's
// progress unless told.
const DefaultProgressInterval = 5 * time.Second
