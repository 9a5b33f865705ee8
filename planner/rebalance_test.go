package planner

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// rebalanceShards builds shards numbered from first, one per weight, on node.
func rebalanceShards(first int, node string, weights ...float64) []RebalanceShard {
	out := make([]RebalanceShard, len(weights))
	for i, w := range weights {
		out[i] = RebalanceShard{Shard: first + i, Node: node, Weight: w}
	}
	return out
}

func rebalanceRepeat(w float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = w
	}
	return out
}

func rebalanceNodes(names ...string) []RebalanceNode {
	out := make([]RebalanceNode, len(names))
	for i, n := range names {
		out[i] = RebalanceNode{Name: n}
	}
	return out
}

func rebalanceConcat(parts ...[]RebalanceShard) []RebalanceShard {
	var out []RebalanceShard
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestRebalance(t *testing.T) {
	tests := []struct {
		name   string
		nodes  []RebalanceNode
		shards []RebalanceShard
		opts   RebalanceOptions

		after      map[string]float64 // weight per node after
		count      map[string]int     // shards per node after
		moves      int                // -1: not checked
		moved      float64            // -1: not checked
		lowerBound float64            // -1: not checked
		balanced   bool
		reachable  bool
		oversized  []int
		stay       []int // shards that must not move
	}{
		{
			name:  "already balanced",
			nodes: rebalanceNodes("a", "b"),
			shards: rebalanceConcat(
				rebalanceShards(1, "a", 10, 10, 10),
				rebalanceShards(4, "b", 11, 9, 10),
			),
			after: map[string]float64{"a": 30, "b": 30},
			moves: 0, moved: 0, lowerBound: 0, balanced: true, reachable: true,
		},
		{
			name:  "whale shard keeps a node of its own",
			nodes: rebalanceNodes("a", "b", "c", "d"),
			shards: rebalanceConcat(
				rebalanceShards(1, "a", 100, 10, 10, 10),
				rebalanceShards(5, "b", 10, 10, 10),
				rebalanceShards(8, "c", 10, 10, 10),
				rebalanceShards(11, "d", 10, 10, 10),
			),
			// The others share what the whale leaves: 120 over three.
			after: map[string]float64{"a": 100, "b": 40, "c": 40, "d": 40},
			count: map[string]int{"a": 1, "b": 4, "c": 4, "d": 4},
			moves: 3, moved: 30, lowerBound: 30, balanced: false, reachable: true,
			oversized: []int{1},
			stay:      []int{1},
		},
		{
			name:   "empty shards spread over new nodes",
			nodes:  rebalanceNodes("a", "b", "c"),
			shards: rebalanceShards(1, "a", rebalanceRepeat(0, 12)...),
			after:  map[string]float64{"a": 0, "b": 0, "c": 0},
			count:  map[string]int{"a": 4, "b": 4, "c": 4},
			moves:  8, moved: 0, lowerBound: 0, balanced: true, reachable: true,
		},
		{
			name:  "fresh shards next to loaded ones spread by count",
			nodes: rebalanceNodes("a", "b", "c"),
			shards: rebalanceConcat(
				rebalanceShards(1, "a", 100, 100),
				rebalanceShards(3, "b", 100, 100),
				rebalanceShards(5, "c", 100, 100),
				rebalanceShards(7, "a", rebalanceRepeat(0.01, 9)...),
			),
			count: map[string]int{"a": 5, "b": 5, "c": 5},
			moves: 6, moved: 0.06, lowerBound: 0, balanced: true, reachable: true,
		},
		{
			name:  "the most loaded node gets its share of fresh shards",
			nodes: rebalanceNodes("a", "b", "c"),
			shards: rebalanceConcat(
				rebalanceShards(1, "a", 60, 60, 60),
				rebalanceShards(4, "b", 60),
				rebalanceShards(5, "c", 60, 60),
				rebalanceShards(7, "c", rebalanceRepeat(0.01, 9)...),
			),
			count: map[string]int{"a": 5, "b": 5, "c": 5},
			moves: 7, moved: 60.06, lowerBound: 54.0285, balanced: true, reachable: true,
		},
		{
			name:  "equal fresh shards balance by weight",
			nodes: rebalanceNodes("a", "b", "c"),
			// 16 kB each: nothing is near-empty next to its equals.
			shards: rebalanceShards(1, "a", rebalanceRepeat(16384, 12)...),
			count:  map[string]int{"a": 4, "b": 4, "c": 4},
			moves:  8, moved: 8 * 16384, balanced: true, reachable: true,
			lowerBound: -1,
		},
		{
			name:  "two new empty nodes",
			nodes: rebalanceNodes("a", "b", "c", "d"),
			shards: rebalanceConcat(
				rebalanceShards(1, "a", rebalanceRepeat(10, 10)...),
				rebalanceShards(11, "b", rebalanceRepeat(10, 10)...),
			),
			after: map[string]float64{"a": 50, "b": 50, "c": 50, "d": 50},
			moves: 10, moved: 100, lowerBound: 95, balanced: true, reachable: true,
		},
		{
			name: "one node drained",
			nodes: []RebalanceNode{
				{Name: "a"}, {Name: "b"}, {Name: "c", Drain: true},
			},
			shards: rebalanceConcat(
				rebalanceShards(1, "a", 10, 10, 10),
				rebalanceShards(4, "b", 10, 10, 10),
				rebalanceShards(7, "c", 10, 10, 10, 10),
			),
			after: map[string]float64{"a": 50, "b": 50, "c": 0},
			moves: 4, moved: 40, lowerBound: 40, balanced: true, reachable: true,
		},
		{
			name: "heterogeneous capacities",
			nodes: []RebalanceNode{
				{Name: "a", Capacity: 1}, {Name: "b", Capacity: 3},
			},
			shards: rebalanceShards(1, "a", rebalanceRepeat(1, 8)...),
			after:  map[string]float64{"a": 2, "b": 6},
			moves:  6, moved: 6, lowerBound: 5.9, balanced: true, reachable: true,
		},
		{
			name: "a big shard on a small node swaps with small ones",
			nodes: []RebalanceNode{
				{Name: "a", Capacity: 1}, {Name: "b", Capacity: 4},
			},
			shards: rebalanceConcat(
				rebalanceShards(1, "a", 50),
				rebalanceShards(2, "b", rebalanceRepeat(5, 10)...),
			),
			after: map[string]float64{"a": 20, "b": 80},
			moves: 5, moved: 70, lowerBound: 29, balanced: true, reachable: true,
		},
		{
			name:  "pinned shards stay on an overloaded node",
			nodes: rebalanceNodes("a", "b"),
			shards: []RebalanceShard{
				{Shard: 0, Node: "a", Weight: 50},
				{Shard: 1, Node: "a", Weight: 50, Pinned: true},
				{Shard: 2, Node: "a", Weight: 10},
				{Shard: 3, Node: "b", Weight: 10},
			},
			after: map[string]float64{"a": 100, "b": 20},
			moves: 1, moved: 10, lowerBound: 10, balanced: false, reachable: true,
			stay: []int{0, 1},
		},
		{
			name: "move budget",
			nodes: []RebalanceNode{
				{Name: "a"}, {Name: "b"}, {Name: "c", Drain: true},
			},
			shards: rebalanceConcat(
				rebalanceShards(1, "a", 10, 10, 10),
				rebalanceShards(4, "b", 10, 10, 10),
				rebalanceShards(7, "c", 10, 10, 10, 10),
			),
			opts:  RebalanceOptions{MaxMoves: 1},
			after: map[string]float64{"c": 30},
			moves: 1, moved: 10, lowerBound: 40, balanced: false, reachable: false,
		},
		{
			name:  "weight budget takes the light moves that help",
			nodes: rebalanceNodes("a", "b", "c"),
			shards: rebalanceConcat(
				rebalanceShards(1, "a", 30, 5, 5, 5, 5, 5, 5),
				rebalanceShards(8, "b", 20),
				rebalanceShards(9, "c", 20),
			),
			opts:       RebalanceOptions{MaxWeight: 10},
			moves:      2,
			moved:      10,
			lowerBound: -1,
			balanced:   false, reachable: false,
			after: map[string]float64{"a": 50},
		},
		{
			name:   "no shards",
			nodes:  rebalanceNodes("a"),
			shards: nil,
			moves:  0, moved: 0, lowerBound: 0, balanced: true, reachable: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Rebalance(tt.nodes, tt.shards, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			rebalanceCheck(t, rebalanceCase{nodes: tt.nodes, shards: tt.shards, opts: tt.opts}, res)
			for _, n := range res.Nodes {
				if want, ok := tt.after[n.Node]; ok && !rebalanceClose(n.After, want) {
					t.Errorf("node %s ends with %v, want %v", n.Node, n.After, want)
				}
				if want, ok := tt.count[n.Node]; ok && n.ShardsAfter != want {
					t.Errorf("node %s ends with %d shards, want %d", n.Node, n.ShardsAfter, want)
				}
			}
			if tt.moves >= 0 && len(res.Moves) != tt.moves {
				t.Errorf("%d moves, want %d: %+v", len(res.Moves), tt.moves, res.Moves)
			}
			if tt.moved >= 0 && !rebalanceClose(res.Moved, tt.moved) {
				t.Errorf("moved %v, want %v", res.Moved, tt.moved)
			}
			if tt.lowerBound >= 0 && !rebalanceClose(res.LowerBound, tt.lowerBound) {
				t.Errorf("lower bound %v, want %v", res.LowerBound, tt.lowerBound)
			}
			if res.Balanced != tt.balanced || res.Reachable != tt.reachable {
				t.Errorf("balanced=%v reachable=%v, want %v %v", res.Balanced, res.Reachable, tt.balanced, tt.reachable)
			}
			if fmt.Sprint(res.Oversized) != fmt.Sprint(tt.oversized) && len(res.Oversized)+len(tt.oversized) > 0 {
				t.Errorf("oversized %v, want %v", res.Oversized, tt.oversized)
			}
			for _, s := range tt.stay {
				for _, m := range res.Moves {
					if m.Shard == s {
						t.Errorf("shard %d moved: %+v", s, m)
					}
				}
			}
		})
	}
}

func TestRebalanceErrors(t *testing.T) {
	tests := []struct {
		name   string
		nodes  []RebalanceNode
		shards []RebalanceShard
		opts   RebalanceOptions
		want   string
	}{
		{"no nodes", nil, nil, RebalanceOptions{}, "no nodes"},
		{
			"every node drained",
			[]RebalanceNode{{Name: "a", Drain: true}, {Name: "b", Drain: true}},
			rebalanceShards(1, "a", 1),
			RebalanceOptions{},
			"every node is drained",
		},
		{
			"pinned shards on a drained node",
			[]RebalanceNode{{Name: "a"}, {Name: "b", Drain: true}},
			[]RebalanceShard{
				{Shard: 3, Node: "b", Weight: 1, Pinned: true},
				{Shard: 4, Node: "b", Weight: 1},
				{Shard: 9, Node: "b", Weight: 1, Pinned: true},
			},
			RebalanceOptions{},
			"node b is drained but holds pinned shard(s) 3, 9",
		},
		{
			"shard 0 on a drained node",
			[]RebalanceNode{{Name: "a"}, {Name: "b", Drain: true}},
			rebalanceShards(0, "b", 1, 1),
			RebalanceOptions{},
			"pinned shard(s) 0",
		},
		{"unknown node", rebalanceNodes("a"), rebalanceShards(5, "zz", 1), RebalanceOptions{}, `shard 5 is on unknown node "zz"`},
		{"node listed twice", rebalanceNodes("a", "a"), nil, RebalanceOptions{}, "node a is listed twice"},
		{"unnamed node", rebalanceNodes(""), nil, RebalanceOptions{}, "no name"},
		{"shard listed twice", rebalanceNodes("a", "b"), append(rebalanceShards(1, "a", 1), rebalanceShards(1, "b", 1)...), RebalanceOptions{}, "shard 1 is listed twice"},
		{"negative weight", rebalanceNodes("a"), rebalanceShards(1, "a", -1), RebalanceOptions{}, "shard 1: weight -1"},
		{"NaN weight", rebalanceNodes("a"), rebalanceShards(1, "a", math.NaN()), RebalanceOptions{}, "shard 1: weight NaN"},
		{"negative capacity", []RebalanceNode{{Name: "a", Capacity: -2}}, nil, RebalanceOptions{}, "node a: capacity -2"},
		{"negative tolerance", rebalanceNodes("a"), nil, RebalanceOptions{Tolerance: -0.1}, "tolerance -0.1"},
		{"negative budget", rebalanceNodes("a"), nil, RebalanceOptions{MaxMoves: -1}, "max moves -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Rebalance(tt.nodes, tt.shards, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
