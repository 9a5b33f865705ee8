package executor

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/planner"
)

// LiveReporter shows moves on a terminal: one line per running move
// (phase, percent, rate, ETA) and a summary line, redrawn in place a few
// times a second. Lines worth keeping — phases, retries, warnings, and
// whatever is written to Writer (the apply's step lines) — are printed
// above that block and scroll away with the terminal. Piped output gets a
// LineReporter instead: escape sequences have no place in a CI log.
type LiveReporter struct {
	w     io.Writer
	width int

	mu      sync.Mutex
	moves   map[string]*liveMove
	drawn   int // lines of the block on the screen
	began   time.Time
	steps   int // steps of the plan, when an apply says
	done    int
	partial []byte // a line written to Writer without its newline yet
	stop    chan struct{}
	stopped chan struct{}
}

type liveMove struct {
	phase Phase
	since time.Time
	copy  *CopyProgress
	lag   int64
}

// The live view follows moves and steps.
var (
	_ Reporter     = (*LiveReporter)(nil)
	_ StepObserver = (*LiveReporter)(nil)
)

// liveTick is how often the block is redrawn.
const liveTick = 250 * time.Millisecond

// NewLiveReporter draws on w, a terminal width columns wide (lines are cut
// to fit: a wrapped line would throw off the redraw). Close ends it.
func NewLiveReporter(w io.Writer, width int) *LiveReporter {
	if width <= 0 {
		width = 80
	}
	l := &LiveReporter{w: w, width: width, moves: map[string]*liveMove{}, began: time.Now(),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	go l.run()
	return l
}

func (l *LiveReporter) run() {
	defer close(l.stopped)
	tick := time.NewTicker(liveTick)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
			l.mu.Lock()
			l.redraw()
			l.mu.Unlock()
		}
	}
}

// Report implements Reporter.
func (l *LiveReporter) Report(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.moves[e.Schema]
	if m == nil && e.Kind != EventEnd {
		m = &liveMove{phase: e.Phase, since: e.Time, lag: -1}
		l.moves[e.Schema] = m
	}
	switch e.Kind {
	case EventEnd:
		delete(l.moves, e.Schema)
	case EventCutover:
		// The finish phase's line that follows says the same.
	case EventProgress:
		if e.Copy != nil {
			m.copy = e.Copy
		}
		if e.LagBytes >= 0 {
			m.lag = e.LagBytes
		}
		if m.phase != e.Phase {
			m.phase, m.since = e.Phase, e.Time
		}
	default:
		if e.Kind == EventPhase || m.phase != e.Phase {
			m.phase, m.since = e.Phase, e.Time
		}
		l.above(FormatEvent(e) + "\n")
	}
	l.redraw()
}

// StepStarted implements StepObserver.
func (l *LiveReporter) StepStarted(i int, _ planner.Step) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.steps = max(l.steps, i+1)
}

// StepEnded implements StepObserver.
func (l *LiveReporter) StepEnded(int, StepResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done++
}

// SetSteps says how many steps the plan has, for the summary line.
func (l *LiveReporter) SetSteps(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.steps = n
}

// Writer returns a writer whose lines are printed above the block.
func (l *LiveReporter) Writer() io.Writer { return liveWriter{l} }

type liveWriter struct{ l *LiveReporter }

func (w liveWriter) Write(p []byte) (int, error) {
	l := w.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	if i := bytes.LastIndexByte(l.partial, '\n'); i >= 0 {
		l.above(string(l.partial[:i+1]))
		l.partial = append(l.partial[:0], l.partial[i+1:]...)
		l.redraw()
	}
	return len(p), nil
}

// Close stops the redraw and removes the block; what was printed above
// stays.
func (l *LiveReporter) Close() {
	l.mu.Lock()
	select {
	case <-l.stop:
		l.mu.Unlock()
		return
	default:
		close(l.stop)
	}
	l.mu.Unlock()
	<-l.stopped
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clear()
	if len(l.partial) > 0 {
		fmt.Fprintf(l.w, "%s\n", l.partial)
		l.partial = nil
	}
}

// above prints text above the block: the block is cleared, the text
// written, and the block drawn again by the caller.
func (l *LiveReporter) above(text string) {
	l.clear()
	io.WriteString(l.w, text) //nolint:errcheck // a terminal write that fails has nowhere to report to
}

// clear removes the block from the screen, leaving the cursor where it
// began.
func (l *LiveReporter) clear() {
	if l.drawn > 0 {
		fmt.Fprintf(l.w, "\x1b[%dA\r\x1b[J", l.drawn)
		l.drawn = 0
	}
}

// redraw draws the block again, in place; the caller holds mu.
func (l *LiveReporter) redraw() {
	select {
	case <-l.stop:
		return
	default:
	}
	if len(l.moves) == 0 && l.steps == 0 {
		return // nothing under way yet: the terminal belongs to the plan and the question
	}
	lines := l.block(time.Now())
	var b strings.Builder
	if l.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", l.drawn)
	}
	for _, line := range lines {
		b.WriteString(cut(line, l.width-1) + "\n")
	}
	io.WriteString(l.w, b.String()) //nolint:errcheck // as in above
	l.drawn = len(lines)
}

// block is the text of the live block at now.
func (l *LiveReporter) block(now time.Time) []string {
	schemas := make([]string, 0, len(l.moves))
	for s := range l.moves {
		schemas = append(schemas, s)
	}
	sort.Strings(schemas)
	var lines []string
	for _, s := range schemas {
		lines = append(lines, "  "+moveLine(s, l.moves[s], now))
	}
	summary := fmt.Sprintf("  %d %s running", len(schemas), map[bool]string{true: "move", false: "moves"}[len(schemas) == 1])
	if l.steps > 0 {
		summary += fmt.Sprintf(", %d of %d steps done", l.done, l.steps)
	}
	summary += ", " + now.Sub(l.began).Round(time.Second).String() + " so far"
	return append(lines, summary)
}

// moveLine is a move's line: "sh0002  backfill  45%  ~620 MB of 1.38 GB
// table data  52.0 MB/s  ETA 14s".
func moveLine(schema string, m *liveMove, now time.Time) string {
	parts := []string{schema, string(m.phase)}
	switch {
	case m.phase == PhaseBackfill && m.copy != nil && m.copy.TotalBytes > 0:
		c := m.copy
		pct := min(100, 100*float64(c.Bytes)/float64(c.TotalBytes))
		parts = append(parts, fmt.Sprintf("%3.0f%%", pct),
			fmt.Sprintf("~%s of %s table data", units.FormatBytes(float64(c.Bytes)), units.FormatBytes(float64(c.TotalBytes))))
		if c.Rate > 0 {
			parts = append(parts, units.FormatBytes(c.Rate)+"/s")
			if left := c.TotalBytes - c.Bytes; left > 0 {
				parts = append(parts, "ETA "+time.Duration(float64(left)/c.Rate*float64(time.Second)).Round(time.Second).String())
			}
		}
	case m.phase == PhaseCatchUp && m.lag >= 0:
		parts = append(parts, "lag "+units.FormatBytes(float64(m.lag)))
	}
	parts = append(parts, "("+now.Sub(m.since).Round(time.Second).String()+" in this phase)")
	return strings.Join(parts, "  ")
}

// cut shortens s to n characters.
func cut(s string, n int) string {
	r := []rune(s)
	if n <= 1 || len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
