package views

import (
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/golden"
	"github.com/pgms-dev/pgms/rebalance"
	"github.com/pgms-dev/pgms/state"
)

// fakeLive is a live state holding, per node, shards with the given
// weights (sizes in bytes when bytes is set).
func fakeLive(bytes bool, shards map[string]map[int]float64) *state.Cluster {
	c := &state.Cluster{}
	names := make([]string, 0, len(shards))
	for name := range shards {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := &state.NodeState{Name: name}
		nums := make([]int, 0, len(shards[name]))
		for num := range shards[name] {
			nums = append(nums, num)
		}
		sort.Ints(nums)
		for _, num := range nums {
			w := shards[name][num]
			n.Shards = append(n.Shards, state.ShardState{Shard: num, Bytes: int64(w) + 1000, Weight: &state.Weight{Value: w, Bytes: bytes}})
		}
		c.Nodes = append(c.Nodes, n)
	}
	return c
}

// TestRebalanceReport renders results the real clusters of the other tests
// do not produce: capacities, a drained node, an oversized shard.
func TestRebalanceReport(t *testing.T) {
	top, diags := config.LoadSources(map[string][]byte{"t.pgms.hcl": []byte(`node "a" {
  dsn      = "host=a"
  capacity = 2
}
node "b" { dsn = "host=b" }
node "c" {
  dsn   = "host=c"
  drain = true
}
node "d" { dsn = "host=d" }
shards "0-3" { node = "a" }
shards "4-5" { node = "b" }
shards "6-8" { node = "c" }
shards "9" { node = "d" }
`)})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	const mb = 1 << 20
	live := fakeLive(true, map[string]map[int]float64{
		"a": {0: 1 * mb, 1: 10 * mb, 2: 10 * mb, 3: 10 * mb},
		"b": {4: 300 * mb, 5: 10 * mb},
		"c": {6: 10 * mb, 7: 10 * mb},
		"d": {9: 10 * mb},
	})
	drain := map[string]bool{"c": true}
	in, err := rebalance.Build(top, live, drain)
	if err != nil {
		t.Fatal(err)
	}
	if !in.Bytes || in.Allocated(8) || !in.Allocated(7) {
		t.Fatalf("input: bytes %v, allocated(8) %v, allocated(7) %v", in.Bytes, in.Allocated(8), in.Allocated(7))
	}
	res, err := rebalance.Solve(in.Nodes, in.Shards, rebalance.Options{Tolerance: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	files, err := config.RewritePlacement(top, res.Placement)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRebalance(RebalanceSource{Topology: top, Live: live, Proposal: rebalance.Proposal{Input: in, Result: res, Files: files}, TolerancePercent: 5})
	for _, f := range []struct {
		name string
		r    Renderer
	}{{"rebalance_report.golden", Text{}}, {"rebalance_report.md", Markdown{}}, {"rebalance_report.json", JSON{}}} {
		var b strings.Builder
		if err := f.r.Render(&b, r); err != nil {
			t.Fatal(err)
		}
		golden.Check(t, filepath.Join("testdata", f.name), b.String())
	}
}
