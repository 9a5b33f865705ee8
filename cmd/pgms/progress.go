package main

import (
	"io"
	"time"

	"github.com/pgms-dev/pgms/executor"
)

// progressView is how apply and move show moves as they go: on a
// terminal, one live line per move redrawn in place; elsewhere (a CI log,
// a file) the plain timestamped lines, with heartbeats.
type progressView struct {
	executor.Reporter
	live  *executor.LiveReporter
	lines *executor.LineReporter
}

func newProgressView(w io.Writer, every time.Duration) *progressView {
	if width, ok := terminalWidth(w); ok {
		l := executor.NewLiveReporter(w, width)
		return &progressView{Reporter: l, live: l}
	}
	l := executor.NewLineReporter(w, every)
	return &progressView{Reporter: l, lines: l}
}

// observer is the live view's step counter, nil without a live view.
func (p *progressView) observer() executor.StepObserver {
	if p.live == nil {
		return nil
	}
	return p.live
}

// route returns where a command writes lines while moves run: through the
// live view when w is a terminal too, so that the lines land above the
// redrawn block instead of inside it.
func (p *progressView) route(w io.Writer) io.Writer {
	if _, ok := terminalWidth(w); ok && p.live != nil {
		return p.live.Writer()
	}
	return w
}

// Close ends the view: the live block goes, heartbeats stop.
func (p *progressView) Close() {
	if p.live != nil {
		p.live.Close()
	}
	if p.lines != nil {
		p.lines.Close()
	}
}
