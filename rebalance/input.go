package rebalance

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/words"
	"github.com/pgms-dev/pgms/state"
)

// Input is what Solve starts from, built from the topology files and the
// live state, with what a report needs besides.
type Input struct {
	Nodes  []Node
	Shards []Shard
	// Bytes says the weights are sizes in bytes.
	Bytes bool
	// Sizes holds each allocated shard's total relation size, what a move
	// copies; a shard absent from it is not allocated yet.
	Sizes map[int]int64
}

// Allocated reports whether shard n exists where the files place it; a
// shard that does not is allocated wherever the new placement puts it, and
// its "move" copies nothing.
func (in Input) Allocated(n int) bool { _, ok := in.Sizes[n]; return ok }

// Weight returns the weight of shard n (0 when the input lacks it).
func (in Input) Weight(n int) float64 {
	for _, s := range in.Shards {
		if s.Shard == n {
			return s.Weight
		}
	}
	return 0
}

// Build takes every placed shard where the files put it, with its live
// weight there (0 when it is not allocated yet). The nodes in drain end
// empty. Weights that are sizes for some shards and plain numbers for
// others are refused: they do not compare.
func Build(t *config.Topology, live *state.Cluster, drain map[string]bool) (Input, error) {
	in := Input{Bytes: true, Sizes: map[int]int64{}}
	for _, n := range t.Nodes {
		in.Nodes = append(in.Nodes, Node{Name: n.Name, Capacity: n.Capacity, Drain: drain[n.Name]})
	}
	var withUnit, without []int
	for _, r := range t.Shards {
		ln := live.Node(r.Node)
		for n := r.From; n <= r.To; n++ {
			s := Shard{Shard: n, Node: r.Node, Pinned: r.IsPinned(n)}
			if ln != nil {
				if ls := ln.Shard(n); ls != nil {
					in.Sizes[n] = ls.Bytes
					if w := ls.Weight; w != nil {
						s.Weight = w.Value
						if w.Bytes {
							withUnit = append(withUnit, n)
						} else {
							without = append(without, n)
						}
					}
				}
			}
			in.Shards = append(in.Shards, s)
		}
	}
	switch {
	case len(without) > 0 && len(withUnit) > 0:
		return in, fmt.Errorf("weight_sql returned sizes for some shards (%s) and plain numbers for others (%s), which do not compare; make it return one kind",
			firstNumbers(withUnit, 8), firstNumbers(without, 8))
	case len(without) > 0, t.Cluster.WeightSQL != "" && len(withUnit) == 0:
		in.Bytes = false
	}
	return in, nil
}

// firstNumbers lists at most max numbers, in the order given.
func firstNumbers(nums []int, max int) string {
	items := make([]string, 0, min(len(nums), max))
	for _, n := range nums[:min(len(nums), max)] {
		items = append(items, strconv.Itoa(n))
	}
	if len(nums) > max {
		items = append(items, "…")
	}
	return strings.Join(items, ", ")
}

// Drained returns the nodes to empty: those marked drain = true in the
// files and those named in flags (each a name or a comma-separated list).
// It refuses unknown names, draining every node, and shards that never
// move (pinned, or shard 0) on a drained node. It reads no node, so that
// such mistakes are reported at once.
func Drained(t *config.Topology, flags []string) (map[string]bool, error) {
	drain := map[string]bool{}
	var names, inFiles []string
	for _, n := range t.Nodes {
		names = append(names, n.Name)
		if n.Drain {
			drain[n.Name] = true
			inFiles = append(inFiles, n.Name)
		}
	}
	for _, d := range flags {
		for _, name := range strings.Split(d, ",") {
			name = strings.TrimSpace(name)
			if _, ok := t.Node(name); !ok {
				return nil, fmt.Errorf("--drain %s: no such node in the topology; the nodes are %s", name, strings.Join(names, ", "))
			}
			drain[name] = true
		}
	}
	if len(drain) == len(t.Nodes) {
		why := ""
		if len(inFiles) > 0 {
			list := strings.Join(inFiles, ", ")
			why = fmt.Sprintf("; %s drain = true in the files", words.Plural(len(inFiles), list+" has", list+" have"))
		}
		return nil, fmt.Errorf("every node would be drained (%s%s), leaving nowhere for the shards; keep at least one node that is not drained",
			strings.Join(names, ", "), why)
	}
	var fixed, fixes []string
	for _, r := range t.Shards {
		switch {
		case !drain[r.Node]:
		case r.Pinned:
			fixed = append(fixed, fmt.Sprintf("%s on %s (pinned at %s)", words.ShardRange(r.From, r.To), r.Node, config.Pos(r.DeclRange)))
			fixes = append(fixes, "remove pinned = true, or place the pinned shards on another node in the files yourself")
		case r.From == 0:
			fixed = append(fixed, fmt.Sprintf("shard 0 on %s (%s)", r.Node, config.Pos(r.DeclRange)))
			fixes = append(fixes, "shard 0, the global shard, moves only when you place it on another node in the files")
		}
	}
	if len(fixed) > 0 {
		sort.Strings(fixes)
		fixes = slices.Compact(fixes)
		return nil, fmt.Errorf("a drained node holds shards that rebalance never moves: %s; %s", strings.Join(fixed, ", "), strings.Join(fixes, "; "))
	}
	return drain, nil
}
