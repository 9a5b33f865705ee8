package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/state"
)

func init() { register(newListCommand) }

// listedShard is one row of pgms list.
type listedShard struct {
	Schema string         `json:"schema"`
	Weight float64        `json:"weight"`
	Share  float64        `json:"share"` // of the node's total weight, 0..1
	Extra  []state.Column `json:"extra,omitempty"`
}

// listedNode is one node's table.
type listedNode struct {
	Node   string        `json:"node"`
	Error  string        `json:"error,omitempty"`
	Shards []listedShard `json:"shards"`
	Total  float64       `json:"total"`
	Share  float64       `json:"share"` // of the grand total, 0..1
}

type listing struct {
	Bytes bool         `json:"weight_in_bytes"`
	Nodes []listedNode `json:"nodes"`
	Total float64      `json:"total"`
	Count int          `json:"shards"`
}

func newListCommand() *cobra.Command {
	var (
		nodes     nodeFlags
		weightSQL string
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the active shards of every node with their weights",
		Long: `List prints, for every node, its active shards with their weight and share of
the node, the node's total, and a grand total. The default weight is the total
relation size of a shard's tables; --weight-sql replaces it with a query run
once per shard with search_path set to the shard (first column: the weight, a
number optionally with a unit such as "120 MB"; further columns are shown as
they are). Standbys and duplicate DSNs are skipped.`,
		Example: `  pgms list --dsn postgres://admin@db1/app --dsn postgres://admin@db2/app
  pgms list --weight-sql "SELECT count(*) FROM users" --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dsns, err := nodes.resolve()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			conns, errs := connectAll(ctx, dsns)
			defer closeAll(conns)
			l := listing{Bytes: weightSQL == ""}
			failed := 0
			for i, n := range conns {
				if errs[i] != nil {
					failed++
					l.Nodes = append(l.Nodes, listedNode{Node: nodeNameOf(dsns[i]), Error: errs[i].Error()})
					continue
				}
				ln, standby, err := listNode(ctx, n, nodes.schema, weightSQL)
				if standby {
					fmt.Fprintf(cmd.ErrOrStderr(), "pgms: node %s is a standby; skipped\n", n.Name)
					continue
				}
				if err != nil {
					failed++
					ln.Error = fmt.Sprintf("node %s: %s", n.Name, describe(err))
				}
				if !ln.bytes() {
					l.Bytes = false
				}
				l.Nodes = append(l.Nodes, ln.listedNode)
			}
			l.finish()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(l); err != nil {
					return err
				}
			} else {
				l.render(cmd.OutOrStdout())
			}
			if failed > 0 {
				for _, n := range l.Nodes {
					if n.Error != "" && !asJSON {
						fmt.Fprintln(cmd.ErrOrStderr(), "pgms: "+n.Error)
					}
				}
				return withCode(exitError, fmt.Errorf("%d of %d nodes could not be listed", failed, len(dsns)))
			}
			return nil
		},
	}
	nodes.add(cmd)
	cmd.Flags().StringVar(&weightSQL, "weight-sql", envOr("WEIGHT_SQL", ""), "query returning a shard's weight, run with search_path set to the shard ($WEIGHT_SQL)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

type nodeListing struct {
	listedNode
	isBytes bool
}

func (n nodeListing) bytes() bool { return n.isBytes || n.Error != "" }

func listNode(ctx context.Context, n *pgutil.Node, librarySchema, weightSQL string) (nodeListing, bool, error) {
	ln := nodeListing{listedNode: listedNode{Node: n.Name}, isBytes: weightSQL == ""}
	var standby bool
	if err := n.Conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby); err != nil {
		return ln, false, err
	}
	if standby {
		return ln, true, nil
	}
	schemas, err := state.ListActiveShards(ctx, n.Conn, librarySchema)
	if err != nil {
		if pgutil.SQLState(err) == pgutil.CodeInvalidSchemaName || pgutil.SQLState(err) == "42883" {
			return ln, false, fmt.Errorf("the microsharding library is not installed in schema %q; run pgms install", librarySchema)
		}
		return ln, false, err
	}
	var weights map[string]state.Weight
	if weightSQL == "" {
		weights, err = state.DefaultWeights(ctx, n.Conn, schemas)
	} else {
		weights, err = state.QueryWeights(ctx, n.Conn, schemas, weightSQL)
	}
	if err != nil {
		return ln, false, err
	}
	for _, s := range schemas {
		w := weights[s]
		if weightSQL != "" && !w.Bytes {
			ln.isBytes = false
		}
		ln.Shards = append(ln.Shards, listedShard{Schema: s, Weight: w.Value, Extra: w.Extra})
		ln.Total += w.Value
	}
	for i := range ln.Shards {
		if ln.Total > 0 {
			ln.Shards[i].Share = ln.Shards[i].Weight / ln.Total
		}
	}
	return ln, false, nil
}

func (l *listing) finish() {
	for _, n := range l.Nodes {
		l.Total += n.Total
		l.Count += len(n.Shards)
	}
	for i := range l.Nodes {
		if l.Total > 0 {
			l.Nodes[i].Share = l.Nodes[i].Total / l.Total
		}
	}
	sort.SliceStable(l.Nodes, func(i, j int) bool { return l.Nodes[i].Node < l.Nodes[j].Node })
}

func (l *listing) weight(v float64) string {
	if l.Bytes {
		return units.FormatBytes(v)
	}
	return units.FormatNumber(v)
}

func (l *listing) render(w io.Writer) {
	for i, n := range l.Nodes {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if n.Error != "" {
			fmt.Fprintf(w, "%s: unavailable\n", n.Node)
			continue
		}
		fmt.Fprintf(w, "%s: %s, %s (%s of all)\n", n.Node, plural(len(n.Shards), "active shard"), l.weight(n.Total), percent(n.Share))
		if len(n.Shards) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
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
	fmt.Fprintf(w, "\nTotal: %s, %s on %s\n", plural(l.Count, "active shard"), l.weight(l.Total), plural(len(l.Nodes), "node"))
}

func percent(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }

// plural formats a count with a noun, adding an s unless the count is one.
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
