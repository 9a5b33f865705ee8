// Command rebalance measures the quality of rebalance.Solve on synthetic
// shard distributions, next to a plain greedy baseline, and prints one table
// row per scenario and algorithm:
//
//	go run ./internal/bench/rebalance [-seed N] [-runs N]
//
// Columns: max/fair before and after (the most loaded node's weight over its
// fair share; 1.00 is perfect), whether every node ends within the tolerance
// and drained nodes empty, the spread of near-empty shards (the largest
// difference between a node's count of them and its capacity-weighted
// share), the weight moved as a multiple of the result's LowerBound, the
// number of moves, and the best runtime of -runs runs.
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/pgms-dev/pgms/rebalance"
)

const gb = 1 << 30

// scenario is one synthetic cluster.
type scenario struct {
	name   string
	nodes  []rebalance.Node
	shards []rebalance.Shard
	opts   rebalance.Options
}

func main() {
	seed := flag.Uint64("seed", 1, "random seed of the synthetic distributions")
	runs := flag.Int("runs", 3, "runs per scenario; the fastest is reported")
	flag.Parse()
	if err := run(os.Stdout, *seed, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "rebalance:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, seed uint64, runs int) error {
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\talgorithm\tshards\tnodes\tmax/fair before\tmax/fair after\tbalanced\tnear-empty ±\tmoved/LB\tmoves\ttime\t")
	for _, sc := range scenarios(seed) {
		res, dur, err := timed(runs, func() (rebalance.Result, error) {
			return rebalance.Solve(sc.nodes, sc.shards, sc.opts)
		})
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		row(tw, sc, "rebalance", res, res, dur)
		base, dur, _ := timed(runs, func() (rebalance.Result, error) {
			return greedy(sc.nodes, sc.shards, sc.opts), nil
		})
		row(tw, sc, "greedy", base, res, dur)
	}
	return tw.Flush()
}

func timed(runs int, f func() (rebalance.Result, error)) (rebalance.Result, time.Duration, error) {
	var res rebalance.Result
	best := time.Duration(math.MaxInt64)
	for range max(runs, 1) {
		start := time.Now()
		r, err := f()
		if err != nil {
			return r, 0, err
		}
		best = min(best, time.Since(start))
		res = r
	}
	return res, best, nil
}

// row prints res; ref is the algorithm's result, whose lower bound and
// near-empty threshold apply to both rows.
func row(w io.Writer, sc scenario, algo string, res, ref rebalance.Result, d time.Duration) {
	lb := ref.LowerBound
	moved := "-"
	if lb > 0 {
		moved = fmt.Sprintf("%.3f", res.Moved/lb)
	} else if res.Moved > 0 {
		moved = "inf"
	}
	balanced := "no"
	if balancedWithin(res, sc.opts.Tolerance) {
		balanced = "yes"
	}
	fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%.3f\t%.3f\t%s\t%.1f\t%s\t%d\t%s\t\n",
		sc.name, algo, len(sc.shards), len(sc.nodes),
		res.MaxRatioBefore(), res.MaxRatio(), balanced, spread(sc, res, ref.NearEmpty), moved, len(res.Moves), d.Round(10*time.Microsecond))
}

// spread is the largest difference between a node's number of near-empty
// shards and its capacity-weighted share of them.
func spread(sc scenario, res rebalance.Result, nearEmpty float64) float64 {
	count := map[string]int{}
	total := 0
	for _, s := range sc.shards {
		if s.Weight <= nearEmpty {
			count[res.Placement[s.Shard]]++
			total++
		}
	}
	capSum := 0.0
	for _, n := range sc.nodes {
		if !n.Drain {
			capSum += capacity(n)
		}
	}
	worst := 0.0
	for _, n := range sc.nodes {
		share := 0.0
		if !n.Drain {
			share = float64(total) * capacity(n) / capSum
		}
		worst = math.Max(worst, math.Abs(float64(count[n.Name])-share))
	}
	return worst
}

func balancedWithin(res rebalance.Result, tol float64) bool {
	if tol == 0 {
		tol = rebalance.DefaultTolerance
	}
	for _, n := range res.Nodes {
		if math.Abs(n.After-n.Fair) > tol*n.Fair*(1+1e-9) {
			return false
		}
	}
	return true
}

func nodes(n int) []rebalance.Node {
	out := make([]rebalance.Node, n)
	for i := range out {
		out[i] = rebalance.Node{Name: fmt.Sprintf("n%03d", i)}
	}
	return out
}

// place puts shards on the first n of nodes with random per-node
// propensities in [1-skew, 1+skew]: a cluster that has drifted apart.
func place(rng *rand.Rand, weights []float64, nodes []rebalance.Node, n int, skew float64) []rebalance.Shard {
	prop := make([]float64, n)
	sum := 0.0
	for i := range prop {
		prop[i] = 1 - skew + 2*skew*rng.Float64()
		sum += prop[i]
	}
	out := make([]rebalance.Shard, len(weights))
	for i, w := range weights {
		x := rng.Float64() * sum
		k := 0
		for k < n-1 && x >= prop[k] {
			x -= prop[k]
			k++
		}
		out[i] = rebalance.Shard{Shard: i + 1, Node: nodes[k].Name, Weight: w}
	}
	return out
}

func uniform(rng *rand.Rand, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = (0.5 + rng.Float64()) * gb
	}
	return out
}

func lognormal(rng *rand.Rand, n int, sigma float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = math.Exp(sigma*rng.NormFloat64()) * gb
	}
	return out
}

func scenarios(seed uint64) []scenario {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	var out []scenario

	ns := nodes(10)
	out = append(out, scenario{name: "uniform", nodes: ns, shards: place(rng, uniform(rng, 1000), ns, 10, 0.3)})

	ns = nodes(10)
	out = append(out, scenario{name: "log-normal", nodes: ns, shards: place(rng, lognormal(rng, 1000, 1.2), ns, 10, 0.3)})

	ns = nodes(8)
	ws := uniform(rng, 400)
	ws = append(ws, 2*sum(ws)/8)
	out = append(out, scenario{name: "whale", nodes: ns, shards: place(rng, ws, ns, 8, 0.3)})

	ns = nodes(10)
	out = append(out, scenario{name: "two new nodes", nodes: ns, shards: place(rng, lognormal(rng, 1000, 1.2), ns, 8, 0.1)})

	ns = nodes(8)
	ss := place(rng, lognormal(rng, 800, 1.2), ns, 8, 0.1)
	for i := range 200 {
		ss = append(ss, rebalance.Shard{Shard: 801 + i, Node: ns[0].Name, Weight: 16 << 10})
	}
	out = append(out, scenario{name: "fresh shards", nodes: ns, shards: ss})

	ns = nodes(10)
	ss = place(rng, lognormal(rng, 1000, 1.2), ns, 10, 0.1)
	ns[3].Drain = true
	out = append(out, scenario{name: "drain one", nodes: ns, shards: ss})

	ns = nodes(6)
	for i := range ns {
		ns[i].Capacity = []float64{1, 1, 2, 2, 4, 4}[i]
	}
	out = append(out, scenario{name: "capacities", nodes: ns, shards: place(rng, lognormal(rng, 1000, 1.2), ns, 6, 0.1)})

	ns = nodes(4)
	out = append(out, scenario{name: "few big shards", nodes: ns, shards: place(rng, lognormal(rng, 40, 1.2), ns, 4, 0.3)})

	ns = nodes(100)
	out = append(out, scenario{name: "10k x 100", nodes: ns, shards: place(rng, lognormal(rng, 10000, 1.2), ns, 100, 0.3)})

	ns = nodes(100)
	out = append(out, scenario{name: "10k on 1 of 100", nodes: ns, shards: place(rng, lognormal(rng, 10000, 1.2), ns, 1, 0)})

	// The same drifted cluster three times: unlimited, then with budgets
	// that stop short of it.
	ns = nodes(10)
	ss = place(rng, lognormal(rng, 1000, 1.2), ns, 10, 0.3)
	out = append(out,
		scenario{name: "no budget", nodes: ns, shards: ss},
		scenario{name: "budget 8 moves", nodes: ns, shards: ss, opts: rebalance.Options{MaxMoves: 8}},
		scenario{name: "budget 50 GB", nodes: ns, shards: ss, opts: rebalance.Options{MaxWeight: 50 * gb}},
	)
	return out
}

func sum(ws []float64) float64 {
	s := 0.0
	for _, w := range ws {
		s += w
	}
	return s
}

// greedy is the baseline: while the most loaded node (a drained one first)
// is above its band, move its heaviest shard that lowers the maximum (and
// fits the budgets) to the least loaded node.
func greedy(nodes []rebalance.Node, shards []rebalance.Shard, opts rebalance.Options) rebalance.Result {
	tol := opts.Tolerance
	if tol == 0 {
		tol = rebalance.DefaultTolerance
	}
	idx := map[string]int{}
	capSum, total := 0.0, 0.0
	for i, n := range nodes {
		idx[n.Name] = i
		if !n.Drain {
			capSum += capacity(n)
		}
	}
	on := make([][]int, len(nodes)) // shard indexes per node, by weight
	load := make([]float64, len(nodes))
	for i, s := range shards {
		n := idx[s.Node]
		on[n] = append(on[n], i)
		load[n] += s.Weight
		total += s.Weight
	}
	for _, l := range on {
		sort.Slice(l, func(a, b int) bool { return shards[l[a]].Weight < shards[l[b]].Weight })
	}
	fair := make([]float64, len(nodes))
	for i, n := range nodes {
		if !n.Drain {
			fair[i] = total * capacity(n) / capSum
		}
	}
	res := rebalance.Result{Placement: map[int]string{}, Reachable: true}
	before := append([]float64(nil), load...)
	ratio := func(i int, l float64) float64 {
		if nodes[i].Drain {
			return math.Inf(1)
		}
		return l / fair[i]
	}
	moves, moved := 0, 0.0
	for range 100 * len(shards) {
		if opts.MaxMoves > 0 && moves >= opts.MaxMoves {
			break
		}
		a, b := -1, -1
		for i := range nodes {
			if len(on[i]) > 0 && (nodes[i].Drain || shards[on[i][0]].Shard != 0 || len(on[i]) > 1) &&
				(a < 0 || ratio(i, load[i]) > ratio(a, load[a])) {
				a = i
			}
			if !nodes[i].Drain && (b < 0 || ratio(i, load[i]) < ratio(b, load[b])) {
				b = i
			}
		}
		if a < 0 || a == b || (!nodes[a].Drain && ratio(a, load[a]) <= 1+tol) {
			break
		}
		pick := -1
		for k := len(on[a]) - 1; k >= 0; k-- {
			s := shards[on[a][k]]
			if s.Shard == 0 || s.Pinned || (opts.MaxWeight > 0 && moved+s.Weight > opts.MaxWeight) {
				continue
			}
			if nodes[a].Drain || ratio(b, load[b]+s.Weight) < ratio(a, load[a]) {
				pick = k
				break
			}
		}
		if pick < 0 {
			break
		}
		s := on[a][pick]
		on[a] = append(on[a][:pick], on[a][pick+1:]...)
		k := sort.Search(len(on[b]), func(i int) bool { return shards[on[b][i]].Weight >= shards[s].Weight })
		on[b] = append(on[b], 0)
		copy(on[b][k+1:], on[b][k:])
		on[b][k] = s
		load[a] -= shards[s].Weight
		load[b] += shards[s].Weight
		moves++
		moved += shards[s].Weight
	}
	// Recomputed: the running loads carry rounding from the subtractions.
	clear(load)
	for n, l := range on {
		for _, s := range l {
			sh := shards[s]
			load[n] += sh.Weight
			res.Placement[sh.Shard] = nodes[n].Name
			if sh.Node != nodes[n].Name {
				res.Moves = append(res.Moves, rebalance.Move{Shard: sh.Shard, From: sh.Node, To: nodes[n].Name, Weight: sh.Weight})
				res.Moved += sh.Weight
			}
		}
	}
	for i, n := range nodes {
		res.Nodes = append(res.Nodes, rebalance.NodeBalance{Node: n.Name, Drain: n.Drain, Before: before[i], After: load[i], Fair: fair[i], Target: fair[i]})
	}
	return res
}

func capacity(n rebalance.Node) float64 {
	if n.Capacity == 0 {
		return 1
	}
	return n.Capacity
}
