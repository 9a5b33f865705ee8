package rebalance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// benchCase is a drifted cluster: log-normal shard weights placed
// with per-node propensities in [1-skew, 1+skew] on the first `on` nodes.
func benchCase(shards, nodes, on int, skew float64) ([]Node, []Shard) {
	rng := rand.New(rand.NewPCG(1, 2))
	ns := make([]Node, nodes)
	for i := range ns {
		ns[i].Name = fmt.Sprintf("n%03d", i)
	}
	prop := make([]float64, on)
	sum := 0.0
	for i := range prop {
		prop[i] = 1 - skew + 2*skew*rng.Float64()
		sum += prop[i]
	}
	ss := make([]Shard, shards)
	for i := range ss {
		x := rng.Float64() * sum
		k := 0
		for k < on-1 && x >= prop[k] {
			x -= prop[k]
			k++
		}
		ss[i] = Shard{Shard: i + 1, Node: ns[k].Name, Weight: math.Exp(1.2*rng.NormFloat64()) * (1 << 30)}
	}
	return ns, ss
}

func BenchmarkSolve10kx100(b *testing.B) {
	nodes, shards := benchCase(10000, 100, 100, 0.3)
	for b.Loop() {
		if _, err := Solve(nodes, shards, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// All shards on one node of 100: the first spread of a cluster.
func BenchmarkSolve10kOnOne(b *testing.B) {
	nodes, shards := benchCase(10000, 100, 1, 0)
	for b.Loop() {
		if _, err := Solve(nodes, shards, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSolve10kx100Tight(b *testing.B) {
	nodes, shards := benchCase(10000, 100, 100, 0.3)
	for b.Loop() {
		res, err := Solve(nodes, shards, Options{Tolerance: 0.001})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.MaxRatio(), "max/fair")
		b.ReportMetric(res.Moved/res.LowerBound, "moved/LB")
		b.ReportMetric(float64(len(res.Moves)), "moves")
	}
}
