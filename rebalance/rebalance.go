package rebalance

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

// DefaultTolerance is the deviation from a node's fair share that
// Solve accepts when Options.Tolerance is zero.
const DefaultTolerance = 0.05

// NearEmptyFraction decides which shards Solve treats as near-empty: a
// shard weighing at most this fraction of the median shard weight. The median
// is taken over the shards weighing at least 1% of the mean, so that a fresh
// allocation outnumbering the loaded shards does not drag the median down to
// its own size and hide itself. When every shard weighs zero, all are
// near-empty.
const NearEmptyFraction = 0.10

// Node is a node as Solve sees it.
type Node struct {
	Name string
	// Capacity is the node's relative size: a node with 2 is given twice the
	// weight of a node with 1. Zero means 1.
	Capacity float64
	// Drain asks for the node to end with no shards.
	Drain bool
}

// Shard is one shard, where it lives and what it weighs.
type Shard struct {
	Shard int
	// Node is the node the shard is on now.
	Node string
	// Weight is the shard's load measure (bytes by default, or the unit of
	// the user's weight_sql); it must not be negative.
	Weight float64
	// Pinned shards never move. Shard 0, the global shard, is always pinned.
	Pinned bool
}

// Options tunes Solve. The zero value is usable.
type Options struct {
	// Tolerance is the accepted deviation of a node's weight from its fair
	// share, as a fraction of that share (0.05 = ±5%). Zero means
	// DefaultTolerance.
	Tolerance float64
	// MaxMoves caps the number of moves; 0 means no limit.
	MaxMoves int
	// MaxWeight caps the total weight moved; 0 means no limit.
	MaxWeight float64
}

// Move moves one shard.
type Move struct {
	Shard    int
	From, To string
	Weight   float64
}

// NodeBalance describes one node before and after the rebalance.
type NodeBalance struct {
	Node  string
	Drain bool
	// Before and After are the node's total shard weight.
	Before, After float64
	// Fair is the node's fair share: the total weight times the node's
	// capacity over the capacity of all nodes not drained (0 when drained).
	Fair float64
	// Target is the weight Solve aimed at. It equals Fair unless
	// oversized or pinned shards make the fair share unreachable: a node
	// given an oversized shard aims at that shard (plus its pinned ones), and
	// the other nodes share what is left.
	Target                    float64
	ShardsBefore, ShardsAfter int
}

// Result is the placement Solve proposes and how good it is.
type Result struct {
	// Placement maps every input shard to its node after the rebalance.
	Placement map[int]string
	// Moves lists the shards whose node changes, by From, To, Shard.
	Moves []Move
	// Nodes describes every node, by name.
	Nodes []NodeBalance
	// Moved is the total weight of Moves.
	Moved float64
	// LowerBound is a weight that any placement meeting the targets must move
	// at least: the larger of the summed surpluses (weight above the upper
	// end of each node's tolerance band around its Target; a drained node's
	// whole weight) and the summed deficits (weight missing below the lower
	// end of each band). Shard granularity is ignored, so Moved/LowerBound
	// measures how much a placement overshoots.
	LowerBound float64
	// Reachable is false when MaxMoves or MaxWeight kept the rebalance from
	// what it achieves without them: a drained node not emptied, nodes
	// further from their bands, or near-empty shards spread less evenly.
	Reachable bool
	// Balanced reports that every drained node ends empty and every other
	// node ends within Tolerance of its fair share.
	Balanced bool
	// Oversized lists shards heavier than a fair share (more exactly: that
	// fit within the tolerance of no node): each is given a node of its own,
	// so the cluster cannot be Balanced.
	Oversized []int
	// NearEmpty is the weight at or below which a shard counted as
	// near-empty (see NearEmptyFraction). Near-empty shards are spread by
	// count, weighted by capacity, because they are expected to grow; each
	// node ends with its share rounded up or down, except that a node at
	// the input's highest load/fair ratio that stays there takes none.
	NearEmpty float64
}

// MaxRatio returns the highest After/Fair over the nodes not drained: 1 is a
// perfect balance. A drained node that still holds weight gives +Inf.
func (r Result) MaxRatio() float64 {
	return maxRatio(r.Nodes, func(n NodeBalance) float64 { return n.After })
}

// MaxRatioBefore is MaxRatio of the input placement.
func (r Result) MaxRatioBefore() float64 {
	return maxRatio(r.Nodes, func(n NodeBalance) float64 { return n.Before })
}

func maxRatio(nodes []NodeBalance, load func(NodeBalance) float64) float64 {
	worst := 0.0
	for _, n := range nodes {
		l := load(n)
		switch {
		case n.Drain || n.Fair == 0:
			if l > 0 {
				return math.Inf(1)
			}
		case l/n.Fair > worst:
			worst = l / n.Fair
		}
	}
	return worst
}

// Solve computes a placement of shards on nodes that empties drained
// nodes and brings every other node within the tolerance of its fair share,
// moving as little weight as it can, then as few shards. Near-empty shards
// are spread evenly by count. Where shard sizes make the tolerance
// unreachable it does the best it can and says so (Balanced, Oversized).
//
// With MaxMoves or MaxWeight it returns the best placement it finds within
// them, ranked by the weight left on drained nodes, then MaxRatio, then the
// distance to the tolerance bands, the spread of near-empty shards, the
// weight moved and the number of moves.
//
// The result depends only on the set of inputs, not on their order, and is
// never less balanced (by MaxRatio) than the input. It is pure: no database,
// no files.
func Solve(nodes []Node, shards []Shard, opts Options) (Result, error) {
	r, err := newRebalancer(nodes, shards, opts)
	if err != nil {
		return Result{}, err
	}
	r.solve()
	if r.timid {
		// An oversized shard stayed where it is for safety; see whether
		// giving it the node where it weighs least works out better.
		bold, err := newRebalancer(nodes, shards, opts)
		if err != nil {
			return Result{}, err
		}
		bold.bold = true
		bold.solve()
		was, now := r.score(r.placement()), bold.score(bold.placement())
		if now.maxRatio <= bold.r0*(1+1e-12) && now.maxRatio < was.maxRatio*(1-r.tol) {
			r = bold
		}
	}
	full := r.placement()
	b := rbBudget{moves: opts.MaxMoves, weight: opts.MaxWeight}
	fullScore := r.score(full)
	if (b.moves == 0 || fullScore.moves <= b.moves) && (b.weight == 0 || fullScore.moved <= b.weight*(1+1e-12)) {
		return r.result(full, true), nil
	}
	// Candidates within the budget, the best kept: the unlimited moves
	// replayed best first; the same phases run again from the input under
	// the budget; and moves that each lower the highest load, to any node or
	// to the least loaded one. The first keeps the unlimited plan's light
	// moves, the others may choose heavier ones, which a move budget favours.
	best := r.replay(full, b)
	for strategy := range 3 {
		again, err := newRebalancer(nodes, shards, opts)
		if err != nil {
			return Result{}, err
		}
		again.bold = r.bold
		again.budget = &b
		if strategy == 0 {
			again.solve()
		} else {
			again.targets()
			again.quotas()
			again.lowerMax(strategy == 2)
		}
		if other := again.placement(); r.better(r.score(other), r.score(best)) {
			best = other
		}
	}
	return r.result(best, r.reaches(r.score(best), fullScore)), nil
}

func newRebalancer(nodes []Node, shards []Shard, opts Options) (*rebalancer, error) {
	if len(nodes) == 0 {
		return nil, errors.New("rebalance: no nodes")
	}
	tol := opts.Tolerance
	switch {
	case math.IsNaN(tol) || tol < 0 || math.IsInf(tol, 0):
		return nil, fmt.Errorf("rebalance: tolerance %v is not a fraction >= 0", opts.Tolerance)
	case tol == 0:
		tol = DefaultTolerance
	}
	if opts.MaxMoves < 0 {
		return nil, fmt.Errorf("rebalance: max moves %d is negative", opts.MaxMoves)
	}
	if math.IsNaN(opts.MaxWeight) || opts.MaxWeight < 0 {
		return nil, fmt.Errorf("rebalance: max weight %v is negative", opts.MaxWeight)
	}

	sorted := append([]Node(nil), nodes...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	r := &rebalancer{tol: tol, index: make(map[string]int, len(sorted))}
	active := 0
	for i, n := range sorted {
		if n.Name == "" {
			return nil, errors.New("rebalance: a node has no name")
		}
		if _, dup := r.index[n.Name]; dup {
			return nil, fmt.Errorf("rebalance: node %s is listed twice", n.Name)
		}
		c := n.Capacity
		if math.IsNaN(c) || math.IsInf(c, 0) || c < 0 {
			return nil, fmt.Errorf("rebalance: node %s: capacity %v is not a number >= 0", n.Name, n.Capacity)
		}
		if c == 0 {
			c = 1
		}
		if !n.Drain {
			active++
		}
		r.index[n.Name] = i
		r.nodes = append(r.nodes, rbNode{name: n.Name, capacity: c, drain: n.Drain})
	}
	if active == 0 {
		return nil, errors.New("rebalance: every node is drained: nowhere to put the shards")
	}

	ss := append([]Shard(nil), shards...)
	sort.Slice(ss, func(i, j int) bool { return ss[i].Shard < ss[j].Shard })
	pinnedOnDrained := map[string][]string{}
	for i, s := range ss {
		if i > 0 && ss[i-1].Shard == s.Shard {
			return nil, fmt.Errorf("rebalance: shard %d is listed twice", s.Shard)
		}
		if s.Shard < 0 {
			return nil, fmt.Errorf("rebalance: shard %d: negative shard number", s.Shard)
		}
		n, ok := r.index[s.Node]
		if !ok {
			return nil, fmt.Errorf("rebalance: shard %d is on unknown node %q", s.Shard, s.Node)
		}
		if math.IsNaN(s.Weight) || math.IsInf(s.Weight, 0) || s.Weight < 0 {
			return nil, fmt.Errorf("rebalance: shard %d: weight %v is not a number >= 0", s.Shard, s.Weight)
		}
		pinned := s.Pinned || s.Shard == 0
		if pinned && r.nodes[n].drain {
			pinnedOnDrained[s.Node] = append(pinnedOnDrained[s.Node], fmt.Sprint(s.Shard))
		}
		r.shards = append(r.shards, rbShard{num: s.Shard, w: s.Weight, pinned: pinned, orig: n, cur: n})
	}
	if len(pinnedOnDrained) > 0 {
		var msgs []string
		for _, n := range r.nodes {
			if list := pinnedOnDrained[n.name]; len(list) > 0 {
				msgs = append(msgs, fmt.Sprintf("node %s is drained but holds pinned shard(s) %s", n.name, strings.Join(list, ", ")))
			}
		}
		return nil, fmt.Errorf("rebalance: %s", strings.Join(msgs, "; "))
	}
	r.init()
	return r, nil
}

// result turns a final node per shard into the public result.
func (r *rebalancer) result(final []int, reachable bool) Result {
	res := Result{
		Placement: make(map[int]string, len(r.shards)),
		Reachable: reachable,
		NearEmpty: r.nearEmpty,
	}
	after := make([]float64, len(r.nodes))
	counts := make([]int, len(r.nodes))
	countsBefore := make([]int, len(r.nodes))
	for i, s := range r.shards {
		to := final[i]
		res.Placement[s.num] = r.nodes[to].name
		after[to] += s.w
		counts[to]++
		countsBefore[s.orig]++
		if to != s.orig {
			res.Moves = append(res.Moves, Move{Shard: s.num, From: r.nodes[s.orig].name, To: r.nodes[to].name, Weight: s.w})
			res.Moved += s.w
		}
		if s.oversized {
			res.Oversized = append(res.Oversized, s.num)
		}
	}
	sort.Slice(res.Moves, func(i, j int) bool {
		a, b := res.Moves[i], res.Moves[j]
		if a.From != b.From {
			return a.From < b.From
		}
		if a.To != b.To {
			return a.To < b.To
		}
		return a.Shard < b.Shard
	})
	res.Balanced = true
	var surplus, deficit float64
	for i, n := range r.nodes {
		res.Nodes = append(res.Nodes, NodeBalance{
			Node:         n.name,
			Drain:        n.drain,
			Before:       n.before,
			After:        after[i],
			Fair:         n.fair,
			Target:       n.target,
			ShardsBefore: countsBefore[i],
			ShardsAfter:  counts[i],
		})
		surplus += math.Max(0, n.before-n.hi)
		deficit += math.Max(0, n.lo-n.before)
		if math.Abs(after[i]-n.fair) > r.tol*n.fair+r.eps {
			res.Balanced = false
		}
	}
	res.LowerBound = math.Max(surplus, deficit)
	return res
}
