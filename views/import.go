package views

import (
	"fmt"
	"io"
	"strings"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/words"
	"github.com/pgms-dev/pgms/state"
)

// Import is what pgms import shows: the file written, what it describes,
// and the variables it reads the DSNs from.
type Import struct {
	Header
	File   string `json:"file"`
	Nodes  int    `json:"nodes"`
	Shards int    `json:"shards"`
	Active int    `json:"active"`
	// Variables are the environment variables the file reads the DSNs
	// from, with each DSN (without its password); empty when the file
	// holds the DSNs.
	Variables []Column `json:"variables"`
}

// NewImport builds the report of the topology t written to file; literal
// says the file holds the DSNs themselves.
func NewImport(file string, t *config.Topology, nodes []state.NodeSpec, literal bool) *Import {
	v := &Import{File: file, Nodes: len(t.Nodes), Variables: []Column{}}
	v.Shards, v.Active = t.Counts()
	if !literal {
		for _, n := range nodes {
			v.Variables = append(v.Variables, Column{Name: config.DSNVariable(n.Name), Value: dsn.Redact(n.DSN)})
		}
	}
	return v
}

func (v *Import) text(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Wrote %s: %s, %s (%d active).\n", v.File, words.Count(v.Nodes, "node"), words.Count(v.Shards, "shard"), v.Active)
	if len(v.Variables) > 0 {
		b.WriteString("\nIt reads the DSNs from these variables; set them wherever pgms runs:\n")
		for _, c := range v.Variables {
			fmt.Fprintf(&b, "  export %s='%s'\n", c.Name, c.Value)
		}
	}
	return flush(w, &b)
}
