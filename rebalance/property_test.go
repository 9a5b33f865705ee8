package rebalance

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
)

// testCase is one generated input.
type testCase struct {
	nodes  []Node
	shards []Shard
	opts   Options
}

func (c testCase) String() string {
	return fmt.Sprintf("nodes=%+v\nshards=%+v\nopts=%+v", c.nodes, c.shards, c.opts)
}

// randomCase draws a small cluster that mixes what makes the
// algorithm work: drained and new nodes, capacities, empty, pinned and
// oversized shards, budgets.
func randomCase(rng *rand.Rand) testCase {
	var c testCase
	nn := 1 + rng.IntN(7)
	for i := range nn {
		n := Node{Name: fmt.Sprintf("n%d", i)}
		if rng.IntN(4) == 0 {
			n.Capacity = float64(1 + rng.IntN(4))
		}
		if i > 0 && rng.IntN(5) == 0 {
			n.Drain = true
		}
		c.nodes = append(c.nodes, n)
	}
	// Shards live on the first k nodes; the others start empty (new nodes).
	k := 1 + rng.IntN(nn)
	var live []int
	for i := range k {
		live = append(live, i)
	}
	ns := rng.IntN(60)
	dist := rng.IntN(4)
	first := rng.IntN(2) // whether shard 0 exists
	for i := range ns {
		num := i + 1 - first
		var w float64
		switch dist {
		case 0:
			w = float64(rng.IntN(1000))
		case 1:
			w = math.Exp(1.5 * rng.NormFloat64())
		case 2:
			if rng.IntN(3) > 0 {
				w = 0
			} else {
				w = rng.Float64()
			}
		case 3:
			w = 1 + rng.Float64()
			if rng.IntN(20) == 0 {
				w *= 50
			}
		}
		node := live[rng.IntN(len(live))]
		s := Shard{Shard: num, Node: c.nodes[node].Name, Weight: w, Pinned: rng.IntN(15) == 0}
		if (s.Pinned || num == 0) && c.nodes[node].Drain {
			s.Node = c.nodes[0].Name // node 0 is never drained
		}
		c.shards = append(c.shards, s)
	}
	switch rng.IntN(6) {
	case 0:
		c.opts.MaxMoves = 1 + rng.IntN(5)
	case 1:
		c.opts.MaxWeight = rng.Float64() * 500
	case 2:
		c.opts.Tolerance = []float64{0.01, 0.1, 0.3}[rng.IntN(3)]
	}
	return c
}

var randomCases = flag.Int("rebalance.cases", 600, "random cases for TestProperties")

func TestProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range *randomCases {
		c := randomCase(rng)
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			res, err := Solve(c.nodes, c.shards, c.opts)
			if err != nil {
				t.Fatalf("%v\n%v", err, c)
			}
			check(t, c, res)

			// Same answer whatever the input order.
			p := testCase{
				nodes:  append([]Node(nil), c.nodes...),
				shards: append([]Shard(nil), c.shards...),
				opts:   c.opts,
			}
			rng.Shuffle(len(p.nodes), func(i, j int) { p.nodes[i], p.nodes[j] = p.nodes[j], p.nodes[i] })
			rng.Shuffle(len(p.shards), func(i, j int) { p.shards[i], p.shards[j] = p.shards[j], p.shards[i] })
			again, err := Solve(p.nodes, p.shards, p.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res, again) {
				t.Fatalf("result depends on input order\n%v\nfirst:  %+v\nsecond: %+v", c, res, again)
			}

			// Under a budget, Reachable means the goals of the unlimited
			// placement are met: drained nodes empty, the same balance.
			if c.opts.MaxMoves > 0 || c.opts.MaxWeight > 0 {
				free := c.opts
				free.MaxMoves, free.MaxWeight = 0, 0
				full, err := Solve(c.nodes, c.shards, free)
				if err != nil {
					t.Fatal(err)
				}
				if full.Reachable != true {
					t.Fatalf("unlimited result not Reachable")
				}
				drained := false
				for _, n := range res.Nodes {
					drained = drained || (n.Drain && n.ShardsAfter > 0)
				}
				if res.Reachable && (drained || (full.Balanced && !res.Balanced)) {
					t.Errorf("Reachable but drained nodes hold shards (%v) or balance lost (%v -> %v)\n%v", drained, full.Balanced, res.Balanced, c)
				}
				if !res.Reachable && reflect.DeepEqual(res.Placement, full.Placement) {
					t.Errorf("not Reachable but the unlimited placement\n%v", c)
				}
			}
		})
	}
}

// check verifies what every result must satisfy.
func check(t *testing.T, c testCase, res Result) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\n%v", append(args, c)...)
	}
	nodes := map[string]Node{}
	for _, n := range c.nodes {
		nodes[n.Name] = n
	}
	budget := c.opts.MaxMoves > 0 || c.opts.MaxWeight > 0

	// Every shard placed exactly once, on a known node; pinned ones stay.
	if len(res.Placement) != len(c.shards) {
		fail("placement has %d shards, input %d", len(res.Placement), len(c.shards))
	}
	byNum := map[int]Shard{}
	after := map[string]float64{}
	count := map[string]int{}
	for _, s := range c.shards {
		byNum[s.Shard] = s
		to, ok := res.Placement[s.Shard]
		if !ok {
			fail("shard %d not placed", s.Shard)
		}
		if _, ok := nodes[to]; !ok {
			fail("shard %d placed on unknown node %q", s.Shard, to)
		}
		if (s.Pinned || s.Shard == 0) && to != s.Node {
			fail("pinned shard %d moved from %s to %s", s.Shard, s.Node, to)
		}
		if !budget && nodes[to].Drain {
			fail("shard %d left on drained node %s", s.Shard, to)
		}
		after[to] += s.Weight
		count[to]++
	}

	// Moves are exactly the shards whose node changed, sorted.
	moved := 0.0
	seen := map[int]bool{}
	for i, m := range res.Moves {
		s, ok := byNum[m.Shard]
		switch {
		case !ok || seen[m.Shard]:
			fail("move %+v: unknown or repeated shard", m)
		case m.From != s.Node || m.To != res.Placement[m.Shard] || m.From == m.To || m.Weight != s.Weight:
			fail("move %+v does not match input %+v and placement %s", m, s, res.Placement[m.Shard])
		}
		if i > 0 {
			p := res.Moves[i-1]
			if p.From > m.From || (p.From == m.From && (p.To > m.To || (p.To == m.To && p.Shard > m.Shard))) {
				fail("moves not sorted: %+v before %+v", p, m)
			}
		}
		seen[m.Shard] = true
		moved += m.Weight
	}
	for _, s := range c.shards {
		if res.Placement[s.Shard] != s.Node && !seen[s.Shard] {
			fail("shard %d changed node without a move", s.Shard)
		}
	}
	if !nearlyEqual(moved, res.Moved) {
		fail("Moved = %v, moves sum to %v", res.Moved, moved)
	}

	// Budgets.
	if c.opts.MaxMoves > 0 && len(res.Moves) > c.opts.MaxMoves {
		fail("%d moves, budget %d", len(res.Moves), c.opts.MaxMoves)
	}
	if c.opts.MaxWeight > 0 && res.Moved > c.opts.MaxWeight*(1+1e-9) {
		fail("moved %v, budget %v", res.Moved, c.opts.MaxWeight)
	}
	if !budget && !res.Reachable {
		fail("not Reachable without a budget")
	}

	// Node summaries agree with the placement, in name order.
	if len(res.Nodes) != len(c.nodes) {
		fail("%d node summaries for %d nodes", len(res.Nodes), len(c.nodes))
	}
	if !sort.SliceIsSorted(res.Nodes, func(i, j int) bool { return res.Nodes[i].Node < res.Nodes[j].Node }) {
		fail("nodes not sorted: %+v", res.Nodes)
	}
	for _, n := range res.Nodes {
		if !nearlyEqual(n.After, after[n.Node]) || n.ShardsAfter != count[n.Node] {
			fail("node %s: After=%v/%d, placement gives %v/%d", n.Node, n.After, n.ShardsAfter, after[n.Node], count[n.Node])
		}
	}

	// Never less balanced than the input.
	if b, a := res.MaxRatioBefore(), res.MaxRatio(); a > b*(1+1e-9) {
		fail("max/fair got worse: %v -> %v", b, a)
	}
	if res.Moved > 0 && res.LowerBound == 0 && !budget && res.Balanced && len(res.Oversized) == 0 {
		// Only near-empty shards may move when nothing needs to.
		for _, m := range res.Moves {
			if m.Weight > res.NearEmpty {
				fail("move %+v although the input was within its bands", m)
			}
		}
	}
}

func nearlyEqual(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// TestSmallClusters compares Rebalance with an exhaustive search
// on clusters small enough to try every placement: 2 or 3 nodes, equal or
// random capacities, 3 to 8 shards of log-normal weights, 10% tolerance.
// Few big shards are where granularity bites hardest.
func TestSmallClusters(t *testing.T) {
	for _, capacities := range []bool{false, true} {
		t.Run(fmt.Sprintf("capacities=%v", capacities), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 5))
			feasible, balanced, ratioSum := 0, 0, 0.0
			for range 1500 {
				nn := 2 + rng.IntN(2)
				nodes := nodesNamed([]string{"a", "b", "c"}[:nn]...)
				capSum := 0.0
				for i := range nodes {
					nodes[i].Capacity = 1
					if capacities {
						nodes[i].Capacity = float64(1 + rng.IntN(4))
					}
					capSum += nodes[i].Capacity
				}
				var shards []Shard
				sum := 0.0
				for j := range 3 + rng.IntN(6) {
					w := math.Round(math.Exp(rng.NormFloat64()) * 100)
					shards = append(shards, Shard{Shard: j + 1, Node: nodes[rng.IntN(nn)].Name, Weight: w})
					sum += w
				}
				const tol = 0.1
				res, err := Solve(nodes, shards, Options{Tolerance: tol})
				if err != nil {
					t.Fatal(err)
				}
				// The least weight any placement within tolerance moves.
				optimum := math.Inf(1)
				combos := int(math.Pow(float64(nn), float64(len(shards))))
				load := make([]float64, nn)
				for c := range combos {
					clear(load)
					moved := 0.0
					for _, s := range shards {
						k := c % nn
						c /= nn
						load[k] += s.Weight
						if nodes[k].Name != s.Node {
							moved += s.Weight
						}
					}
					ok := true
					for i, l := range load {
						fair := sum * nodes[i].Capacity / capSum
						ok = ok && math.Abs(l-fair) <= tol*fair+1e-9
					}
					if ok {
						optimum = math.Min(optimum, moved)
					}
				}
				if math.IsInf(optimum, 1) {
					continue
				}
				feasible++
				if res.Balanced {
					balanced++
					ratio := 1.0
					if optimum > 0 {
						ratio = res.Moved / optimum
					} else if res.Moved > 0 {
						t.Errorf("moved %v where nothing needed to move: %+v", res.Moved, shards)
					}
					ratioSum += ratio
				}
			}
			rate, mean := float64(balanced)/float64(feasible), ratioSum/float64(balanced)
			t.Logf("%d feasible cases: %.1f%% balanced, weight moved %.3f x the optimum on average", feasible, 100*rate, mean)
			if rate < 0.99 || mean > 1.05 {
				t.Errorf("quality regressed: balanced %.3f (want >= 0.99), mean moved/optimum %.3f (want <= 1.05)", rate, mean)
			}
		})
	}
}
