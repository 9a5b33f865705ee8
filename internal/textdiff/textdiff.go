// Package textdiff writes the differences between two texts as a unified
// diff (the format of diff -u and git diff), for showing a person what a
// command changes or would change in a file.
package textdiff

import (
	"fmt"
	"strings"

	"github.com/sergi/go-diff/diffmatchpatch"
)

// Context is the number of unchanged lines shown around each change.
const Context = 3

// line is one line of the diff: ' ' kept, '-' removed, '+' added.
type line struct {
	kind byte
	text string // without its newline
	eol  bool   // the line ends with a newline
}

// Unified returns the unified diff that turns old into new, with ---/+++
// headers naming oldName and newName, or "" when the texts are equal.
func Unified(oldName, newName, old, new string) string {
	if old == new {
		return ""
	}
	lines := diffLines(old, new)
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s\n+++ %s\n", oldName, newName)
	for _, h := range hunks(lines) {
		h.write(&b, lines)
	}
	return b.String()
}

// diffLines compares the texts line by line.
func diffLines(old, new string) []line {
	dmp := diffmatchpatch.New()
	dmp.DiffTimeout = 0 // the same input always gives the same diff
	a, b, index := dmp.DiffLinesToRunes(old, new)
	diffs := dmp.DiffCharsToLines(dmp.DiffMainRunes(a, b, false), index)
	var out []line
	for _, d := range diffs {
		kind := byte(' ')
		switch d.Type {
		case diffmatchpatch.DiffDelete:
			kind = '-'
		case diffmatchpatch.DiffInsert:
			kind = '+'
		}
		text := d.Text
		for text != "" {
			l := line{kind: kind}
			if i := strings.IndexByte(text, '\n'); i >= 0 {
				l.text, l.eol, text = text[:i], true, text[i+1:]
			} else {
				l.text, text = text, ""
			}
			out = append(out, l)
		}
	}
	return out
}

// hunk is the lines [start, end) of a diff, starting at line oldStart of
// the old text and newStart of the new one (1-based).
type hunk struct {
	start, end         int
	oldStart, newStart int
}

// hunks groups changes closer than twice the context into one hunk.
func hunks(lines []line) []hunk {
	var out []hunk
	oldLine, newLine := 1, 1
	// Line numbers before each diff line.
	olds := make([]int, len(lines)+1)
	news := make([]int, len(lines)+1)
	for i, l := range lines {
		olds[i], news[i] = oldLine, newLine
		if l.kind != '+' {
			oldLine++
		}
		if l.kind != '-' {
			newLine++
		}
	}
	olds[len(lines)], news[len(lines)] = oldLine, newLine
	for i := 0; i < len(lines); {
		if lines[i].kind == ' ' {
			i++
			continue
		}
		start := max(0, i-Context)
		end := i
		for end < len(lines) {
			if lines[end].kind != ' ' {
				end++
				continue
			}
			// A run of unchanged lines: the hunk goes on only if another
			// change follows within twice the context.
			j := end
			for j < len(lines) && lines[j].kind == ' ' {
				j++
			}
			if j < len(lines) && j-end <= 2*Context {
				end = j
				continue
			}
			end = min(end+Context, len(lines))
			break
		}
		out = append(out, hunk{start: start, end: end, oldStart: olds[start], newStart: news[start]})
		i = end
	}
	return out
}

func (h hunk) write(b *strings.Builder, lines []line) {
	var oldCount, newCount int
	for _, l := range lines[h.start:h.end] {
		if l.kind != '+' {
			oldCount++
		}
		if l.kind != '-' {
			newCount++
		}
	}
	fmt.Fprintf(b, "@@ -%s +%s @@\n", span(h.oldStart, oldCount), span(h.newStart, newCount))
	for _, l := range lines[h.start:h.end] {
		b.WriteByte(l.kind)
		b.WriteString(l.text)
		b.WriteByte('\n')
		if !l.eol {
			b.WriteString("\\ No newline at end of file\n")
		}
	}
}

// span writes a hunk range the way diff does: the count is left out when
// it is 1, and an empty range names the line before it.
func span(start, count int) string {
	switch count {
	case 0:
		return fmt.Sprintf("%d,0", start-1)
	case 1:
		return fmt.Sprint(start)
	}
	return fmt.Sprintf("%d,%d", start, count)
}
