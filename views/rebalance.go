package views

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/textdiff"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/internal/words"
	"github.com/pgms-dev/pgms/rebalance"
	"github.com/pgms-dev/pgms/state"
)

// Rebalance is what pgms rebalance shows: every node before and after, the
// moves, how good the result is, and the change to the topology files.
type Rebalance struct {
	Header
	// Measure is what the weights are: "total relation size" or
	// "weight_sql".
	Measure string `json:"measure"`
	// WeightInBytes says weights are sizes in bytes.
	WeightInBytes bool `json:"weight_in_bytes"`
	// TolerancePercent is the accepted deviation from a fair share: 5 is
	// ±5%.
	TolerancePercent float64 `json:"tolerance_percent"`
	// MaxMoves and MaxBytes are the budgets given (0: none).
	MaxMoves int   `json:"max_moves,omitempty"`
	MaxBytes int64 `json:"max_bytes,omitempty"`

	Nodes []RebalanceNode `json:"nodes"`
	// TotalWeight and Shards are the whole cluster's.
	TotalWeight float64 `json:"total_weight"`
	Shards      int     `json:"shards"`

	// Moves are the shards whose node changes, by from, to and shard.
	Moves []RebalanceMove `json:"moves"`
	// MovedWeight is the weight the moves carry; LowerBound the least any
	// placement reaching every fair share moves.
	MovedWeight float64 `json:"moved_weight"`
	LowerBound  float64 `json:"lower_bound"`
	// Balanced: every drained node ends empty and every other node within
	// the tolerance of its fair share. Reachable is false when a budget
	// stopped short of that.
	Balanced  bool `json:"balanced"`
	Reachable bool `json:"reachable"`
	// Oversized are shards heavier than a fair share allows.
	Oversized []RebalanceShard `json:"oversized,omitempty"`
	// NearEmptyWeight is the weight at or below which a shard counts as
	// near-empty (spread by count).
	NearEmptyWeight float64 `json:"near_empty_weight"`
	// TablesWithoutKey are moved shards that logical replication cannot
	// carry until their tables get a key.
	TablesWithoutKey []RebalanceShard `json:"tables_without_key,omitempty"`

	// Files are the topology files the rebalance rewrites, with the
	// unified diff of each; Written says they were written.
	Files   []FileChange `json:"files"`
	Written bool         `json:"written"`
}

// RebalanceNode is one node before and after.
type RebalanceNode struct {
	Node         string  `json:"node"`
	Capacity     float64 `json:"capacity"`
	Drain        bool    `json:"drain"`
	ShardsBefore int     `json:"shards_before"`
	ShardsAfter  int     `json:"shards_after"`
	WeightBefore float64 `json:"weight_before"`
	WeightAfter  float64 `json:"weight_after"`
	// Fair is the node's fair share (0 when drained).
	Fair float64 `json:"fair"`
}

// RebalanceMove is one shard changing node.
type RebalanceMove struct {
	Shard  int     `json:"shard"`
	From   string  `json:"from"`
	To     string  `json:"to"`
	Weight float64 `json:"weight"`
	// Bytes is what the move copies; Allocated is false for a shard not
	// allocated yet, which plan allocates in its new place instead.
	Bytes     int64 `json:"bytes"`
	Allocated bool  `json:"allocated"`
}

// RebalanceShard names a shard in a remark.
type RebalanceShard struct {
	Shard  int      `json:"shard"`
	Node   string   `json:"node"`
	Weight float64  `json:"weight"`
	Tables []string `json:"tables,omitempty"`
}

// FileChange is a file a command rewrites, with the unified diff.
type FileChange struct {
	Path string `json:"path"`
	Diff string `json:"diff"`
}

// RebalanceSource is what NewRebalance reads.
type RebalanceSource struct {
	Topology *config.Topology
	// Live gives the tables without a key of the moved shards.
	Live     *state.Cluster
	Proposal rebalance.Proposal
	// TolerancePercent, MaxMoves and MaxBytes are the settings used.
	TolerancePercent float64
	MaxMoves         int
	MaxBytes         int64
}

// NewRebalance builds the report of a proposal.
func NewRebalance(src RebalanceSource) *Rebalance {
	t, in, res := src.Topology, src.Proposal.Input, src.Proposal.Result
	r := &Rebalance{
		Measure: "total relation size", WeightInBytes: in.Bytes, TolerancePercent: src.TolerancePercent,
		MaxMoves: src.MaxMoves, MaxBytes: src.MaxBytes,
		MovedWeight: res.Moved, LowerBound: res.LowerBound, Balanced: res.Balanced, Reachable: res.Reachable,
		NearEmptyWeight: res.NearEmpty, Moves: []RebalanceMove{}, Files: []FileChange{},
	}
	if t.Cluster.WeightSQL != "" {
		r.Measure = "weight_sql"
	}
	for _, n := range res.Nodes {
		c, _ := t.Node(n.Node)
		r.Nodes = append(r.Nodes, RebalanceNode{Node: n.Node, Capacity: c.Capacity, Drain: n.Drain,
			ShardsBefore: n.ShardsBefore, ShardsAfter: n.ShardsAfter, WeightBefore: n.Before, WeightAfter: n.After, Fair: n.Fair})
		r.TotalWeight += n.Before
		r.Shards += n.ShardsBefore
	}
	for _, m := range res.Moves {
		r.Moves = append(r.Moves, RebalanceMove{Shard: m.Shard, From: m.From, To: m.To, Weight: m.Weight,
			Bytes: in.Sizes[m.Shard], Allocated: in.Allocated(m.Shard)})
		if ln := src.Live.Node(m.From); ln != nil {
			if s := ln.Shard(m.Shard); s != nil && len(s.TablesWithoutKey) > 0 {
				r.TablesWithoutKey = append(r.TablesWithoutKey, RebalanceShard{Shard: m.Shard, Node: m.From, Weight: m.Weight, Tables: s.TablesWithoutKey})
			}
		}
	}
	for _, n := range res.Oversized {
		r.Oversized = append(r.Oversized, RebalanceShard{Shard: n, Node: res.Placement[n], Weight: in.Weight(n)})
	}
	files := make([]string, 0, len(src.Proposal.Files))
	for f := range src.Proposal.Files {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		r.Files = append(r.Files, FileChange{Path: f, Diff: textdiff.Unified(f, f, string(t.Sources[f]), string(src.Proposal.Files[f]))})
	}
	return r
}

func (r *Rebalance) weight(v float64) string {
	if r.WeightInBytes {
		return units.FormatBytes(v)
	}
	return units.FormatNumber(v)
}

func (r *Rebalance) percent() string {
	return strconv.FormatFloat(r.TolerancePercent, 'f', -1, 64) + "%"
}

func (r *Rebalance) text(w io.Writer) error {
	var b strings.Builder
	if len(r.Moves) == 0 && r.Balanced {
		fmt.Fprintf(&b, "The cluster is balanced within %s: nothing to move.\n", r.percent())
		return flush(w, &b)
	}
	fmt.Fprintf(&b, "Weights by %s; tolerance ±%s of each node's fair share.\n\n", r.Measure, r.percent())
	r.table(&b)
	b.WriteString("\n")
	r.moves(&b)
	b.WriteString("\n")
	r.remarks(&b)
	b.WriteString("\n")
	for _, f := range r.Files {
		b.WriteString(f.Diff)
	}
	if len(r.Moves) > 0 {
		b.WriteString("\n")
		r.outcome(&b)
	}
	return flush(w, &b)
}

// sameCapacity reports whether the nodes not drained share one capacity:
// the table then leaves capacities out.
func (r *Rebalance) sameCapacity() bool {
	capacities := map[float64]bool{}
	for _, n := range r.Nodes {
		if !n.Drain {
			capacities[n.Capacity] = true
		}
	}
	return len(capacities) == 1
}

// table writes every node before and after.
func (r *Rebalance) table(b *strings.Builder) {
	receivers := 0
	for _, n := range r.Nodes {
		if !n.Drain {
			receivers++
		}
	}
	share := func(v float64) string {
		if r.TotalWeight == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*v/r.TotalWeight)
	}
	dev := func(n RebalanceNode, v float64) string {
		if n.Fair == 0 {
			return "-"
		}
		return fmt.Sprintf("%+.1f%%", 100*(v-n.Fair)/n.Fair)
	}
	var shards, weights, shares, devs [][2]string
	for _, n := range r.Nodes {
		shards = append(shards, [2]string{strconv.Itoa(n.ShardsBefore), strconv.Itoa(n.ShardsAfter)})
		weights = append(weights, [2]string{r.weight(n.WeightBefore), r.weight(n.WeightAfter)})
		shares = append(shares, [2]string{share(n.WeightBefore), share(n.WeightAfter)})
		if !n.Drain {
			devs = append(devs, [2]string{dev(n, n.WeightBefore), dev(n, n.WeightAfter)})
		}
	}
	shardCol, weightCol, shareCol, devCol := beforeAfter("SHARDS", shards), beforeAfter("WEIGHT", weights), beforeAfter("SHARE", shares), beforeAfter("DEVIATION", devs)
	same := r.sameCapacity()
	var tb table
	if same {
		tb.add("NODE", "SHARDS", "WEIGHT", "SHARE", "DEVIATION")
	} else {
		tb.add("NODE", "CAPACITY", "SHARDS", "WEIGHT", "SHARE", "DEVIATION")
	}
	d := 0
	for i, n := range r.Nodes {
		name := n.Node
		if n.Drain {
			name += " (drain)"
		}
		row := []string{name}
		if !same {
			row = append(row, strconv.FormatFloat(n.Capacity, 'f', -1, 64))
		}
		row = append(row, shardCol[i], weightCol[i], shareCol[i])
		if n.Drain {
			row = append(row, "drained")
		} else {
			row = append(row, devCol[d])
			d++
		}
		tb.add(row...)
	}
	tb.write(b)
	fair := "in proportion to capacity"
	if same {
		fair = r.weight(r.TotalWeight/float64(receivers)) + " per node"
	}
	fmt.Fprintf(b, "Total: %s, %s; fair share %s.\n", words.Count(r.Shards, "shard"), r.weight(r.TotalWeight), fair)
}

// moves writes the moves grouped by node pair. Shards not allocated yet
// are listed apart: plan allocates them in their new place.
func (r *Rebalance) moves(b *strings.Builder) {
	if len(r.Moves) == 0 {
		b.WriteString("No move brings the nodes closer to their fair shares.\n")
		return
	}
	var real, unallocated []RebalanceMove
	for _, m := range r.Moves {
		if m.Allocated {
			real = append(real, m)
		} else {
			unallocated = append(unallocated, m)
		}
	}
	if len(real) > 0 {
		fmt.Fprintf(b, "%s, %s", words.Count(len(real), "move"), r.size(real))
		if r.LowerBound > 0 {
			fmt.Fprintf(b, " (reaching every fair share moves at least %s)", r.weight(r.LowerBound))
		}
		b.WriteString(":\n")
		for _, g := range groupMoves(real) {
			fmt.Fprintf(b, "  %s → %s: %s, %s: %s\n", g[0].From, g[0].To, words.Count(len(g), "shard"), r.size(g), words.Shards(moveShards(g), 16))
		}
	}
	if len(unallocated) > 0 {
		fmt.Fprintf(b, "%s not allocated yet, placed on another node (pgms plan allocates %s there):\n",
			words.Count(len(unallocated), "shard"), words.Plural(len(unallocated), "it", "them"))
		for _, g := range groupMoves(unallocated) {
			fmt.Fprintf(b, "  %s → %s: %s\n", g[0].From, g[0].To, words.Shards(moveShards(g), 16))
		}
	}
}

// size is the weight of moves, with the data they copy when the weight is
// not in bytes.
func (r *Rebalance) size(moves []RebalanceMove) string {
	var weight float64
	var bytes int64
	for _, m := range moves {
		weight += m.Weight
		bytes += m.Bytes
	}
	if r.WeightInBytes {
		return r.weight(weight)
	}
	return "weight " + r.weight(weight) + ", " + units.FormatBytes(float64(bytes))
}

// groupMoves cuts moves sorted by From, To into runs of one node pair.
func groupMoves(moves []RebalanceMove) [][]RebalanceMove {
	var groups [][]RebalanceMove
	for i := 0; i < len(moves); {
		j := i
		for j < len(moves) && moves[j].From == moves[i].From && moves[j].To == moves[i].To {
			j++
		}
		groups = append(groups, moves[i:j])
		i = j
	}
	return groups
}

func moveShards(moves []RebalanceMove) []int {
	nums := make([]int, len(moves))
	for i, m := range moves {
		nums[i] = m.Shard
	}
	return nums
}

// remarks say how good the result is and why it is not better.
func (r *Rebalance) remarks(b *strings.Builder) {
	drained := map[string]bool{}
	var drainedNames []string
	for _, n := range r.Nodes {
		if n.Drain {
			drained[n.Node] = true
			drainedNames = append(drainedNames, n.Node)
		}
	}
	if r.Balanced {
		fmt.Fprintf(b, "Balanced: every node ends within ±%s of its fair share", r.percent())
		if len(drainedNames) > 0 {
			fmt.Fprintf(b, "; %s end%s empty", strings.Join(drainedNames, ", "), words.Plural(len(drainedNames), "s", ""))
		}
		b.WriteString(".\n")
	}
	if len(r.Oversized) > 0 {
		var list []string
		for _, s := range r.Oversized {
			list = append(list, fmt.Sprintf("shard %d (%s) on %s", s.Shard, r.weight(s.Weight), s.Node))
		}
		fmt.Fprintf(b, "Oversized: %s; heavier than a fair share allows, such a shard gets a node of its own and the other nodes share the rest.\n",
			strings.Join(list, ", "))
	}
	if !r.Balanced && len(r.Oversized) == 0 && r.Reachable {
		fmt.Fprintf(b, "Not balanced: shard sizes keep some nodes outside ±%s of their fair share; this is the closest placement found.\n", r.percent())
	}
	if !r.Reachable {
		var limits []string
		if r.MaxMoves > 0 {
			limits = append(limits, fmt.Sprintf("--max-moves %d", r.MaxMoves))
		}
		if r.MaxBytes > 0 {
			limits = append(limits, "--max-bytes "+units.FormatBytes(float64(r.MaxBytes)))
		}
		fmt.Fprintf(b, "Budget-limited: the target was not reached within %s; this is the best placement within the limit. Apply it and run pgms rebalance again, or raise the limit.\n",
			strings.Join(limits, " and "))
	}
	var small []int
	for _, m := range r.Moves {
		// Shards leaving a drained node move whatever they weigh.
		if m.Weight <= r.NearEmptyWeight && !drained[m.From] {
			small = append(small, m.Shard)
		}
	}
	if len(small) > 0 {
		fmt.Fprintf(b, "Near-empty shards (at most %s, a tenth of the median shard) are spread evenly by count, as they will grow: that moves %s %s.\n",
			r.weight(r.NearEmptyWeight), words.Plural(len(small), "shard", "shards"), words.Shards(small, 16))
	}
	if len(r.TablesWithoutKey) > 0 {
		var list []string
		for _, s := range r.TablesWithoutKey {
			list = append(list, fmt.Sprintf("shard %d (%s)", s.Shard, strings.Join(s.Tables, ", ")))
		}
		fmt.Fprintf(b, "Warning: tables without a primary key in %s: pgms plan will refuse to move them until they have one (or REPLICA IDENTITY FULL).\n",
			strings.Join(list, "; "))
	}
}

// outcome says whether the files were written, and what comes next.
func (r *Rebalance) outcome(b *strings.Builder) {
	if !r.Written {
		b.WriteString("Nothing written: run again with --write to rewrite the files.\n")
		return
	}
	for _, f := range r.Files {
		fmt.Fprintf(b, "Wrote %s.\n", f.Path)
	}
	b.WriteString("Review and commit the change; pgms plan shows the same moves and pgms apply carries them out.\n")
}

// markdown writes the rebalance for a pull request: the verdict, the
// table, the moves and the diff.
func (r *Rebalance) markdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("### pgms rebalance\n\n")
	if len(r.Moves) == 0 && r.Balanced {
		fmt.Fprintf(&b, "The cluster is balanced within %s: nothing to move.\n", r.percent())
		return flush(w, &b)
	}
	var remarks strings.Builder
	r.remarks(&remarks)
	for _, l := range strings.Split(strings.TrimSpace(remarks.String()), "\n") {
		if l != "" {
			fmt.Fprintf(&b, "- %s\n", mdEscape(l))
		}
	}
	fmt.Fprintf(&b, "\nWeights by %s; tolerance ±%s of each node's fair share.\n\n", r.Measure, r.percent())
	b.WriteString("| node | shards | weight | deviation |\n|---|---|---|---|\n")
	for _, n := range r.Nodes {
		dev := "drained"
		if !n.Drain && n.Fair > 0 {
			dev = fmt.Sprintf("%+.1f%% → %+.1f%%", 100*(n.WeightBefore-n.Fair)/n.Fair, 100*(n.WeightAfter-n.Fair)/n.Fair)
		} else if !n.Drain {
			dev = "-"
		}
		name := n.Node
		if n.Drain {
			name += " (drain)"
		}
		fmt.Fprintf(&b, "| %s | %d → %d | %s → %s | %s |\n", mdEscape(name), n.ShardsBefore, n.ShardsAfter, r.weight(n.WeightBefore), r.weight(n.WeightAfter), dev)
	}
	var moves strings.Builder
	r.moves(&moves)
	for _, l := range strings.Split(strings.TrimSuffix(moves.String(), "\n"), "\n") {
		if item, ok := strings.CutPrefix(l, "  "); ok {
			fmt.Fprintf(&b, "- %s\n", mdEscape(item))
		} else {
			fmt.Fprintf(&b, "\n%s\n\n", mdEscape(l))
		}
	}
	for _, f := range r.Files {
		fmt.Fprintf(&b, "\n```diff\n%s```\n", f.Diff)
	}
	return flush(w, &b)
}

func mdEscape(s string) string {
	return strings.NewReplacer("<", "&lt;", ">", "&gt;", "*", "\\*", "_", "\\_", "`", "\\`", "|", "\\|").Replace(s)
}
