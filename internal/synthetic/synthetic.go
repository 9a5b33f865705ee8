// Package synthetic builds large made-up clusters, topology and live state
// together, for benchmarks of the planner.
package synthetic

import (
	"fmt"
	"strings"
	"time"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/state"
)

// BlockSize is the number of shards in each shards block.
const BlockSize = 200

// Cluster returns the topology files text for shards on nodes (BlockSize
// shards a block, blocks dealt round-robin) and a live state in which every
// tenth block sits on the next node over, so that a tenth of the shards
// must move, with an old renamed source on every fifth node.
func Cluster(shards, nodes int) (hcl string, live *state.Cluster) {
	var src strings.Builder
	for i := 0; i < nodes; i++ {
		fmt.Fprintf(&src, "node \"n%02d\" { dsn = \"postgres://app@db-%02d:5432/app\" }\n", i, i)
	}
	live = &state.Cluster{}
	for i := 0; i < nodes; i++ {
		n := &state.NodeState{
			Name: fmt.Sprintf("n%02d", i), Addr: fmt.Sprintf("db-%02d:5432/app", i), WalLevel: "logical",
			MaxReplicationSlots: 20, MaxWalSenders: 20, MaxSlotWalKeepSize: -1,
		}
		n.Library.Installed, n.Library.Version = true, 1
		live.Nodes = append(live.Nodes, n)
	}
	for from, b := 0, 0; from < shards; from, b = from+BlockSize, b+1 {
		to := min(from+BlockSize, shards) - 1
		desired := b % nodes
		fmt.Fprintf(&src, "shards \"%d-%d\" { node = \"n%02d\" }\n", from, to, desired)
		at := desired
		if b%10 == 9 {
			at = (desired + 1) % nodes
		}
		n := live.Nodes[at]
		for s := from; s <= to; s++ {
			n.Shards = append(n.Shards, state.ShardState{Shard: s, Schema: fmt.Sprintf("sh%04d", s), Active: true, Tables: 10, Bytes: int64(s%97+1) << 20})
		}
	}
	for i, n := range live.Nodes {
		if i%5 == 0 {
			n.Leftovers = append(n.Leftovers, state.Leftover{Kind: state.LeftoverOldSchema, Name: fmt.Sprintf("sh%04dold20261101000000", i),
				Schema: fmt.Sprintf("sh%04d", i), Shard: i, Renamed: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Tool: state.ToolPGMS})
		}
	}
	return src.String(), live
}

// Topology loads the text Cluster returns.
func Topology(hcl string) (*config.Topology, error) {
	top, diags := config.LoadSources(map[string][]byte{"topology.pgms.hcl": []byte(hcl)})
	if diags.HasErrors() {
		return nil, diags
	}
	return top, nil
}
