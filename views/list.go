package views

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/internal/words"
	"github.com/pgms-dev/pgms/state"
)

// List is what pgms list shows: every node's active shards with their
// weights and shares, node totals and the grand total.
type List struct {
	Header
	// WeightInBytes says weights are sizes in bytes (the default measure,
	// or a weight query answering with units).
	WeightInBytes bool       `json:"weight_in_bytes"`
	Nodes         []ListNode `json:"nodes"`
	// Total is the weight of every listed shard; Shards their number.
	Total  float64 `json:"total"`
	Shards int     `json:"shards"`
}

// ListNode is one node's active shards.
type ListNode struct {
	Node string `json:"node"`
	// Error says why the node could not be listed.
	Error  string      `json:"error,omitempty"`
	Shards []ListShard `json:"shards"`
	Total  float64     `json:"total"`
	// Share is the node's part of the grand total, 0 to 1.
	Share float64 `json:"share"`
}

// ListShard is one active shard.
type ListShard struct {
	Schema string  `json:"schema"`
	Weight float64 `json:"weight"`
	// Share is the shard's part of its node's total, 0 to 1.
	Share float64 `json:"share"`
	// Extra holds the further columns of the weight query (the default
	// measure adds "tables").
	Extra []Column `json:"extra,omitempty"`
}

// Column is a named value.
type Column struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// NewList lists the active shards of the primaries read (with weights);
// standbys are left out. A node that could not be read, or has no library,
// is listed with its error. Weights count as bytes when every measured
// weight is a size or, with nothing measured, when no weight query was
// given.
func NewList(live *state.Cluster, librarySchema, weightSQL string) *List {
	l := &List{WeightInBytes: true, Nodes: []ListNode{}}
	measured := false
	for _, n := range live.Nodes {
		if n.Standby {
			continue
		}
		ln := ListNode{Node: n.Name, Shards: []ListShard{}}
		switch {
		case n.Err != nil:
			ln.Error = n.Err.Error()
		case !n.Library.Installed:
			ln.Error = fmt.Sprintf("node %s: the microsharding library is not installed in schema %q; run pgms install", n.Name, librarySchema)
		}
		for _, s := range n.Shards {
			if !s.Active || ln.Error != "" {
				continue
			}
			ls := ListShard{Schema: s.Schema}
			if s.Weight != nil {
				measured = true
				ls.Weight = s.Weight.Value
				l.WeightInBytes = l.WeightInBytes && s.Weight.Bytes
				for _, c := range s.Weight.Extra {
					ls.Extra = append(ls.Extra, Column(c))
				}
			}
			ln.Shards = append(ln.Shards, ls)
			ln.Total += ls.Weight
		}
		l.Nodes = append(l.Nodes, ln)
	}
	if !measured {
		l.WeightInBytes = weightSQL == ""
	}
	l.total()
	return l
}

// total adds up the nodes and works out the shares.
func (l *List) total() {
	l.Total, l.Shards = 0, 0
	for i := range l.Nodes {
		n := &l.Nodes[i]
		for j := range n.Shards {
			if n.Total > 0 {
				n.Shards[j].Share = n.Shards[j].Weight / n.Total
			}
		}
		l.Total += n.Total
		l.Shards += len(n.Shards)
	}
	for i := range l.Nodes {
		if l.Total > 0 {
			l.Nodes[i].Share = l.Nodes[i].Total / l.Total
		}
	}
	sort.SliceStable(l.Nodes, func(i, j int) bool { return l.Nodes[i].Node < l.Nodes[j].Node })
}

// Failed lists the errors of the nodes that could not be listed.
func (l *List) Failed() []string {
	return nodeErrors(l.Nodes, func(n ListNode) string { return n.Error })
}

// nodeErrors lists the errors of the nodes that have one.
func nodeErrors[N any](nodes []N, errorOf func(N) string) []string {
	var errs []string
	for _, n := range nodes {
		if e := errorOf(n); e != "" {
			errs = append(errs, e)
		}
	}
	return errs
}

func (l *List) weight(v float64) string {
	if l.WeightInBytes {
		return units.FormatBytes(v)
	}
	return units.FormatNumber(v)
}

func (l *List) text(w io.Writer) error {
	var b strings.Builder
	for i, n := range l.Nodes {
		if i > 0 {
			b.WriteString("\n")
		}
		if n.Error != "" {
			fmt.Fprintf(&b, "%s: unavailable\n", n.Node)
			continue
		}
		fmt.Fprintf(&b, "%s: %s, %s (%s of all)\n", n.Node, words.Count(len(n.Shards), "active shard"), l.weight(n.Total), percent(n.Share))
		if len(n.Shards) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		header := []string{"SHARD", "WEIGHT", "SHARE"}
		for _, c := range n.Shards[0].Extra {
			header = append(header, strings.ToUpper(c.Name))
		}
		fmt.Fprintln(tw, "  "+strings.Join(header, "\t")+"\t")
		for _, s := range n.Shards {
			row := []string{s.Schema, l.weight(s.Weight), percent(s.Share)}
			for _, c := range s.Extra {
				row = append(row, c.Value)
			}
			fmt.Fprintln(tw, "  "+strings.Join(row, "\t")+"\t")
		}
		tw.Flush()
	}
	fmt.Fprintf(&b, "\nTotal: %s, %s on %s\n", words.Count(l.Shards, "active shard"), l.weight(l.Total), words.Count(len(l.Nodes), "node"))
	return flush(w, &b)
}

func percent(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }
