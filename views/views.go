// Package views holds what pgms's commands show: one report type per
// command, each a plain value that renders for a person (Text), as a
// versioned JSON document (JSON) and, where a pull request wants it, as
// Markdown. The text and the JSON come from the same value, so they never
// disagree. The plan has its renderers in planner; every other command's
// are here.
//
// views formats and nothing else: it never opens a connection, reads a
// file or asks a question. Reports are built from what the library
// packages return (config, state, planner, rebalance, executor, runner);
// only cmd/pgms depends on views.
package views

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// FormatVersion is the version of every report's JSON document, in its
// format_version field. It changes only when a field changes meaning or
// disappears; new fields may appear within a version.
const FormatVersion = 1

// Header opens every report's JSON document. A report nested in another
// (a move in an apply) leaves it out.
type Header struct {
	FormatVersion int `json:"format_version,omitempty"`
}

func (h *Header) header() *Header { return h }

// Report is the model of one command's output.
type Report interface {
	// text writes the report for a person.
	text(w io.Writer) error
	header() *Header
}

// A markdownReport has a form for pull-request comments.
type markdownReport interface {
	Report
	markdown(w io.Writer) error
}

// Renderer writes a report in one format.
type Renderer interface {
	Render(w io.Writer, r Report) error
}

// The renderers.
var (
	_ Renderer = Text{}
	_ Renderer = JSON{}
	_ Renderer = Markdown{}
)

// The format names of the --format flag.
const (
	FormatText     = "text"
	FormatJSON     = "json"
	FormatMarkdown = "markdown"
)

// RendererFor returns the renderer of a format name among allowed (the
// formats the command offers).
func RendererFor(format string, allowed ...string) (Renderer, error) {
	if format == "md" {
		format = FormatMarkdown
	}
	if !slices.Contains(allowed, format) {
		return nil, fmt.Errorf("unknown format %q: use %s", format, orList(allowed))
	}
	switch format {
	case FormatJSON:
		return JSON{}, nil
	case FormatMarkdown:
		return Markdown{}, nil
	}
	return Text{}, nil
}

func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// Text renders a report for a terminal or a CI log.
type Text struct{}

// Render implements Renderer.
func (Text) Render(w io.Writer, r Report) error { return r.text(w) }

// JSON renders a report as its JSON document, format_version first.
type JSON struct{}

// Render implements Renderer.
func (JSON) Render(w io.Writer, r Report) error {
	r.header().FormatVersion = FormatVersion
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Markdown renders a report for a pull-request comment; a report without
// a Markdown form is written as text in a code block.
type Markdown struct{}

// Render implements Renderer.
func (Markdown) Render(w io.Writer, r Report) error {
	if m, ok := r.(markdownReport); ok {
		return m.markdown(w)
	}
	var b strings.Builder
	if err := r.text(&b); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "```\n%s```\n", b.String())
	return err
}

// IsJSON reports whether r writes JSON: commands then keep their progress
// lines and questions off standard output.
func IsJSON(r Renderer) bool { _, ok := r.(JSON); return ok }

// flush writes what a renderer built.
func flush(w io.Writer, b *strings.Builder) error {
	_, err := io.WriteString(w, b.String())
	return err
}
