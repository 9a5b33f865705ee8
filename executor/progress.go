package executor

import (
	"fmt"
	"io"
	"sort"
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
	EventCutover                   // the cutover is done: its figures are in Cutover
	EventEnd                       // the move is over, whatever became of it (Message: its outcome)
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
	// Cutover is set on EventCutover.
	Cutover *CutoverStats
}

// CutoverStats are the figures of a successful cutover, as a move's
// result has them (see MoveResult).
type CutoverStats struct {
	// LockWait is how long the successful attempt waited for its lock;
	// Pause from the lock to the shard active on the destination; Core
	// from the lock to the commit on the source.
	LockWait, Pause, Core time.Duration
	// WritersBlocked is the longest time any attempt kept writers
	// waiting: its lock wait plus its time under the lock.
	WritersBlocked time.Duration
	// Retries counts the attempts given up before.
	Retries int
	// OldSchema is the source's name after the cutover.
	OldSchema string
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

// Reporters passes every event to each of rs.
func Reporters(rs ...Reporter) Reporter {
	return ReporterFunc(func(e Event) {
		for _, r := range rs {
			r.Report(e)
		}
	})
}

// LineReporter writes events as plain lines, fit for CI logs: phase
// changes, retries and warnings at once, progress at most once per Every
// for each shard. A move that has printed nothing for Every gets a
// heartbeat line naming its phase and how long it has been in it: index
// builds, catch-up and waits say little on their own, and CI systems end
// jobs that stay silent for minutes. Close stops the heartbeats.
type LineReporter struct {
	W     io.Writer
	Every time.Duration

	mu    sync.Mutex
	last  map[string]time.Time // last progress line of each shard
	moves map[string]*heard    // moves under way
	stop  chan struct{}
	done  chan struct{}
}

// heard is what a LineReporter knows of a move under way.
type heard struct {
	phase Phase
	since time.Time // when the phase began
	line  time.Time // when a line of it was last printed
}

// NewLineReporter returns a LineReporter printing progress every interval,
// and heartbeats when a move stays silent that long.
func NewLineReporter(w io.Writer, every time.Duration) *LineReporter {
	r := &LineReporter{W: w, Every: every, last: map[string]time.Time{}, moves: map[string]*heard{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if every > 0 {
		go r.beat()
	} else {
		close(r.done)
	}
	return r
}

// Report writes the event if it is due.
func (r *LineReporter) Report(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e.Kind {
	case EventCutover:
		return // the finish phase's line says the same
	case EventEnd:
		delete(r.moves, e.Schema)
		return
	case EventProgress:
		if t, ok := r.last[e.Schema]; ok && e.Time.Sub(t) < r.Every {
			return
		}
		r.last[e.Schema] = e.Time
	}
	h := r.moves[e.Schema]
	if h == nil {
		h = &heard{phase: e.Phase, since: e.Time}
		r.moves[e.Schema] = h
	}
	if e.Kind == EventPhase || h.phase != e.Phase {
		h.phase, h.since = e.Phase, e.Time
	}
	h.line = time.Now()
	fmt.Fprintln(r.W, FormatEvent(e))
}

// beat prints the heartbeats until Close.
func (r *LineReporter) beat() {
	defer close(r.done)
	tick := time.NewTicker(max(r.Every/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-tick.C:
			r.heartbeats(now)
		}
	}
}

// heartbeats prints a line for each move silent for Every.
func (r *LineReporter) heartbeats(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	schemas := make([]string, 0, len(r.moves))
	for s := range r.moves {
		schemas = append(schemas, s)
	}
	sort.Strings(schemas)
	for _, s := range schemas {
		h := r.moves[s]
		if now.Sub(h.line) < r.Every {
			continue
		}
		h.line = now
		fmt.Fprintf(r.W, "%s %s %s: still at it, %s in this phase\n", now.Format("15:04:05"), s, h.phase, now.Sub(h.since).Round(time.Second))
	}
}

// Close stops the heartbeats; it returns once none can be printed any more.
func (r *LineReporter) Close() {
	r.mu.Lock()
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.mu.Unlock()
	<-r.done
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
	fmt.Fprintf(&b, "%d/%d tables ready, ~%s of %s of table data, %d rows", c.Ready, len(c.Tables),
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
