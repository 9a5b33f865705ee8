package runner

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// ImportRequest names the nodes to describe and how.
type ImportRequest struct {
	Nodes         []state.NodeSpec
	Naming        sql.Naming
	LibrarySchema string
	// LiteralDSN writes the DSNs themselves (without passwords) instead of
	// env() references to config.DSNVariable.
	LiteralDSN bool
}

// Import reads the nodes and describes the cluster as it is: a topology
// placing every shard where it lives, with its active flag, and the
// content of the file that says so. The content is checked to load back
// to the same shards before it is returned.
func Import(ctx context.Context, req ImportRequest) (*config.Topology, []byte, error) {
	live := state.Refresh(ctx, req.Nodes, state.RefreshOptions{LibrarySchema: req.LibrarySchema, Naming: req.Naming})
	t, err := Describe(live, req)
	if err != nil {
		return nil, nil, err
	}
	content := config.Generate(t)
	// The file must load back to the same placement, with the variables
	// it names taken as set.
	lookup := func(string) (string, bool) { return "postgres://check/", true }
	back, diags := config.LoadSources(map[string][]byte{"import.pgms.hcl": content}, config.WithLookupEnv(lookup))
	if diags.HasErrors() {
		return nil, nil, fmt.Errorf("generated topology does not load (a bug): %v", diags)
	}
	s1, a1 := back.Counts()
	if s2, a2 := t.Counts(); s1 != s2 || a1 != a2 {
		return nil, nil, errors.New("generated topology does not round-trip (a bug)")
	}
	return t, content, nil
}

// Describe turns the live state of the nodes of req into a topology,
// refusing states a topology cannot describe: unreadable nodes, standbys,
// a shard on two nodes.
func Describe(live *state.Cluster, req ImportRequest) (*config.Topology, error) {
	t := &config.Topology{}
	t.Cluster.SchemaPrefix, t.Cluster.SchemaDigits = req.Naming.Prefix, req.Naming.Digits
	t.Cluster.LibrarySchema = req.LibrarySchema
	t.Cluster.CleanupAfter = config.DefaultCleanupAfter
	dsns := map[string]string{}
	for _, s := range req.Nodes {
		dsns[s.Name] = s.DSN
	}
	var problems []string
	where := map[int]string{}
	for _, n := range live.Nodes {
		switch {
		case n.Err != nil:
			problems = append(problems, n.Err.Error())
			continue
		case n.Standby:
			problems = append(problems, fmt.Sprintf("node %s is a standby; import the primaries", n.Label()))
			continue
		}
		node := config.Node{Name: n.Name, DSN: dsn.WithoutPassword(dsns[n.Name])}
		if !req.LiteralDSN {
			node.DSNExpr = fmt.Sprintf("env(%q)", config.DSNVariable(n.Name))
		}
		t.Nodes = append(t.Nodes, node)
		for _, s := range n.Shards {
			if other, ok := where[s.Shard]; ok {
				problems = append(problems, fmt.Sprintf("shard %d (%s) exists on both %s and %s; a topology places it on one node: resolve that first", s.Shard, s.Schema, other, n.Name))
				continue
			}
			where[s.Shard] = n.Name
			t.Shards = append(t.Shards, config.ShardRange{From: s.Shard, To: s.Shard, Node: n.Name, Active: s.Active})
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("cannot import:\n  %s", strings.Join(problems, "\n  "))
	}
	sort.Slice(t.Shards, func(i, j int) bool { return t.Shards[i].From < t.Shards[j].From })
	return t, nil
}

// ImportNodes names the nodes to import: NAME=DSN entries (--node) as
// given, plain DSNs (--dsn, or else the DSN list variables) after their
// host.
func ImportNodes(nodes, dsns []string) ([]state.NodeSpec, error) {
	var specs []state.NodeSpec
	seen := map[string]bool{}
	add := func(name, d string) error {
		if !config.ValidNodeName(name) {
			return fmt.Errorf("node name %q: use letters, digits, _ and -, starting with a letter or _", name)
		}
		if seen[name] {
			return fmt.Errorf("node name %q given twice; name the nodes with --node NAME=DSN", name)
		}
		seen[name] = true
		specs = append(specs, state.NodeSpec{Name: name, DSN: d})
		return nil
	}
	for _, n := range nodes {
		name, d, ok := strings.Cut(n, "=")
		if !ok {
			return nil, fmt.Errorf("--node %q: write NAME=DSN", dsn.Redact(n))
		}
		if err := add(name, d); err != nil {
			return nil, err
		}
	}
	if len(nodes) == 0 && len(dsns) == 0 {
		dsns, _ = dsn.FromEnv()
	}
	for _, d := range dsns {
		if err := add(dsn.NodeName(d), d); err != nil {
			return nil, err
		}
	}
	if len(specs) == 0 {
		return nil, errors.New("no nodes given: pass --node NAME=DSN (repeatable) or --dsn DSN")
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	return specs, nil
}
