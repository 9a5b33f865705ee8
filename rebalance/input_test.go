package rebalance

import (
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/state"
)

// live is a cluster whose nodes hold shards with the given weights, sizes
// in bytes or plain numbers.
func live(nodes map[string]map[int]state.Weight) *state.Cluster {
	c := &state.Cluster{}
	for _, name := range []string{"a", "b", "c"} {
		shards, ok := nodes[name]
		if !ok {
			continue
		}
		n := &state.NodeState{Name: name}
		for num := range 16 {
			if w, ok := shards[num]; ok {
				n.Shards = append(n.Shards, state.ShardState{Shard: num, Bytes: 1000, Weight: &w})
			}
		}
		c.Nodes = append(c.Nodes, n)
	}
	return c
}

func TestBuild(t *testing.T) {
	top, diags := config.LoadSources(map[string][]byte{"t.pgms.hcl": []byte(`cluster { weight_sql = "SELECT 1" }
node "a" { dsn = "host=a" }
node "b" { dsn = "host=b" }
shards "0-3" { node = "a" }
shards "4-5" {
  node   = "b"
  pinned = true
}
`)})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	tests := []struct {
		name    string
		live    *state.Cluster
		bytes   bool
		wantErr string
	}{
		{"sizes and numbers do not compare", live(map[string]map[int]state.Weight{"a": {1: {Value: 5}}, "b": {4: {Value: 7, Bytes: true}}}),
			false, "sizes for some shards (4) and plain numbers for others (1)"},
		{"a weight query that measured nothing is not taken for bytes", &state.Cluster{}, false, ""},
		{"sizes", live(map[string]map[int]state.Weight{"a": {1: {Value: 5, Bytes: true}}}), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := Build(top, tt.live, map[string]bool{"a": true})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || in.Bytes != tt.bytes {
				t.Errorf("bytes %v, %v; want %v", in.Bytes, err, tt.bytes)
			}
			if len(in.Shards) != 6 || !in.Shards[0].Pinned || in.Shards[1].Pinned || !in.Shards[4].Pinned || !in.Nodes[0].Drain || in.Nodes[1].Drain {
				t.Errorf("input %+v", in)
			}
		})
	}
}
