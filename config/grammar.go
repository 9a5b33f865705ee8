package config

import (
	_ "embed"
	"strings"
)

// The package documentation is the one description of the files; the
// help text is made from it rather than kept as a second copy.
//
//go:embed doc.go
var docSource string

// Grammar is the description of the topology files for pgms help
// topology: the package documentation from "# Files" on, as plain text
// (headings in capitals, the grammar indented).
func Grammar() string {
	var b strings.Builder
	started := false
	for _, line := range strings.Split(docSource, "\n") {
		if !strings.HasPrefix(line, "//") {
			break
		}
		text := strings.TrimPrefix(strings.TrimPrefix(line, "//"), " ")
		if strings.HasPrefix(text, "# ") {
			if started = started || text == "# Files"; started {
				b.WriteString(strings.ToUpper(strings.TrimPrefix(text, "# ")) + "\n")
			}
			continue
		}
		if !started {
			continue
		}
		if strings.HasPrefix(text, "\t") {
			text = "    " + strings.TrimPrefix(text, "\t")
		}
		b.WriteString(text + "\n")
	}
	return strings.TrimSpace(b.String())
}
