package views

import (
	"fmt"
	"io"
	"strings"

	"github.com/pgms-dev/pgms/runner"
)

// Install is what pgms install shows: the library on every node.
type Install struct {
	Header
	Nodes []InstallNode `json:"nodes"`
}

// InstallNode is the library on one node.
type InstallNode struct {
	Node   string `json:"node"`
	Schema string `json:"schema,omitempty"`
	// Outcome is installed, upgraded, up_to_date or failed (Error says
	// why). FromVersion 0 is pg-microsharding's library.
	Outcome     string `json:"outcome"`
	FromVersion int    `json:"from_version"`
	ToVersion   int    `json:"to_version"`
	Error       string `json:"error,omitempty"`
}

// NewInstall builds the report of an install.
func NewInstall(results []runner.InstallResult) *Install {
	v := &Install{Nodes: []InstallNode{}}
	for _, r := range results {
		n := InstallNode{Node: r.Node, Schema: r.Result.Schema, FromVersion: r.Result.FromVersion, ToVersion: r.Result.ToVersion}
		switch {
		case r.Err != nil:
			n.Outcome, n.Error = "failed", r.Err.Error()
		case r.Result.Fresh:
			n.Outcome = "installed"
		case r.Result.Changed():
			n.Outcome = "upgraded"
		default:
			n.Outcome = "up_to_date"
		}
		v.Nodes = append(v.Nodes, n)
	}
	return v
}

// Failed lists the errors of the nodes the library could not go to.
func (v *Install) Failed() []string {
	return nodeErrors(v.Nodes, func(n InstallNode) string { return n.Error })
}

func (v *Install) text(w io.Writer) error {
	var b strings.Builder
	for _, n := range v.Nodes {
		switch {
		case n.Outcome == "failed":
		case n.Outcome == "installed":
			fmt.Fprintf(&b, "%s: installed library version %d in schema %s\n", n.Node, n.ToVersion, n.Schema)
		case n.Outcome == "upgraded" && n.FromVersion == 0:
			fmt.Fprintf(&b, "%s: upgraded pg-microsharding's library in schema %s to version %d (active shards kept)\n", n.Node, n.Schema, n.ToVersion)
		case n.Outcome == "upgraded":
			fmt.Fprintf(&b, "%s: upgraded library in schema %s from version %d to %d (active shards kept)\n", n.Node, n.Schema, n.FromVersion, n.ToVersion)
		default:
			fmt.Fprintf(&b, "%s: library version %d in schema %s is up to date\n", n.Node, n.ToVersion, n.Schema)
		}
	}
	return flush(w, &b)
}
