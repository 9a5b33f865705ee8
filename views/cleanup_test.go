package views

import (
	"strings"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/internal/golden"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// TestCleanupRender pins the listing's layout on a made-up cluster.
func TestCleanupRender(t *testing.T) {
	leftover := func(kind, name string, f func(*state.Leftover)) state.Leftover {
		l, ok := state.ParseLeftover(kind, name, sql.DefaultNaming)
		if !ok {
			t.Fatalf("%s not recognised", name)
		}
		if f != nil {
			f(&l)
		}
		return l
	}
	live := &state.Cluster{Nodes: []*state.NodeState{
		{Name: "db1:5432/app", Leftovers: []state.Leftover{
			leftover(state.LeftoverOldSchema, "sh0001old20261101000000", func(l *state.Leftover) { l.Bytes = 3 << 30 }),
			leftover(state.LeftoverOldSchema, "sh0002old20261124000000", func(l *state.Leftover) { l.Bytes = 12 << 20 }),
			leftover(state.LeftoverSlot, "pg_microsharding_move_sh0003_sub", func(l *state.Leftover) { l.RetainedBytes = 41 << 30 }),
			leftover(state.LeftoverPublication, "pg_microsharding_move_sh0003_pub", nil),
			leftover(state.LeftoverSlot, "pgms_move_sh0004", func(l *state.Leftover) {
				l.Active, l.WalsenderPID, l.WalsenderClient, l.RetainedBytes = true, 4242, "pg_recvlogical", 8<<20
			}),
		}},
		{Name: "db2:5432/app", Leftovers: []state.Leftover{
			leftover(state.LeftoverSubscription, "pgms_move_sh0007", func(l *state.Leftover) { l.Active, l.Slot = true, "pgms_move_sh0007" }),
		}, Shards: []state.ShardState{{Shard: 7, Schema: "sh0007", Active: true}}},
		{Name: "db3:5432/app"},
	}}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	c := NewCleanup(live, live.Triage(state.CleanupPolicy{Now: now, RetainOld: 168 * time.Hour}), 168*time.Hour)
	if c.ToDrop != 4 {
		t.Errorf("to drop %d, want 4", c.ToDrop)
	}
	var out strings.Builder
	if err := c.Listing(&out); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/cleanup_list.golden", out.String())
}
