package views

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// table lays out rows of cells in columns, two spaces in and three
// between columns, as every table of pgms's text output is set.
type table struct {
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(b *strings.Builder) {
	tw := tabwriter.NewWriter(b, 0, 0, 3, ' ', 0)
	for _, row := range t.rows {
		// The last cell ends the line unpadded.
		tw.Write([]byte("  " + strings.Join(row, "\t") + "\n")) //nolint:errcheck // a strings.Builder does not fail
	}
	tw.Flush() //nolint:errcheck // a strings.Builder does not fail
}

// beforeAfter writes "before → after" pairs with both halves aligned right
// over all pairs, so that the arrows line up in a column, and the pairs
// set right under a title wider than they are.
func beforeAfter(title string, pairs [][2]string) []string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 1, ' ', tabwriter.AlignRight)
	for _, p := range pairs {
		tw.Write([]byte(p[0] + "\t→\t" + p[1] + "\t\n")) //nolint:errcheck // a strings.Builder does not fail
	}
	tw.Flush() //nolint:errcheck // a strings.Builder does not fail
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")[:len(pairs)]
	width := utf8.RuneCountInString(title)
	for i, l := range lines {
		// Every cell is padded on its left by one space; the first one's
		// padding is not wanted.
		lines[i] = fmt.Sprintf("%*s", width, strings.TrimPrefix(l, " "))
	}
	return lines
}
