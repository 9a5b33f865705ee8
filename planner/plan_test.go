package planner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/golden"
	"github.com/pgms-dev/pgms/internal/jsonschema"
	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/state"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const threeNodes = `
node "a" { dsn = "postgres://app@db-a:5432/app" }
node "b" { dsn = "postgres://app@db-b:5432/app" }
node "c" { dsn = "postgres://app@db-c:5432/app" }
`

// topo loads a topology from HCL text as topology.pgms.hcl.
func topo(t *testing.T, src string) *config.Topology {
	t.Helper()
	top, diags := config.LoadSources(map[string][]byte{"topology.pgms.hcl": []byte(src)})
	if diags.HasErrors() {
		t.Fatalf("topology: %v", diags)
	}
	return top
}

// liveNode builds a node's live state; shard specs are "1-4" (active),
// "5-6 inactive", with sizes of 1 MiB per shard unless sized.
type liveNode struct {
	s *state.NodeState
}

func node(name string) *liveNode {
	return &liveNode{s: &state.NodeState{
		Name: name, Addr: "db-" + name + ":5432/app", WalLevel: "logical",
		MaxReplicationSlots: 10, MaxWalSenders: 10, MaxSlotWalKeepSize: -1,
		Library: struct {
			Installed bool
			Version   int
		}{true, 1},
	}}
}

func (n *liveNode) shards(from, to int, active bool) *liveNode {
	for i := from; i <= to; i++ {
		n.s.Shards = append(n.s.Shards, state.ShardState{Shard: i, Schema: fmt.Sprintf("sh%04d", i), Active: active, Tables: 2, Bytes: int64(i+1) << 20})
	}
	return n
}

// copies marks the node's shards from..to as unfinished copies of moves
// from the node named source.
func (n *liveNode) copies(from, to int, source string) *liveNode {
	for i := range n.s.Shards {
		if s := &n.s.Shards[i]; s.Shard >= from && s.Shard <= to {
			s.Copy, s.CopyFrom = true, source
		}
	}
	return n
}

// claim records a claim of a shard on the node; live says a session holds
// it.
func (n *liveNode) claim(shard int, purpose string, live bool) *liveNode {
	n.s.Claims = append(n.s.Claims, state.ClaimInfo{Shard: shard, Schema: fmt.Sprintf("sh%04d", shard), Token: "0123456789ab", Purpose: purpose,
		Host: "ci-7", PID: 4242, User: "deploy", Command: "apply --config topology", Since: time.Date(2026, 11, 25, 11, 58, 0, 0, time.UTC), Live: live})
	return n
}

func (n *liveNode) leftover(l state.Leftover) *liveNode {
	if l.Tool == "" {
		l.Tool = state.ToolPGMS
	}
	n.s.Leftovers = append(n.s.Leftovers, l)
	return n
}

func (n *liveNode) with(f func(s *state.NodeState)) *liveNode { f(n.s); return n }

func cluster(nodes ...*liveNode) *state.Cluster {
	c := &state.Cluster{}
	for _, n := range nodes {
		c.Nodes = append(c.Nodes, n.s)
	}
	return c
}

// windowCluster is shard 7 moved from a to c at since with a one-hour
// rollback window; streaming says whether a already subscribes.
func windowCluster(since time.Time, streaming bool) *state.Cluster {
	a := node("a").shards(7, 7, false).with(func(s *state.NodeState) {
		s.Shards[0].Window = &names.Window{Schema: "sh0007", To: "c", Since: since, Until: since.Add(time.Hour)}
	})
	if streaming {
		a.leftover(state.Leftover{Kind: state.LeftoverSubscription, Name: "pgms_move_sh0007", Schema: "sh0007", Shard: 7, Active: true, Slot: "pgms_move_sh0007_16384"})
	}
	return cluster(a, node("b"),
		node("c").shards(7, 7, true).
			leftover(state.Leftover{Kind: state.LeftoverSlot, Name: "pgms_move_sh0007_16384", Schema: "sh0007", Shard: 7, Active: streaming, RetainedBytes: 3 << 20}).
			leftover(state.Leftover{Kind: state.LeftoverPublication, Name: "pgms_move_sh0007", Schema: "sh0007", Shard: 7}))
}

type scenario struct {
	name string
	hcl  string
	live *state.Cluster
	// check inspects the plan beyond the golden files.
	check func(t *testing.T, p *Plan)
}

func sameServer(s *state.NodeState) {
	s.Identity = state.Identity{SystemIdentifier: "7713636149067055160", Database: "app", Started: time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)}
}

func scenarios() []scenario {
	noLib := func(s *state.NodeState) { s.Library.Installed = false; s.Library.Version = 0 }
	return []scenario{
		{
			name: "empty_cluster",
			hcl:  threeNodes,
			live: cluster(node("a").with(noLib), node("b").with(noLib), node("c").with(noLib)),
			check: func(t *testing.T, p *Plan) {
				if p.Summary.Install != 3 || len(p.Steps) != 3 {
					t.Errorf("want 3 installs, got %+v", p.Summary)
				}
			},
		},
		{
			name: "no_changes",
			hcl:  threeNodes + `shards "0-4" { node = "a" }` + "\n" + `shards "5-9" { node = "b" }`,
			live: cluster(node("a").shards(0, 4, true), node("b").shards(5, 9, true), node("c")),
			check: func(t *testing.T, p *Plan) {
				if p.HasChanges() {
					t.Errorf("want no changes, got %d steps", len(p.Steps))
				}
			},
		},
		{
			name: "first_allocation",
			hcl: threeNodes + `
shards "0"     { node = "a" }
shards "1-4"   { node = "a" }
shards "5-8"   { node = "b" }
shards "9-12"  { node = "c" }
shards "13-14" {
  node   = "c"
  active = false
}`,
			live: cluster(node("a"), node("b"), node("c").with(noLib)),
			check: func(t *testing.T, p *Plan) {
				if p.Summary.Allocate != 15 || p.Summary.Install != 1 {
					t.Errorf("summary %+v", p.Summary)
				}
				if p.Steps[0].Kind != StepInstall {
					t.Errorf("install must come first: %v", p.Steps[0].Kind)
				}
			},
		},
		{
			name: "moves",
			hcl:  threeNodes + `shards "0-3" { node = "a" }` + "\n" + `shards "4-5" { node = "c" }` + "\n" + `shards "6-9" { node = "b" }`,
			live: cluster(node("a").shards(0, 5, true), node("b").shards(6, 9, true), node("c")),
			check: func(t *testing.T, p *Plan) {
				if p.Summary.Move != 2 || p.Summary.MoveBytes != (5+6)<<20 {
					t.Errorf("summary %+v", p.Summary)
				}
			},
		},
		{
			name: "moves_with_rollback_window",
			hcl:  "cluster { rollback_window = \"2h\" }\n" + threeNodes + `shards "0-3" { node = "a" }` + "\n" + `shards "4-5" { node = "c" }` + "\n" + `shards "6-9" { node = "b" }`,
			live: cluster(node("a").shards(0, 5, true), node("b").shards(6, 9, true), node("c")),
			check: func(t *testing.T, p *Plan) {
				for _, s := range p.Steps {
					if s.Kind == StepMove && s.RollbackWindow != "2h" {
						t.Errorf("move %+v: rollback window %q, want 2h", s.Shards, s.RollbackWindow)
					}
				}
			},
		},
		{
			// Shard 7 moved a → b, then b → c, whose cutover committed
			// before the run was killed, all within one second: a and b
			// both hold sh0007old<same second>. The copy's mark names b,
			// the source of the committed move (and of its sequences).
			name: "committed_move_renamed_twice_in_a_second",
			hcl:  threeNodes + `shards "7" { node = "c" }`,
			live: cluster(
				node("a").leftover(state.Leftover{Kind: state.LeftoverOldSchema, Name: "sh0007old20261125115900", Schema: "sh0007", Shard: 7, Renamed: time.Date(2026, 11, 25, 11, 59, 0, 0, time.UTC), Bytes: 1 << 20}),
				node("b").leftover(state.Leftover{Kind: state.LeftoverOldSchema, Name: "sh0007old20261125115900", Schema: "sh0007", Shard: 7, Renamed: time.Date(2026, 11, 25, 11, 59, 0, 0, time.UTC), Bytes: 1 << 20}).
					leftover(state.Leftover{Kind: state.LeftoverPublication, Name: "pgms_move_sh0007", Schema: "sh0007", Shard: 7}),
				node("c").shards(7, 7, false).copies(7, 7, "b"),
			),
			check: func(t *testing.T, p *Plan) {
				if len(p.Steps) != 1 || p.Steps[0].Kind != StepMove || !p.Steps[0].Resume || p.Steps[0].From != "b" {
					t.Errorf("steps %+v", p.Steps)
				}
			},
		},
		{
			name: "drain",
			hcl: `
node "a" { dsn = "postgres://app@db-a:5432/app" }
node "b" { dsn = "postgres://app@db-b:5432/app" }
node "c" {
  dsn   = "postgres://app@db-c:5432/app"
  drain = true
}
shards "0-3" { node = "a" }
shards "4-7" { node = "b" }
`,
			live: cluster(node("a").shards(0, 1, true), node("b").shards(4, 7, true), node("c").shards(2, 3, true)),
			check: func(t *testing.T, p *Plan) {
				if len(p.Steps) != 2 || p.Steps[0].From != "c" {
					t.Errorf("moves off the drained node: %+v", p.Steps)
				}
			},
		},
		{
			name: "drain_first",
			hcl: `
node "a" { dsn = "postgres://app@db-a:5432/app" }
node "b" {
  dsn   = "postgres://app@db-b:5432/app"
  drain = true
}
shards "0-3" { node = "a" }
shards "4-7" { node = "a" }
`,
			live: cluster(node("a").shards(0, 1, true), node("b").shards(2, 3, true).shards(4, 7, false)),
			check: func(t *testing.T, p *Plan) {
				for _, s := range p.Steps[:6] {
					if s.Kind != StepMove || s.From != "b" {
						t.Errorf("step %+v", s)
					}
				}
				if p.Steps[2].Shards.From != 4 {
					t.Errorf("moves in shard order")
				}
			},
		},
		{
			name: "activation_flips",
			hcl: threeNodes + `
shards "1-4" { node = "a" }
shards "5-6" {
  node   = "b"
  active = false
}`,
			live: cluster(node("a").shards(1, 2, false).shards(3, 4, true), node("b").shards(5, 6, true), node("c")),
			check: func(t *testing.T, p *Plan) {
				if p.Summary.Activate != 2 || p.Summary.Deactivate != 2 {
					t.Errorf("summary %+v", p.Summary)
				}
			},
		},
		{
			name: "cleanup_leftovers",
			hcl:  threeNodes + `shards "1-2" { node = "a" }`,
			live: cluster(
				node("a").shards(1, 2, true).
					leftover(state.Leftover{Kind: state.LeftoverSubscription, Name: "pgms_move_sh0007", Schema: "sh0007", Shard: 7}),
				node("b").
					leftover(state.Leftover{Kind: state.LeftoverOldSchema, Name: "sh0001old20261110101010", Schema: "sh0001", Shard: 1, Renamed: time.Date(2026, 11, 10, 10, 10, 10, 0, time.UTC), Bytes: 48 << 20}).
					leftover(state.Leftover{Kind: state.LeftoverOldSchema, Name: "sh0002old20261124080000", Schema: "sh0002", Shard: 2, Renamed: time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC), Bytes: 3 << 20}).
					leftover(state.Leftover{Kind: state.LeftoverSlot, Name: "pgms_move_sh0007", Schema: "sh0007", Shard: 7, RetainedBytes: 1200 << 20}).
					leftover(state.Leftover{Kind: state.LeftoverPublication, Name: "pgms_move_sh0007", Schema: "sh0007", Shard: 7}),
				node("c").
					leftover(state.Leftover{Kind: state.LeftoverSlot, Name: "pg_microsharding_move_sh0009_sub", Schema: "sh0009", Shard: 9, Tool: state.ToolPGMicrosharding, RetainedBytes: 5 << 30}).
					leftover(state.Leftover{Kind: state.LeftoverNewSchema, Name: "sh0011new", Schema: "sh0011", Shard: 11, Bytes: 1 << 20}).
					leftover(state.Leftover{Kind: state.LeftoverSlot, Name: "pgms_move_sh0012", Schema: "sh0012", Shard: 12, Active: true, WalsenderPID: 4242, WalsenderClient: "pgms_move_sh0012"}),
			),
			check: func(t *testing.T, p *Plan) {
				if p.Summary.Cleanup != 6 || len(p.Kept) != 2 {
					t.Errorf("cleanup %+v, kept %d, warnings %d", p.Summary, len(p.Kept), len(p.Warnings))
				}
			},
		},
		{
			name: "rollback_window_open",
			hcl:  threeNodes + `shards "7" { node = "c" }`,
			live: windowCluster(time.Date(2026, 11, 25, 11, 30, 0, 0, time.UTC), true),
			check: func(t *testing.T, p *Plan) {
				if p.HasChanges() || len(p.Windows) != 1 || p.Windows[0].Node != "a" || p.Windows[0].To != "c" || p.Windows[0].RetainedBytes != 3<<20 || len(p.Kept) != 0 {
					t.Errorf("steps %+v, windows %+v, kept %+v", p.Steps, p.Windows, p.Kept)
				}
			},
		},
		{
			name: "rollback_window_expired",
			hcl:  threeNodes + `shards "7" { node = "c" }`,
			live: windowCluster(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), true),
			check: func(t *testing.T, p *Plan) {
				if len(p.Steps) != 1 || p.Steps[0].ObjectKind != "window" || p.Steps[0].Node != "a" || p.Steps[0].From != "c" || !p.Windows[0].Expired {
					t.Errorf("steps %+v, windows %+v", p.Steps, p.Windows)
				}
			},
		},
		{
			name: "error_move_during_rollback_window",
			hcl:  threeNodes + `shards "7" { node = "b" }`,
			live: windowCluster(time.Date(2026, 11, 25, 11, 30, 0, 0, time.UTC), true),
			check: func(t *testing.T, p *Plan) {
				if !p.HasErrors() || !strings.Contains(p.Errors[0].Summary, "rollback window") {
					t.Errorf("errors %+v", p.Errors)
				}
			},
		},
		{
			name: "rollback_window_stream_missing",
			hcl:  threeNodes + `shards "7" { node = "c" }`,
			live: windowCluster(time.Date(2026, 11, 25, 11, 30, 0, 0, time.UTC), false),
			check: func(t *testing.T, p *Plan) {
				if len(p.Steps) != 1 || p.Steps[0].Kind != StepMove || !p.Steps[0].Resume || p.Steps[0].From != "a" {
					t.Errorf("steps %+v", p.Steps)
				}
			},
		},
		{
			name: "unmanaged",
			hcl:  threeNodes + `shards "1-2" { node = "a" }`,
			live: cluster(node("a").shards(1, 2, true), node("b").shards(300, 310, true).shards(311, 311, false), node("c")),
			check: func(t *testing.T, p *Plan) {
				if p.HasChanges() || len(p.Unmanaged) != 2 {
					t.Errorf("steps %d, unmanaged %+v", len(p.Steps), p.Unmanaged)
				}
			},
		},
		{
			name: "removed",
			hcl:  threeNodes + `shards "1-2" { node = "a" }` + "\nremoved {\n  shards = \"300-302\"\n}\n",
			live: cluster(node("a").shards(1, 2, true), node("b").shards(300, 302, true), node("c")),
			check: func(t *testing.T, p *Plan) {
				if p.Summary.Drop != 3 || p.Steps[0].Code != CodeDropShard {
					t.Errorf("drop: %+v", p.Steps)
				}
			},
		},
		{
			name: "resume_interrupted_move",
			hcl:  threeNodes + `shards "7" { node = "c" }`,
			live: cluster(
				node("a").
					leftover(state.Leftover{Kind: state.LeftoverOldSchema, Name: "sh0007old20261125115900", Schema: "sh0007", Shard: 7, Renamed: time.Date(2026, 11, 25, 11, 59, 0, 0, time.UTC)}).
					leftover(state.Leftover{Kind: state.LeftoverSlot, Name: "pgms_move_sh0007", Schema: "sh0007", Shard: 7}).
					leftover(state.Leftover{Kind: state.LeftoverPublication, Name: "pgms_move_sh0007", Schema: "sh0007", Shard: 7}),
				node("b"),
				node("c").shards(7, 7, false).copies(7, 7, "a").
					leftover(state.Leftover{Kind: state.LeftoverSubscription, Name: "pgms_move_sh0007", Schema: "sh0007", Shard: 7, Slot: "pgms_move_sh0007"}),
			),
			check: func(t *testing.T, p *Plan) {
				if len(p.Steps) != 1 || !p.Steps[0].Resume || p.Steps[0].From != "a" {
					t.Errorf("steps %+v", p.Steps)
				}
			},
		},
		{
			name: "abort_interrupted_move",
			hcl:  threeNodes + `shards "7" { node = "a" }`,
			live: cluster(
				node("a").shards(7, 7, true).
					leftover(state.Leftover{Kind: state.LeftoverSlot, Name: "pgms_move_sh0007", Schema: "sh0007", Shard: 7, RetainedBytes: 16 << 20}).
					leftover(state.Leftover{Kind: state.LeftoverPublication, Name: "pgms_move_sh0007", Schema: "sh0007", Shard: 7}),
				node("b"),
				node("c").shards(7, 7, false).copies(7, 7, "a").
					leftover(state.Leftover{Kind: state.LeftoverSubscription, Name: "pgms_move_sh0007", Schema: "sh0007", Shard: 7, Slot: "pgms_move_sh0007"}),
			),
			check: func(t *testing.T, p *Plan) {
				if p.Summary.Cleanup != 4 || p.Summary.Move != 0 {
					t.Errorf("summary %+v", p.Summary)
				}
			},
		},
		{
			name: "upgrade_pg_microsharding",
			hcl:  threeNodes + `shards "1-2" { node = "a" }`,
			live: cluster(node("a").shards(1, 2, true).with(func(s *state.NodeState) { s.Library.Version = 0 }), node("b"), node("c")),
		},
		{
			name: "error_active_twice",
			hcl:  threeNodes + `shards "1-2" { node = "a" }`,
			live: cluster(node("a").shards(1, 2, true), node("b").shards(2, 2, true), node("c")),
			check: func(t *testing.T, p *Plan) {
				if !p.HasErrors() || len(p.Steps) != 0 {
					t.Errorf("want an error and no steps")
				}
			},
		},
		{
			name: "error_unreachable_and_standby",
			hcl:  threeNodes + `shards "1-2" { node = "a" }`,
			live: cluster(node("a").shards(1, 2, true),
				node("b").with(func(s *state.NodeState) {
					s.Err = errors.New("node b (db-b:5432/app): cannot connect: connection refused")
				}),
				node("c").with(func(s *state.NodeState) { s.Standby = true })),
			check: func(t *testing.T, p *Plan) {
				if len(p.Errors) != 2 {
					t.Errorf("errors %+v", p.Errors)
				}
			},
		},
		{
			name: "error_move_preflight",
			hcl:  threeNodes + `shards "1-3" { node = "b" }`,
			live: cluster(node("a").shards(1, 3, true).with(func(s *state.NodeState) {
				s.WalLevel = "replica"
				s.UsedReplicationSlots = 10
				s.Shards[1].TablesWithoutKey = []string{`sh0002."audit log"`, "sh0002.events"}
			}), node("b"), node("c")),
			check: func(t *testing.T, p *Plan) {
				if len(p.Errors) != 3 {
					t.Errorf("errors %+v", p.Errors)
				}
			},
		},
		{
			name: "error_copies_on_two_nodes",
			hcl:  threeNodes + `shards "4" { node = "a" }`,
			live: cluster(node("a").shards(4, 4, true), node("b").shards(4, 4, false), node("c")),
		},
		{
			name: "resume_copy_killed_mid_copy",
			hcl:  threeNodes + `shards "12" { node = "c" }`,
			live: cluster(
				node("a").shards(12, 12, true).
					leftover(state.Leftover{Kind: state.LeftoverSlot, Name: "pgms_move_sh0012", Schema: "sh0012", Shard: 12, RetainedBytes: 3 << 20}).
					leftover(state.Leftover{Kind: state.LeftoverPublication, Name: "pgms_move_sh0012", Schema: "sh0012", Shard: 12}),
				node("b"),
				node("c").shards(12, 12, false).copies(12, 12, "a"),
			),
			check: func(t *testing.T, p *Plan) {
				if len(p.Steps) != 1 || !p.Steps[0].Resume || p.Steps[0].From != "a" || p.Steps[0].To != "c" {
					t.Errorf("steps %+v", p.Steps)
				}
			},
		},
		{
			name: "move_in_progress",
			hcl:  threeNodes + `shards "4" { node = "a" }` + "\n" + `shards "5" { node = "b" }`,
			live: cluster(
				node("a").shards(4, 4, true).claim(4, "move a → c (source)", true).
					leftover(state.Leftover{Kind: state.LeftoverSlot, Name: "pgms_move_sh0004", Schema: "sh0004", Shard: 4, Active: true, WalsenderClient: "pgms/0123456789ab"}).
					leftover(state.Leftover{Kind: state.LeftoverPublication, Name: "pgms_move_sh0004", Schema: "sh0004", Shard: 4}),
				node("b").shards(5, 5, true).claim(5, "move b → c (source)", false),
				node("c").shards(4, 4, false).copies(4, 4, "a").claim(4, "move a → c (destination)", true),
			),
			check: func(t *testing.T, p *Plan) {
				if p.HasErrors() || len(p.Steps) != 0 || len(p.InProgress) != 2 || !p.Pending() {
					t.Errorf("errors %+v, steps %+v, in progress %+v", p.Errors, p.Steps, p.InProgress)
				}
			},
		},
		{
			name: "reference_half_done_move",
			hcl:  threeNodes + `shards "1" { node = "b" }` + "\n" + `shards "2" { node = "a" }`,
			live: cluster(
				node("a").shards(1, 2, true).
					leftover(state.Leftover{Kind: state.LeftoverPublication, Name: "pg_microsharding_move_sh0001_pub", Schema: "sh0001", Shard: 1, Tool: state.ToolPGMicrosharding}).
					leftover(state.Leftover{Kind: state.LeftoverSlot, Name: "pg_microsharding_move_sh0001_sub", Schema: "sh0001", Shard: 1, Tool: state.ToolPGMicrosharding, Active: true, WalsenderClient: "pg_microsharding_move_sh0001_sub"}).
					leftover(state.Leftover{Kind: state.LeftoverPublication, Name: "pg_microsharding_move_sh0002_pub", Schema: "sh0002", Shard: 2, Tool: state.ToolPGMicrosharding}).
					leftover(state.Leftover{Kind: state.LeftoverSlot, Name: "pg_microsharding_move_sh0002_sub", Schema: "sh0002", Shard: 2, Tool: state.ToolPGMicrosharding, Active: true, WalsenderClient: "pg_microsharding_move_sh0002_sub"}),
				node("b").shards(1, 2, false).
					leftover(state.Leftover{Kind: state.LeftoverSubscription, Name: "pg_microsharding_move_sh0001_sub", Schema: "sh0001", Shard: 1, Tool: state.ToolPGMicrosharding, Active: true, Slot: "pg_microsharding_move_sh0001_sub"}).
					leftover(state.Leftover{Kind: state.LeftoverSubscription, Name: "pg_microsharding_move_sh0002_sub", Schema: "sh0002", Shard: 2, Tool: state.ToolPGMicrosharding, Active: true, Slot: "pg_microsharding_move_sh0002_sub"}),
				node("c"),
			),
			check: func(t *testing.T, p *Plan) {
				if p.HasErrors() || p.Summary.Move != 1 || !p.Steps[1].Resume || p.Steps[0].Object != "sh0002" {
					t.Errorf("errors %+v, steps %+v", p.Errors, p.Steps)
				}
			},
		},
		{
			name: "drain_pending",
			hcl: `
node "a" { dsn = "postgres://app@db-a:5432/app" }
node "b" {
  dsn   = "postgres://app@db-b:5432/app"
  drain = true
}
shards "1-4" { node = "b" }
`,
			live: cluster(node("a"), node("b").shards(1, 4, true)),
			check: func(t *testing.T, p *Plan) {
				if len(p.Drains) != 1 || p.Drains[0].Shards != 4 || p.HasChanges() || !p.Pending() {
					t.Errorf("drains %+v", p.Drains)
				}
			},
		},
		{
			name: "registered_node_left_the_files",
			hcl: `
node "a" { dsn = "postgres://app@db-a:5432/app" }
node "c" { dsn = "postgres://app@db-c:5432/app" }
shards "1-2" { node = "a" }
shards "5-8" { node = "c" }
`,
			live: cluster(node("a").shards(1, 2, true), node("b").shards(5, 8, true).with(func(s *state.NodeState) { s.Registered = true }), node("c")),
			check: func(t *testing.T, p *Plan) {
				if p.Summary.Move != 4 || p.Summary.Allocate != 0 || len(p.Warnings) != 1 {
					t.Errorf("summary %+v, warnings %+v", p.Summary, p.Warnings)
				}
			},
		},
		{
			name: "error_registered_node_unreachable",
			hcl: `
node "a" { dsn = "postgres://app@db-a:5432/app" }
node "c" { dsn = "postgres://app@db-c:5432/app" }
shards "5-8" { node = "c" }
`,
			live: cluster(node("a"), node("b").with(func(s *state.NodeState) {
				s.Registered = true
				s.Err = errors.New("node b (db-b:5432/app): cannot connect: connection refused")
			}), node("c")),
			check: func(t *testing.T, p *Plan) {
				if len(p.Errors) != 1 || strings.Contains(p.Errors[0].Detail, "remove the node from the files") {
					t.Errorf("errors %+v", p.Errors)
				}
			},
		},
		{
			name: "retire_node",
			hcl: `
node "a" { dsn = "postgres://app@db-a:5432/app" }
removed { node = "b" }
shards "1-3" { node = "a" }
`,
			live: cluster(node("a").shards(1, 1, true), node("b").shards(2, 3, true).with(func(s *state.NodeState) {
				s.Registered = true
				s.Identity.ID = "00000000-0000-0000-0000-00000000000b"
			})),
			check: func(t *testing.T, p *Plan) {
				last := p.Steps[len(p.Steps)-1]
				if p.Summary.Move != 2 || last.Kind != StepRetire || last.NodeID == "" {
					t.Errorf("steps %+v", p.Steps)
				}
			},
		},
		{
			name: "error_retired_node_keeps_shards",
			hcl: `
node "a" { dsn = "postgres://app@db-a:5432/app" }
removed { node = "b" }
shards "1" { node = "a" }
`,
			live: cluster(node("a").shards(1, 1, true), node("b").shards(9, 9, true).with(func(s *state.NodeState) {
				s.Registered = true
				s.Identity.ID = "00000000-0000-0000-0000-00000000000b"
			})),
			check: func(t *testing.T, p *Plan) {
				if len(p.Errors) != 1 {
					t.Errorf("errors %+v", p.Errors)
				}
			},
		},
		{
			name: "error_same_server_twice",
			hcl:  threeNodes,
			live: cluster(node("a").with(sameServer), node("b").with(sameServer), node("c")),
		},
		{
			name: "error_newer_library",
			hcl:  threeNodes,
			live: cluster(node("a").with(func(s *state.NodeState) { s.Library.Version = 7 }), node("b"), node("c")),
		},
		{
			name: "warning_slot_keep_size",
			hcl:  threeNodes + `shards "1" { node = "b" }`,
			live: cluster(node("a").shards(1, 1, true).with(func(s *state.NodeState) { s.MaxSlotWalKeepSize = 1 << 20 }), node("b"), node("c")),
			check: func(t *testing.T, p *Plan) {
				if len(p.Warnings) != 1 || p.Summary.Move != 1 {
					t.Errorf("warnings %+v", p.Warnings)
				}
			},
		},
	}
}

// coloured are the scenarios whose text plan is also checked in colour:
// every symbol, a risk code, an error.
var coloured = map[string]bool{"moves": true, "cleanup_leftovers": true, "error_active_twice": true, "first_allocation": true}

// ansi matches the escape sequences of the colour plan.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// planSchema loads the schema files of docs/ once.
var planSchema = func() func(t *testing.T) *jsonschema.Set {
	var set *jsonschema.Set
	return func(t *testing.T) *jsonschema.Set {
		t.Helper()
		if set == nil {
			var err error
			if set, err = jsonschema.Load("../docs"); err != nil {
				t.Fatal(err)
			}
		}
		return set
	}
}()

func render(t *testing.T, r Renderer, p *Plan) string {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Render(&buf, p); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestScenarios(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			in := Input{Desired: topo(t, sc.hcl), Live: sc.live, Now: now, LibraryVersion: 1}
			p := Compute(in)
			if sc.check != nil {
				sc.check(t, p)
			}
			for _, f := range []struct {
				ext string
				r   Renderer
			}{{"txt", Text{}}, {"md", Markdown{}}, {"json", JSON{}}} {
				var buf bytes.Buffer
				if err := f.r.Render(&buf, p); err != nil {
					t.Fatal(err)
				}
				golden.Check(t, filepath.Join("testdata", "plan", sc.name+"."+f.ext), buf.String())
			}
			if coloured[sc.name] {
				var buf bytes.Buffer
				if err := (Text{Color: true}).Render(&buf, p); err != nil {
					t.Fatal(err)
				}
				golden.Check(t, filepath.Join("testdata", "plan", sc.name+".color.txt"), buf.String())
				if plain := ansi.ReplaceAllString(buf.String(), ""); plain != render(t, Text{}, p) {
					t.Errorf("without its escapes the colour plan differs from the text plan:\n%s", plain)
				}
			}
			// A minute later, the same comment: no time in it is relative.
			later := in
			later.Now = now.Add(time.Minute)
			if a, b := render(t, Markdown{}, p), render(t, Markdown{}, Compute(later)); a != b {
				t.Errorf("the comment changed within a minute:\n%s\n---\n%s", a, b)
			}
			// Same input, byte-identical plan.
			var a, b bytes.Buffer
			JSON{}.Render(&a, p)
			JSON{}.Render(&b, Compute(in))
			if a.String() != b.String() {
				t.Error("two plans of the same input differ")
			}
			// The document is the one docs/plan.schema.json describes.
			if err := planSchema(t).Validate("plan.schema.json", a.Bytes()); err != nil {
				t.Error(err)
			}
			// JSON lists the same steps as the text.
			var decoded Plan
			if err := json.Unmarshal(a.Bytes(), &decoded); err != nil {
				t.Fatal(err)
			}
			if len(decoded.Steps) != len(p.Steps) {
				t.Errorf("json has %d steps, plan %d", len(decoded.Steps), len(p.Steps))
			}
		})
	}
}

func TestMarkdownStaysWithinCommentLimit(t *testing.T) {
	hcl := threeNodes + `shards "0-9999" { node = "b" }`
	live := cluster(node("a").shards(0, 9999, true), node("b"), node("c"))
	p := Compute(Input{Desired: topo(t, hcl), Live: live, Now: now, LibraryVersion: 1})
	var buf bytes.Buffer
	if err := (Markdown{}).Render(&buf, p); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if len(out) > MarkdownLimit {
		t.Errorf("markdown is %d characters", len(out))
	}
	_, out, _ = strings.Cut(out, " -->\n")
	if !strings.HasPrefix(out, "### pgms plan\n\n**Plan: 10000 to move") || !strings.Contains(out, "truncated") || !strings.HasSuffix(out, "</details>\n") {
		t.Errorf("truncated markdown malformed: head %q tail %q", out[:80], out[len(out)-200:])
	}
}
