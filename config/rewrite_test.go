package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/pgms-dev/pgms/internal/golden"
)

var rewriteEnv = WithLookupEnv(func(name string) (string, bool) {
	v, ok := testEnv[name]
	if name == "PGMS_DSN_C" {
		return "postgres://app@db-c/app", true
	}
	return v, ok
})

// parsePlacement reads "60-70=b,300=a".
func parsePlacement(t *testing.T, s string) map[int]string {
	m := map[int]string{}
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		rng, node, _ := strings.Cut(part, "=")
		from, to, err := ParseRange(rng)
		if err != nil {
			t.Fatal(err)
		}
		for n := from; n <= to; n++ {
			m[n] = node
		}
	}
	return m
}

func TestRewritePlacement(t *testing.T) {
	tests := []struct {
		name, dir, placement string
	}{
		{"whole_block", "basic", "129-256=c"},
		{"split_middle", "basic", "60-70=b"},
		{"split_end", "basic", "120-128=c"},
		{"merge_neighbour", "basic", "129-140=a"},
		{"merge_delete", "basic", "129-256=a"},
		{"merge_both_sides", "basic", "1-128=b"},
		{"inactive_split", "basic", "257-258=c"},
		{"pinned_moved", "basic", "300=a"},
		{"shard_zero", "basic", "0-10=b"},
		{"scattered", "basic", "3=c,6=c,9=c,10=c,200=c"},
		{"swap", "basic", "1-128=b,129-256=a"},
		{"no_change", "basic", "0=a,1-128=a,129-256=b"},
		{"blank_lines_split", "blank_lines", "5-8=b"},
		{"blank_lines_merge", "blank_lines", "15-20=b"},
		{"multi_file", "multi_file", "11-20=a"},
		{"multi_file_across", "multi_file", "18-23=b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topo := mustLoad(t, filepath.Join("testdata/rewrite", tt.dir), rewriteEnv)
			placement := parsePlacement(t, tt.placement)
			out, err := RewritePlacement(topo, placement)
			if err != nil {
				t.Fatal(err)
			}
			var rendered strings.Builder
			names := make([]string, 0, len(out))
			for f := range out {
				names = append(names, f)
			}
			sort.Strings(names)
			for _, f := range names {
				if string(out[f]) == string(topo.Sources[f]) {
					t.Errorf("%s is returned unchanged", f)
				}
				fmt.Fprintf(&rendered, "=== %s\n%s", filepath.Base(f), out[f])
			}
			if len(out) == 0 {
				rendered.WriteString("(no file changes)\n")
			}
			golden.Check(t, filepath.Join("testdata/rewrite", tt.name+".golden"), rendered.String())

			// The rewritten files mean exactly the new placement, with
			// every shard's flags kept.
			sources := map[string][]byte{}
			for f, b := range topo.Sources {
				sources[f] = b
			}
			for f, b := range out {
				sources[f] = b
			}
			again, diags := LoadSources(sources, rewriteEnv)
			if len(diags) > 0 {
				var b strings.Builder
				WriteDiagnostics(&b, sources, diags, false)
				t.Fatalf("rewritten files do not load:\n%s", b.String())
			}
			want := shardMap(topo.Shards)
			for n, node := range placement {
				s := want[n]
				s.Node = node
				want[n] = s
			}
			want2 := *topo
			want2.Shards = nil
			for n, s := range want {
				want2.Shards = append(want2.Shards, ShardRange{From: n, To: n, Node: s.Node, Active: s.Active, Pinned: s.Pinned})
			}
			sameTopology(t, again, &want2)

			// Nothing left to do the second time.
			if out2, err := RewritePlacement(again, placement); err != nil || len(out2) != 0 {
				t.Errorf("second rewrite: %v, %d files changed", err, len(out2))
			}
		})
	}
}

func TestRewritePlacementErrors(t *testing.T) {
	topo := mustLoad(t, "testdata/rewrite/basic", rewriteEnv)
	tests := []struct {
		placement, want string
	}{
		{"500=a", "shard 500 is in no shards block"},
		{"5=d", `shard 5: no node "d" is declared`},
	}
	for _, tt := range tests {
		if _, err := RewritePlacement(topo, parsePlacement(t, tt.placement)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("RewritePlacement(%s) = %v, want %q", tt.placement, err, tt.want)
		}
	}
	// Files edited since they were loaded are refused, not corrupted.
	stale := *topo
	stale.Sources = map[string][]byte{}
	for f, b := range topo.Sources {
		stale.Sources[f] = append([]byte("\n\n"), b...)
	}
	if _, err := RewritePlacement(&stale, parsePlacement(t, "5=b")); err == nil {
		t.Error("RewritePlacement accepted sources that do not match the topology")
	}
}

func TestMain(m *testing.M) {
	os.Exit(m.Run())
}
