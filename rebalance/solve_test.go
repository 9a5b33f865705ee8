package rebalance

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// shardsOn builds shards numbered from first, one per weight, on node.
func shardsOn(first int, node string, weights ...float64) []Shard {
	out := make([]Shard, len(weights))
	for i, w := range weights {
		out[i] = Shard{Shard: first + i, Node: node, Weight: w}
	}
	return out
}

func repeat(w float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = w
	}
	return out
}

func nodesNamed(names ...string) []Node {
	out := make([]Node, len(names))
	for i, n := range names {
		out[i] = Node{Name: n}
	}
	return out
}

func concat(parts ...[]Shard) []Shard {
	var out []Shard
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestSolve(t *testing.T) {
	tests := []struct {
		name   string
		nodes  []Node
		shards []Shard
		opts   Options

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
			nodes: nodesNamed("a", "b"),
			shards: concat(
				shardsOn(1, "a", 10, 10, 10),
				shardsOn(4, "b", 11, 9, 10),
			),
			after: map[string]float64{"a": 30, "b": 30},
			moves: 0, moved: 0, lowerBound: 0, balanced: true, reachable: true,
		},
		{
			name:  "whale shard keeps a node of its own",
			nodes: nodesNamed("a", "b", "c", "d"),
			shards: concat(
				shardsOn(1, "a", 100, 10, 10, 10),
				shardsOn(5, "b", 10, 10, 10),
				shardsOn(8, "c", 10, 10, 10),
				shardsOn(11, "d", 10, 10, 10),
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
			nodes:  nodesNamed("a", "b", "c"),
			shards: shardsOn(1, "a", repeat(0, 12)...),
			after:  map[string]float64{"a": 0, "b": 0, "c": 0},
			count:  map[string]int{"a": 4, "b": 4, "c": 4},
			moves:  8, moved: 0, lowerBound: 0, balanced: true, reachable: true,
		},
		{
			name:  "fresh shards next to loaded ones spread by count",
			nodes: nodesNamed("a", "b", "c"),
			shards: concat(
				shardsOn(1, "a", 100, 100),
				shardsOn(3, "b", 100, 100),
				shardsOn(5, "c", 100, 100),
				shardsOn(7, "a", repeat(0.01, 9)...),
			),
			count: map[string]int{"a": 5, "b": 5, "c": 5},
			moves: 6, moved: 0.06, lowerBound: 0, balanced: true, reachable: true,
		},
		{
			name:  "the most loaded node gets its share of fresh shards",
			nodes: nodesNamed("a", "b", "c"),
			shards: concat(
				shardsOn(1, "a", 60, 60, 60),
				shardsOn(4, "b", 60),
				shardsOn(5, "c", 60, 60),
				shardsOn(7, "c", repeat(0.01, 9)...),
			),
			count: map[string]int{"a": 5, "b": 5, "c": 5},
			moves: 7, moved: 60.06, lowerBound: 54.0285, balanced: true, reachable: true,
		},
		{
			name:  "equal fresh shards balance by weight",
			nodes: nodesNamed("a", "b", "c"),
			// 16 kB each: nothing is near-empty next to its equals.
			shards: shardsOn(1, "a", repeat(16384, 12)...),
			count:  map[string]int{"a": 4, "b": 4, "c": 4},
			moves:  8, moved: 8 * 16384, balanced: true, reachable: true,
			lowerBound: -1,
		},
		{
			name:  "two new empty nodes",
			nodes: nodesNamed("a", "b", "c", "d"),
			shards: concat(
				shardsOn(1, "a", repeat(10, 10)...),
				shardsOn(11, "b", repeat(10, 10)...),
			),
			after: map[string]float64{"a": 50, "b": 50, "c": 50, "d": 50},
			moves: 10, moved: 100, lowerBound: 95, balanced: true, reachable: true,
		},
		{
			name: "one node drained",
			nodes: []Node{
				{Name: "a"}, {Name: "b"}, {Name: "c", Drain: true},
			},
			shards: concat(
				shardsOn(1, "a", 10, 10, 10),
				shardsOn(4, "b", 10, 10, 10),
				shardsOn(7, "c", 10, 10, 10, 10),
			),
			after: map[string]float64{"a": 50, "b": 50, "c": 0},
			moves: 4, moved: 40, lowerBound: 40, balanced: true, reachable: true,
		},
		{
			name: "heterogeneous capacities",
			nodes: []Node{
				{Name: "a", Capacity: 1}, {Name: "b", Capacity: 3},
			},
			shards: shardsOn(1, "a", repeat(1, 8)...),
			after:  map[string]float64{"a": 2, "b": 6},
			moves:  6, moved: 6, lowerBound: 5.9, balanced: true, reachable: true,
		},
		{
			name: "a big shard on a small node swaps with small ones",
			nodes: []Node{
				{Name: "a", Capacity: 1}, {Name: "b", Capacity: 4},
			},
			shards: concat(
				shardsOn(1, "a", 50),
				shardsOn(2, "b", repeat(5, 10)...),
			),
			after: map[string]float64{"a": 20, "b": 80},
			moves: 5, moved: 70, lowerBound: 29, balanced: true, reachable: true,
		},
		{
			name:  "pinned shards stay on an overloaded node",
			nodes: nodesNamed("a", "b"),
			shards: []Shard{
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
			nodes: []Node{
				{Name: "a"}, {Name: "b"}, {Name: "c", Drain: true},
			},
			shards: concat(
				shardsOn(1, "a", 10, 10, 10),
				shardsOn(4, "b", 10, 10, 10),
				shardsOn(7, "c", 10, 10, 10, 10),
			),
			opts:  Options{MaxMoves: 1},
			after: map[string]float64{"c": 30},
			moves: 1, moved: 10, lowerBound: 40, balanced: false, reachable: false,
		},
		{
			name:  "weight budget takes the light moves that help",
			nodes: nodesNamed("a", "b", "c"),
			shards: concat(
				shardsOn(1, "a", 30, 5, 5, 5, 5, 5, 5),
				shardsOn(8, "b", 20),
				shardsOn(9, "c", 20),
			),
			opts:       Options{MaxWeight: 10},
			moves:      2,
			moved:      10,
			lowerBound: -1,
			balanced:   false, reachable: false,
			after: map[string]float64{"a": 50},
		},
		{
			name:   "no shards",
			nodes:  nodesNamed("a"),
			shards: nil,
			moves:  0, moved: 0, lowerBound: 0, balanced: true, reachable: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Solve(tt.nodes, tt.shards, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			check(t, testCase{nodes: tt.nodes, shards: tt.shards, opts: tt.opts}, res)
			for _, n := range res.Nodes {
				if want, ok := tt.after[n.Node]; ok && !nearlyEqual(n.After, want) {
					t.Errorf("node %s ends with %v, want %v", n.Node, n.After, want)
				}
				if want, ok := tt.count[n.Node]; ok && n.ShardsAfter != want {
					t.Errorf("node %s ends with %d shards, want %d", n.Node, n.ShardsAfter, want)
				}
			}
			if tt.moves >= 0 && len(res.Moves) != tt.moves {
				t.Errorf("%d moves, want %d: %+v", len(res.Moves), tt.moves, res.Moves)
			}
			if tt.moved >= 0 && !nearlyEqual(res.Moved, tt.moved) {
				t.Errorf("moved %v, want %v", res.Moved, tt.moved)
			}
			if tt.lowerBound >= 0 && !nearlyEqual(res.LowerBound, tt.lowerBound) {
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

func TestSolveErrors(t *testing.T) {
	tests := []struct {
		name   string
		nodes  []Node
		shards []Shard
		opts   Options
		want   string
	}{
		{"no nodes", nil, nil, Options{}, "no nodes"},
		{
			"every node drained",
			[]Node{{Name: "a", Drain: true}, {Name: "b", Drain: true}},
			shardsOn(1, "a", 1),
			Options{},
			"every node is drained",
		},
		{
			"pinned shards on a drained node",
			[]Node{{Name: "a"}, {Name: "b", Drain: true}},
			[]Shard{
				{Shard: 3, Node: "b", Weight: 1, Pinned: true},
				{Shard: 4, Node: "b", Weight: 1},
				{Shard: 9, Node: "b", Weight: 1, Pinned: true},
			},
			Options{},
			"node b is drained but holds pinned shard(s) 3, 9",
		},
		{
			"shard 0 on a drained node",
			[]Node{{Name: "a"}, {Name: "b", Drain: true}},
			shardsOn(0, "b", 1, 1),
			Options{},
			"pinned shard(s) 0",
		},
		{"unknown node", nodesNamed("a"), shardsOn(5, "zz", 1), Options{}, `shard 5 is on unknown node "zz"`},
		{"node listed twice", nodesNamed("a", "a"), nil, Options{}, "node a is listed twice"},
		{"unnamed node", nodesNamed(""), nil, Options{}, "no name"},
		{"shard listed twice", nodesNamed("a", "b"), append(shardsOn(1, "a", 1), shardsOn(1, "b", 1)...), Options{}, "shard 1 is listed twice"},
		{"negative weight", nodesNamed("a"), shardsOn(1, "a", -1), Options{}, "shard 1: weight -1"},
		{"NaN weight", nodesNamed("a"), shardsOn(1, "a", math.NaN()), Options{}, "shard 1: weight NaN"},
		{"negative capacity", []Node{{Name: "a", Capacity: -2}}, nil, Options{}, "node a: capacity -2"},
		{"negative tolerance", nodesNamed("a"), nil, Options{Tolerance: -0.1}, "tolerance -0.1"},
		{"negative budget", nodesNamed("a"), nil, Options{MaxMoves: -1}, "max moves -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Solve(tt.nodes, tt.shards, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
