package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/pgms-dev/pgms/internal/golden"
)

// sameTopology compares what two topologies mean: settings, nodes, and the
// node and flags of every shard, whatever the blocks and their positions.
func sameTopology(t *testing.T, got, want *Topology) {
	t.Helper()
	gc, wc := got.Cluster, want.Cluster
	gc.DeclRange, wc.DeclRange = hcl.Range{}, hcl.Range{}
	if !reflect.DeepEqual(gc, wc) {
		t.Errorf("Cluster = %+v\nwant %+v", gc, wc)
	}
	strip := func(ns []Node) []Node {
		out := append([]Node(nil), ns...)
		for i := range out {
			out[i].DeclRange = hcl.Range{}
		}
		return out
	}
	if g, w := strip(got.Nodes), strip(want.Nodes); !reflect.DeepEqual(g, w) {
		t.Errorf("Nodes = %+v\nwant %+v", g, w)
	}
	if g, w := shardMap(got.Shards), shardMap(want.Shards); !reflect.DeepEqual(g, w) {
		t.Errorf("shards = %v\nwant %v", g, w)
	}
	if g, w := shardMap(got.Removed), shardMap(want.Removed); !reflect.DeepEqual(g, w) {
		t.Errorf("removed = %v\nwant %v", g, w)
	}
}

type shardState struct {
	Node           string
	Active, Pinned bool
}

func shardMap(rs []ShardRange) map[int]shardState {
	m := map[int]shardState{}
	for _, r := range rs {
		for n := r.From; n <= r.To; n++ {
			m[n] = shardState{r.Node, r.Active, r.Pinned}
		}
	}
	return m
}

func TestGenerateRoundTrip(t *testing.T) {
	topo := mustLoad(t, "testdata/good/multi", WithLookupEnv(lookupTestEnv))
	out := Generate(topo)
	golden.Check(t, "testdata/generate/multi.golden", string(out))
	again, diags := LoadSources(map[string][]byte{"generated.pgms.hcl": out}, WithLookupEnv(lookupTestEnv))
	if len(diags) > 0 {
		t.Fatalf("%v\n%s", diags, out)
	}
	sameTopology(t, again, topo)
	if f, _ := Format(out, "generated.pgms.hcl"); string(f) != string(out) {
		t.Errorf("Generate output is not formatted:\n%s", out)
	}
	if string(Generate(again)) != string(out) {
		t.Error("Generate is not stable over a round trip")
	}
}

// TestGenerateLiterals writes a topology built in code (as import does):
// without DSNExpr the DSN is written as given, defaults are left out, and
// contiguous ranges merge except into shard 0.
func TestGenerateLiterals(t *testing.T) {
	topo := &Topology{
		Cluster: Cluster{SchemaPrefix: "sh", SchemaDigits: 4, CleanupAfter: 90 * time.Minute,
			LibrarySchema: "microsharding", StateNode: "x", MigrateCommand: []string{"/bin/sh", "-c", "make migrate"}},
		Nodes: []Node{
			{Name: "y", DSN: "host=db-y dbname=app", MaxConcurrentMoves: 1, Capacity: 1},
			{Name: "x", DSNExpr: `env("PGMS_DSN_X")`, DSN: "postgres://app:secret@db-x/app", Drain: true},
		},
		Shards: []ShardRange{
			{From: 0, To: 0, Node: "x", Active: true},
			{From: 1, To: 3, Node: "x", Active: true},
			{From: 4, To: 9, Node: "x", Active: true},
			{From: 10, To: 10, Node: "y", Active: true, Pinned: true},
			{From: 11, To: 12, Node: "y", Active: false},
		},
		Removed: []ShardRange{{From: 20, To: 21}, {From: 22, To: 25}},
	}
	out := string(Generate(topo))
	want := `cluster {
  migrate_command = "make migrate"
  cleanup_after   = "1h30m"
}

node "x" {
  dsn   = env("PGMS_DSN_X")
  drain = true
}

node "y" {
  dsn = "host=db-y dbname=app"
}

shards "0" { node = "x" }
shards "1-9" { node = "x" }
shards "10" {
  node   = "y"
  pinned = true
}
shards "11-12" {
  node   = "y"
  active = false
}

removed { shards = "20-25" }
`
	if out != want {
		t.Errorf("Generate:\n%s\nwant:\n%s", out, want)
	}
	if strings.Contains(out, "secret") {
		t.Error("the DSN behind DSNExpr was written")
	}
	again, diags := LoadSources(map[string][]byte{"g.pgms.hcl": []byte(out)},
		WithLookupEnv(func(string) (string, bool) { return "postgres://app:secret@db-x/app", true }))
	if len(diags) > 0 {
		t.Fatalf("%v", diags)
	}
	topo.Nodes[0], topo.Nodes[1] = topo.Nodes[1], topo.Nodes[0]
	topo.Nodes[0].MaxConcurrentMoves, topo.Nodes[0].Capacity = 1, 1
	topo.Nodes[1].DSNExpr = `"host=db-y dbname=app"`
	sameTopology(t, again, topo)
}

func TestFormat(t *testing.T) {
	files, _ := filepath.Glob("testdata/format/*.pgms.hcl")
	if len(files) == 0 {
		t.Fatal("no cases")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src := readFile(t, f)
			got, diags := Format(src, f)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			golden.Check(t, strings.TrimSuffix(f, FileSuffix)+".golden", string(got))
			again, _ := Format(got, f)
			if string(again) != string(got) {
				t.Errorf("Format is not idempotent:\n%s\nthen:\n%s", got, again)
			}
		})
	}
	if _, diags := Format([]byte("node \"a\" {\n"), "broken.pgms.hcl"); !diags.HasErrors() {
		t.Error("Format accepted a syntax error")
	}
}
