package planner

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/internal/words"
)

// Renderer writes a plan in one format. Every format renders the same Plan
// value, so they never disagree.
type Renderer interface {
	Render(w io.Writer, p *Plan) error
}

// The renderers.
var (
	_ Renderer = Text{}
	_ Renderer = Markdown{}
	_ Renderer = JSON{}
)

// RendererFor returns the renderer of a format name: text, markdown or
// json.
func RendererFor(format string) (Renderer, error) {
	switch format {
	case "", "text":
		return Text{}, nil
	case "markdown", "md":
		return Markdown{}, nil
	case "json":
		return JSON{}, nil
	}
	return nil, fmt.Errorf("unknown format %q: use text, markdown or json", format)
}

// NoChanges is what a plan without steps says.
const NoChanges = "No changes. The cluster matches the configuration."

// Headline describes a step in one line, without its symbol.
func Headline(s Step) string {
	switch s.Kind {
	case StepInstall:
		if s.LibraryFresh {
			return fmt.Sprintf("install library version %d on %s", s.LibraryTo, s.Node)
		}
		return fmt.Sprintf("upgrade library on %s to version %d", s.Node, s.LibraryTo)
	case StepAllocate:
		then := ", run the migration, activate"
		if !s.Activate {
			then = ", run the migration, leave inactive"
		}
		return fmt.Sprintf("allocate %s on %s%s", shardsLabel(s), s.Node, then)
	case StepActivate:
		return fmt.Sprintf("activate %s on %s", shardsLabel(s), s.Node)
	case StepDeactivate:
		return fmt.Sprintf("deactivate %s on %s", shardsLabel(s), s.Node)
	case StepMove:
		verb := "move"
		if s.Resume {
			verb = "resume move of"
		}
		then := ""
		if !s.Activate {
			then = ", leave inactive"
		}
		// The size on disk, indexes included, as list weighs shards; the
		// copy's progress counts table data only, and says so.
		size := ", " + units.FormatBytes(float64(s.Bytes)) + " with indexes"
		if s.Resume && s.Bytes == 0 {
			size = "" // the source is renamed already; its size was not read
		}
		return fmt.Sprintf("%s %s from %s to %s%s%s%s%s", verb, shardsLabel(s), s.From, s.To, size, then, verifyLabel(s.Verify), windowLabel(s.RollbackWindow))
	case StepCleanup:
		size := ""
		switch {
		case s.ObjectKind == "slot":
			size = fmt.Sprintf(", retaining %s of WAL", units.FormatBytes(float64(s.Bytes)))
		case s.Bytes > 0:
			size = ", " + units.FormatBytes(float64(s.Bytes))
		}
		if s.ObjectKind == "window" {
			return fmt.Sprintf("close the rollback window of %s on %s (stream from %s dropped, %s renamed)", shardsLabel(s), s.Node, s.From, s.Object)
		}
		return fmt.Sprintf("drop %s %s on %s%s", s.ObjectKind, s.Object, s.Node, size)
	case StepDrop:
		return fmt.Sprintf("drop %s on %s with all their data, %s", shardsLabel(s), s.Node, units.FormatBytes(float64(s.Bytes)))
	case StepRetire:
		return fmt.Sprintf("retire node %s (the node registry forgets it)", s.Node)
	}
	return string(s.Kind)
}

// shardsLabel names a step's shards: "shard 7 (sh0007)", "shards 5-8
// (sh0005…sh0008)".
func shardsLabel(s Step) string {
	if s.Shards == nil {
		return "shards"
	}
	if s.Shards.Len() == 1 {
		if len(s.Schemas) == 1 {
			return fmt.Sprintf("shard %d (%s)", s.Shards.From, s.Schemas[0])
		}
		return fmt.Sprintf("shard %d", s.Shards.From)
	}
	if len(s.Schemas) > 1 {
		return fmt.Sprintf("shards %s (%s…%s)", s.Shards, s.Schemas[0], s.Schemas[len(s.Schemas)-1])
	}
	return "shards " + s.Shards.String()
}

// SummaryLine is the closing line of a plan: "Plan: 4 to allocate, 2 to
// move (1.30 GB), 1 to clean up."
func SummaryLine(p *Plan) string {
	if p.HasErrors() {
		return fmt.Sprintf("Planning failed: %d %s.", len(p.Errors), words.Plural(len(p.Errors), "error", "errors"))
	}
	if !p.HasChanges() {
		if p.Pending() {
			return "No steps to take now, but the cluster does not match the files yet: " + pendingText(p) + "."
		}
		return NoChanges
	}
	s := p.Summary
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(s.Install, "to install")
	add(s.Allocate, "to allocate")
	add(s.Activate, "to activate")
	add(s.Deactivate, "to deactivate")
	if s.Move > 0 {
		parts = append(parts, fmt.Sprintf("%d to move (%s)", s.Move, units.FormatBytes(float64(s.MoveBytes))))
	}
	add(s.Cleanup, "to clean up")
	add(s.Drop, "to drop")
	add(s.Retire, "to retire")
	line := "Plan: " + strings.Join(parts, ", ") + "."
	if len(p.InProgress) > 0 || len(p.Drains) > 0 {
		line += " Also pending: " + pendingText(p) + "."
	}
	return line
}

// pendingText says what differs from the files without a step for it.
func pendingText(p *Plan) string {
	var parts []string
	if n := len(p.InProgress); n > 0 {
		shards := map[int]bool{}
		for _, ip := range p.InProgress {
			shards[ip.Shard] = true
		}
		parts = append(parts, fmt.Sprintf("%d %s being changed by another run", len(shards), words.Plural(len(shards), "shard", "shards")))
	}
	if n := len(p.Drains); n > 0 {
		parts = append(parts, fmt.Sprintf("%d drained %s still holding shards (run pgms rebalance)", n, words.Plural(n, "node", "nodes")))
	}
	return strings.Join(parts, "; ")
}

// legend lists the symbols the plan uses, and only those.
func legend(p *Plan, pt paint) string {
	used := map[string]bool{}
	for _, s := range p.Steps {
		used[s.Symbol()] = true
	}
	var parts []string
	for _, sym := range []struct{ symbol, meaning string }{{"+", "create"}, {"~", "move or change"}, {"-", "remove"}} {
		if used[sym.symbol] {
			parts = append(parts, pt.symbol(sym.symbol, false)+" "+sym.meaning)
		}
	}
	return strings.Join(parts, ", ")
}

// Text renders a plan for a terminal or a CI log. Color marks the step
// symbols, risk codes and problem labels with terminal escape sequences:
// the caller decides (a terminal, no NO_COLOR, no -no-color).
type Text struct {
	Color bool
}

// Render implements Renderer.
func (t Text) Render(w io.Writer, p *Plan) error {
	pt := paint(t.Color)
	var b strings.Builder
	writeRunning(&b, p)
	writeProblems(&b, pt.label("Error", ansiRed), p.Errors)
	if p.HasErrors() {
		fmt.Fprintf(&b, "%s\n", SummaryLine(p))
		_, err := io.WriteString(w, b.String())
		return err
	}
	if p.HasChanges() {
		fmt.Fprintf(&b, "pgms will make these changes (symbols: %s):\n\n", legend(p, pt))
		for _, s := range p.Steps {
			writeStep(&b, s, "  ", pt.symbol(s.Symbol(), true), pt)
		}
		b.WriteString("\n")
	}
	writeExtras(&b, p)
	writeProblems(&b, pt.label("Warning", ansiYellow), p.Warnings)
	fmt.Fprintf(&b, "%s\n", SummaryLine(p))
	_, err := io.WriteString(w, b.String())
	return err
}

// writeStep writes a step's headline after mark (its symbol, as the
// format shows it) and its reason below.
func writeStep(b *strings.Builder, s Step, indent, mark string, pt paint) {
	code := ""
	if s.Code != "" {
		code = " [" + pt.label(s.Code, ansiRed) + "]"
	}
	fmt.Fprintf(b, "%s%s %s%s\n", indent, mark, Headline(s), code)
	fmt.Fprintf(b, "%s    %s\n", indent, s.Reason)
}

// Terminal colours of the text plan.
const (
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiBold   = "\x1b[1m"
	ansiReset  = "\x1b[0m"
)

// paint adds terminal colours when true and leaves text alone otherwise.
type paint bool

// symbol colours a step symbol as Terraform does: green creates, yellow
// changes, red removes; bold where it leads a step.
func (pt paint) symbol(sym string, bold bool) string {
	if !pt {
		return sym
	}
	c := map[string]string{"+": ansiGreen, "~": ansiYellow, "-": ansiRed}[sym]
	if bold {
		c = ansiBold + c
	}
	return c + sym + ansiReset
}

// label makes a word stand out in bold colour.
func (pt paint) label(s, color string) string {
	if !pt {
		return s
	}
	return ansiBold + color + s + ansiReset
}

// writeRunning says which run held the run lock while the plan was made.
func writeRunning(b *strings.Builder, p *Plan) {
	if p.Running == nil {
		return
	}
	fmt.Fprintf(b, "Note: another pgms run holds the run lock: %s.\n", p.Running.Holder)
	for _, st := range p.Running.Steps {
		fmt.Fprintf(b, "  running: %s\n", st)
	}
	b.WriteString("  This plan shows the cluster as it is now, while that run changes it; apply waits for it (--lock-timeout) or fails naming it.\n\n")
}

func writeExtras(b *strings.Builder, p *Plan) {
	if len(p.InProgress) > 0 {
		b.WriteString("In progress (another run holds these shards; the plan leaves them alone):\n")
		for _, ip := range p.InProgress {
			what := ip.Purpose
			if what == "" {
				what = "claimed"
			}
			fmt.Fprintf(b, "  shard %d on %s: %s, by %s\n", ip.Shard, ip.Node, what, ip.Holder)
		}
		b.WriteString("\n")
	}
	if len(p.Windows) > 0 {
		b.WriteString("Rollback windows (pgms rollback --shard=N switches back):\n")
		for _, w := range p.Windows {
			state := "open until"
			if w.Expired {
				state = "ended at"
			}
			fmt.Fprintf(b, "  shard %d (%s) moved %s → %s at %s, %s %s; the stream back retains %s\n", w.Shard, w.Schema, w.Node, w.To,
				w.Since.UTC().Format("2006-01-02 15:04:05"), state, w.Until.UTC().Format("2006-01-02 15:04:05 UTC"), units.FormatBytes(float64(w.RetainedBytes)))
		}
		b.WriteString("\n")
	}
	if len(p.Kept) > 0 {
		b.WriteString("Leftovers kept:\n")
		for _, s := range p.Kept {
			fmt.Fprintf(b, "  %s %s on %s: %s\n", s.ObjectKind, s.Object, s.Node, s.Reason)
		}
		b.WriteString("\n")
	}
	if len(p.Unmanaged) > 0 {
		b.WriteString("Unmanaged shards (present, but placed by no shards block; pgms leaves them alone):\n")
		for _, u := range p.Unmanaged {
			state := "inactive"
			if u.Active {
				state = "active"
			}
			fmt.Fprintf(b, "  %s on %s (%s)\n", words.ShardRange(u.Shards.From, u.Shards.To), u.Node, state)
		}
		b.WriteString("\n")
	}
}

func writeProblems(b *strings.Builder, kind string, problems []Problem) {
	for _, pr := range problems {
		fmt.Fprintf(b, "%s: %s\n", kind, pr.Summary)
		if pr.Source != "" {
			fmt.Fprintf(b, "  on %s\n", pr.Source)
		}
		if pr.Detail != "" {
			fmt.Fprintf(b, "  %s\n", pr.Detail)
		}
		b.WriteString("\n")
	}
}

// Markdown renders a plan for a pull-request comment: the summary first,
// the steps collapsed, and never more than MarkdownLimit characters (code
// hosts cut comments at 65,536). The same plan gives the same comment,
// byte for byte: reasons carry absolute times, and the comment opens with
// a hidden marker holding its fingerprint (see CommentMarker), so a bot
// updates its own comment and skips posting an identical one.
type Markdown struct{}

// MarkdownLimit is the most characters a Markdown plan takes.
const MarkdownLimit = 65000

// CommentMarker opens the hidden first line of a Markdown plan:
// "<!-- pgms-plan fingerprint=<hex> -->". The fingerprint is the SHA-256
// of the rest of the comment, so it changes exactly when what a reader
// sees changes.
const CommentMarker = "<!-- pgms-plan fingerprint="

// Render implements Renderer.
func (Markdown) Render(w io.Writer, p *Plan) error {
	body := markdownBody(p, MarkdownLimit-markerLen)
	sum := sha256.Sum256([]byte(body))
	_, err := fmt.Fprintf(w, "%s%x -->\n%s", CommentMarker, sum[:16], body)
	return err
}

// markerLen is the length of the marker line: 16 bytes of the hash in hex.
const markerLen = len(CommentMarker) + 32 + len(" -->\n")

// markdownBody is the comment below the marker, at most limit characters.
func markdownBody(p *Plan, limit int) string {
	var head strings.Builder
	switch {
	case p.HasErrors():
		fmt.Fprintf(&head, "### pgms plan\n\n:x: **%s**\n\n", SummaryLine(p))
		for _, pr := range p.Errors {
			fmt.Fprintf(&head, "- **%s**", mdEscape(pr.Summary))
			if pr.Source != "" {
				fmt.Fprintf(&head, " (`%s`)", pr.Source)
			}
			if pr.Detail != "" {
				fmt.Fprintf(&head, "  \n  %s", mdEscape(pr.Detail))
			}
			head.WriteString("\n")
		}
		return head.String()
	case !p.Pending():
		fmt.Fprintf(&head, "### pgms plan\n\n**No changes.** %s\n", strings.TrimPrefix(NoChanges, "No changes. "))
	case !p.HasChanges():
		fmt.Fprintf(&head, "### pgms plan\n\n%s\n", SummaryLine(p))
	default:
		fmt.Fprintf(&head, "### pgms plan\n\n**%s**\n", SummaryLine(p))
		if codes := riskCodes(p); len(codes) > 0 {
			fmt.Fprintf(&head, "\nSteps with risk codes: %s.\n", strings.Join(codes, ", "))
		}
	}
	if p.Running != nil {
		var r strings.Builder
		writeRunning(&r, p)
		head.WriteString("\n> " + strings.ReplaceAll(strings.TrimRight(mdEscape(r.String()), "\n"), "\n", "\n> ") + "\n")
	}
	var body strings.Builder
	if p.HasChanges() {
		// A diff block colours lines by their first character: + green,
		// - red, and ! (a change, as Atlantis marks it) orange.
		body.WriteString("```diff\n")
		for _, s := range p.Steps {
			writeStep(&body, s, "", diffMark(s), false)
		}
		body.WriteString("```\n")
	}
	var extras strings.Builder
	writeExtras(&extras, p)
	writeProblems(&extras, "Warning", p.Warnings)
	if extras.Len() > 0 {
		if body.Len() > 0 {
			body.WriteString("\n")
		}
		body.WriteString("```\n" + strings.TrimRight(extras.String(), "\n") + "\n```\n")
	}
	out := head.String()
	if body.Len() > 0 {
		details := fmt.Sprintf("\n<details><summary>%s</summary>\n\n%s\n</details>\n", foldedSummary(p), body.String())
		if len(out)+len(details) > limit {
			details = truncateDetails(body.String(), limit-len(out), len(p.Steps))
		}
		out += details
	}
	return out
}

// diffMark is a step's symbol in a diff block: ~ means nothing there, so
// a move or flip gets the ! that diff highlighting shows as changed.
func diffMark(s Step) string {
	if sym := s.Symbol(); sym != "~" {
		return sym
	}
	return "!"
}

// foldedSummary is the label of the collapsed part of a comment: the
// steps, or, for a plan without any, what else it lists.
func foldedSummary(p *Plan) string {
	if n := len(p.Steps); n > 0 {
		return fmt.Sprintf("%d %s", n, words.Plural(n, "step", "steps"))
	}
	var parts []string
	add := func(n int, one, many string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, words.Plural(n, one, many)))
		}
	}
	add(len(p.InProgress), "shard in progress", "shards in progress")
	add(len(p.Kept), "leftover kept", "leftovers kept")
	add(len(p.Unmanaged), "unmanaged range", "unmanaged ranges")
	add(len(p.Warnings), "warning", "warnings")
	if len(parts) == 0 {
		return "details"
	}
	return strings.Join(parts, ", ")
}

// truncateDetails cuts the collapsed body at a line boundary so that the
// whole comment stays within budget, and says so.
func truncateDetails(body string, budget, steps int) string {
	note := "\n… the plan is longer than a comment can hold; the full plan is in the job's log (pgms plan -format=text).\n```\n"
	wrapper := fmt.Sprintf("\n<details><summary>%d steps (truncated)</summary>\n\n\n</details>\n", steps)
	room := budget - len(note) - len(wrapper)
	if room < 0 {
		room = 0
	}
	cut := body
	if len(cut) > room {
		cut = cut[:room]
		if i := strings.LastIndexByte(cut, '\n'); i >= 0 {
			cut = cut[:i+1]
		}
	}
	return fmt.Sprintf("\n<details><summary>%d steps (truncated)</summary>\n\n%s%s\n</details>\n", steps, cut, note)
}

func riskCodes(p *Plan) []string {
	seen := map[string]int{}
	var order []string
	for _, s := range p.Steps {
		if s.Code == "" {
			continue
		}
		if seen[s.Code] == 0 {
			order = append(order, s.Code)
		}
		seen[s.Code]++
	}
	out := make([]string, len(order))
	for i, c := range order {
		out[i] = fmt.Sprintf("`%s` ×%d", c, seen[c])
	}
	return out
}

func mdEscape(s string) string {
	r := strings.NewReplacer("<", "&lt;", ">", "&gt;", "*", "\\*", "_", "\\_", "`", "\\`")
	return r.Replace(s)
}

// JSON renders the plan as its versioned JSON document (FormatVersion).
type JSON struct{}

// Render implements Renderer.
func (JSON) Render(w io.Writer, p *Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// windowLabel shows a move's rollback window.
func windowLabel(window string) string {
	if window == "" {
		return ""
	}
	return ", rollback window " + window
}

// verifyLabel shows a move's verification level; a plan file written
// before the field existed has none.
func verifyLabel(level string) string {
	switch level {
	case "":
		return ""
	case "off":
		return ", not verified"
	}
	return ", verify " + level
}
