package state

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/sql"
)

func leftover(t *testing.T, kind, name string) Leftover {
	t.Helper()
	l, ok := ParseLeftover(kind, name, sql.DefaultNaming)
	if !ok {
		t.Fatalf("%s %s not recognised", kind, name)
	}
	return l
}

func TestParseLeftover(t *testing.T) {
	tests := []struct {
		kind, name string
		ok         bool
		tool       string
	}{
		{LeftoverOldSchema, "sh0001old20260102030405", true, ToolPGMS},
		{LeftoverOldSchema, "sh0001old_1700000000", true, ToolPGMicrosharding},
		{LeftoverOldSchema, "sh0001old123", true, ToolPGMicrosharding},
		{LeftoverOldSchema, "sh0001new", false, ""}, // a new-schema
		{LeftoverNewSchema, "sh0001new", true, ToolPGMS},
		{LeftoverOldSchema, "sh001old20260102030405", false, ""}, // three digits: not this naming
		{LeftoverOldSchema, "sh0001older", false, ""},
		{LeftoverSlot, "pgms_move_sh0001", true, ToolPGMS},
		{LeftoverSlot, "pg_microsharding_move_sh0001_sub", true, ToolPGMicrosharding},
		{LeftoverSlot, "pg_microsharding_move_sh0001_pub", false, ""},
		{LeftoverPublication, "pg_microsharding_move_sh0001_pub", true, ToolPGMicrosharding},
		{LeftoverSubscription, "pg_microsharding_move_sh0001_sub", true, ToolPGMicrosharding},
		{LeftoverSubscription, "pgms_move_users", false, ""},
		{LeftoverSubscription, "my_sub", false, ""},
		{"table", "sh0001", false, ""},
	}
	for _, tt := range tests {
		l, ok := ParseLeftover(tt.kind, tt.name, sql.DefaultNaming)
		if ok != tt.ok || (ok && (l.Tool != tt.tool || l.Shard != 1 || l.Schema != "sh0001" || l.Kind != tt.kind)) {
			t.Errorf("ParseLeftover(%s, %s) = %+v, %v", tt.kind, tt.name, l, ok)
		}
	}
}

func TestTriage(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	with := func(l Leftover, f func(*Leftover)) Leftover { f(&l); return l }
	sub := func(name string, enabled bool, slot string) Leftover {
		return with(leftover(t, LeftoverSubscription, name), func(l *Leftover) { l.Active, l.Slot = enabled, slot })
	}
	slot := func(name string, pid int, client string) Leftover {
		return with(leftover(t, LeftoverSlot, name), func(l *Leftover) {
			l.Active, l.WalsenderPID, l.WalsenderClient, l.RetainedBytes = pid != 0, pid, client, 1<<30
		})
	}
	a := &NodeState{Name: "a", Shards: []ShardState{{Shard: 1, Schema: "sh0001", Active: true}},
		Leftovers: []Leftover{
			leftover(t, LeftoverOldSchema, "sh0001old20261124000000"), // 1.5 days
			leftover(t, LeftoverOldSchema, "sh0002old20261101000000"), // 24 days
			leftover(t, LeftoverOldSchema, "sh0003old"),
			with(leftover(t, LeftoverOldSchema, "sh0004old20261101000000"), func(l *Leftover) { l.Active = true }),
			leftover(t, LeftoverNewSchema, "sh0005new"),
			slot("pgms_move_sh0006", 0, ""),                                                    // orphaned, idle
			leftover(t, LeftoverPublication, "pgms_move_sh0006"),                               // its publication
			slot("pgms_move_sh0007", 4242, "pgms_move_sh0007"),                                 // streams to b, kept there
			leftover(t, LeftoverPublication, "pgms_move_sh0007"),                               // so kept too
			slot("pg_microsharding_move_sh0008_sub", 4243, "pg_microsharding_move_sh0008_sub"), // its subscription is dropped on b
			leftover(t, LeftoverPublication, "pg_microsharding_move_sh0008_pub"),
			slot("pgms_move_sh0009", 4244, "pgms_move_sh0009"),   // a subscription elsewhere
			slot("pgms_move_sh0010", 4245, "pgms"),               // a running pgms copying
			slot("pgms_move_sh0011", 4246, "pg_recvlogical"),     // someone else
			leftover(t, LeftoverPublication, "pgms_move_sh0012"), // publication alone, a subscription on b
		}}
	b := &NodeState{Name: "b",
		Shards: []ShardState{{Shard: 7, Schema: "sh0007"}, {Shard: 8, Schema: "sh0008"}, {Shard: 12, Schema: "sh0012"}, {Shard: 13, Schema: "sh0013", Active: true}},
		Leftovers: []Leftover{
			sub("pgms_move_sh0007", true, "pgms_move_sh0007"),                                  // running move
			sub("pg_microsharding_move_sh0008_sub", false, "pg_microsharding_move_sh0008_sub"), // disabled
			sub("pgms_move_sh0012", true, "pgms_move_sh0012"),                                  // running
			sub("pgms_move_sh0013", true, "pgms_move_sh0013"),                                  // finished move
			sub("pgms_move_sh0014", true, "pgms_move_sh0014"),                                  // copy gone
			sub("pgms_move_sh0015", true, ""),                                                  // detached
		},
		// The moves of sh0007 and sh0012 run: they hold their claims.
		Claims: []ClaimInfo{{Shard: 7, Schema: "sh0007", Token: "t", Live: true}, {Shard: 12, Schema: "sh0012", Token: "t", Live: true}, {Shard: 14, Schema: "sh0014", Token: "t"}}}
	c := &Cluster{Nodes: []*NodeState{a, b}}

	type want struct {
		drop, terminate bool
		reason          string
	}
	run := func(p CleanupPolicy, wants map[string]want) {
		t.Helper()
		seen := map[string]bool{}
		for _, v := range c.Triage(p) {
			key := v.Node + " " + v.Leftover.Name
			if v.Leftover.Kind == LeftoverPublication {
				key += " pub"
			}
			seen[key] = true
			w, ok := wants[key]
			if !ok {
				t.Errorf("unexpected verdict %s: %+v", key, v)
				continue
			}
			if v.Drop != w.drop || v.Terminate != w.terminate || !strings.Contains(v.Reason, w.reason) {
				t.Errorf("%s: drop=%v terminate=%v %q; want drop=%v terminate=%v reason containing %q",
					key, v.Drop, v.Terminate, v.Reason, w.drop, w.terminate, w.reason)
			}
		}
		for key := range wants {
			if !seen[key] {
				t.Errorf("no verdict for %s", key)
			}
		}
	}
	wants := map[string]want{
		"a sh0001old20261124000000":              {false, false, "renamed 2026-11-24 00:00 UTC; kept until 2026-12-01 00:00 UTC"},
		"a sh0002old20261101000000":              {true, false, "renamed 2026-11-01 00:00 UTC; its retention of 7d ended 2026-11-08 00:00 UTC"},
		"a sh0003old":                            {true, false, "carries no time"},
		"a sh0004old20261101000000":              {false, false, "active list"},
		"a sh0005new":                            {true, false, "never activated"},
		"a pgms_move_sh0006":                     {true, false, "no subscription uses it"},
		"a pgms_move_sh0006 pub":                 {true, false, "no slot or subscription"},
		"a pgms_move_sh0007":                     {false, false, "holds shard 7 on node b"},
		"a pgms_move_sh0007 pub":                 {false, false, "holds shard 7 on node b"},
		"a pg_microsharding_move_sh0008_sub":     {true, false, "once its subscription is dropped"},
		"a pg_microsharding_move_sh0008_pub pub": {true, false, "no slot or subscription"},
		"a pgms_move_sh0009":                     {false, false, "from a node not given"},
		"a pgms_move_sh0010":                     {false, false, "running pgms"},
		"a pgms_move_sh0011":                     {false, false, "pass --terminate-orphan-walsenders"},
		"a pgms_move_sh0012 pub":                 {false, false, "holds shard 12 on node b"},
		"b pgms_move_sh0007":                     {false, false, "holds shard 7 on node b"},
		"b pg_microsharding_move_sh0008_sub":     {true, false, "disabled"},
		"b pgms_move_sh0012":                     {false, false, "holds shard 12 on node b"},
		"b pgms_move_sh0013":                     {true, false, "its move has finished"},
		"b pgms_move_sh0014":                     {true, false, "does not exist on this node"},
		"b pgms_move_sh0015":                     {true, false, "detached"},
	}
	run(CleanupPolicy{Now: now, RetainOld: 7 * 24 * time.Hour}, wants)

	// With the flag, only the foreign walsender is ended; a running pgms
	// and subscriptions never are.
	wants["a pgms_move_sh0011"] = want{true, true, "is ended first"}
	run(CleanupPolicy{Now: now, RetainOld: 7 * 24 * time.Hour, TerminateOrphanWalsenders: true}, wants)

	// Retention zero: the recent renamed source goes too.
	wants["a sh0001old20261124000000"] = want{true, false, "renamed 2026-11-24 00:00 UTC; its retention of 0s ended"}
	wants["a sh0002old20261101000000"] = want{true, false, "renamed 2026-11-01 00:00 UTC"}
	run(CleanupPolicy{Now: now, TerminateOrphanWalsenders: true}, wants)

	// A node that cannot be read may hold the subscription of any slot.
	c.Nodes = append(c.Nodes, &NodeState{Name: "c", Err: errors.New("down")})
	wants["a pgms_move_sh0006"] = want{false, false, "node c could not be read"}
	wants["a pgms_move_sh0006 pub"] = want{false, false, "slot pgms_move_sh0006 of the same move is kept"}
	wants["a pg_microsharding_move_sh0008_sub"] = want{false, false, "node c could not be read"}
	wants["a pg_microsharding_move_sh0008_pub pub"] = want{false, false, "is kept"}
	wants["a pgms_move_sh0009"] = want{false, false, "node c could not be read"}
	wants["a pgms_move_sh0010"] = want{false, false, "node c could not be read"}
	wants["a pgms_move_sh0011"] = want{false, false, "node c could not be read"}
	run(CleanupPolicy{Now: now, TerminateOrphanWalsenders: true}, wants)

	// Nothing is dropped on a standby.
	a.Standby = true
	for _, v := range c.Triage(CleanupPolicy{Now: now}) {
		if v.Node == "a" && (v.Drop || v.Terminate) {
			t.Errorf("standby: %+v", v)
		}
	}
}

// TestTriageSparesWindowStreams: a rollback window's stream back looks
// like a finished move's replication objects (the shard active on b, a
// subscription on a), yet it is the window; cleanup keeps all three, open
// or ended, and leaves closing to apply and rollback --close.
func TestTriageSparesWindowStreams(t *testing.T) {
	for _, until := range []time.Time{time.Now().Add(time.Hour), time.Now().Add(-time.Hour)} {
		sub := leftover(t, LeftoverSubscription, "pgms_move_sh0003")
		sub.Active, sub.Slot = true, "pgms_move_sh0003_16384"
		slot := leftover(t, LeftoverSlot, "pgms_move_sh0003_16384")
		slot.Active, slot.WalsenderPID, slot.WalsenderClient = true, 4242, "pgms_move_sh0003"
		c := &Cluster{Nodes: []*NodeState{
			{Name: "a", Shards: []ShardState{{Shard: 3, Schema: "sh0003", Window: &names.Window{Schema: "sh0003", To: "b", Since: until.Add(-2 * time.Hour), Until: until}}},
				Leftovers: []Leftover{sub}},
			{Name: "b", Shards: []ShardState{{Shard: 3, Schema: "sh0003", Active: true}},
				Leftovers: []Leftover{slot, leftover(t, LeftoverPublication, "pgms_move_sh0003")}},
		}}
		verdicts := c.Triage(CleanupPolicy{Now: time.Now()})
		if len(verdicts) != 3 {
			t.Fatalf("%d verdicts, want 3: %+v", len(verdicts), verdicts)
		}
		for _, v := range verdicts {
			if v.Drop || !strings.Contains(v.Reason, "rollback window") {
				t.Errorf("window ending %v: %s %s on %s: drop=%v, %q", until, v.Leftover.Kind, v.Leftover.Name, v.Node, v.Drop, v.Reason)
			}
		}
	}
}

func TestTriageOrder(t *testing.T) {
	n := &NodeState{Name: "a", Leftovers: []Leftover{
		leftover(t, LeftoverOldSchema, "sh0001old"),
		leftover(t, LeftoverPublication, "pgms_move_sh0002"),
		leftover(t, LeftoverSlot, "pgms_move_sh0002"),
		leftover(t, LeftoverNewSchema, "sh0001new"),
		leftover(t, LeftoverSubscription, "pgms_move_sh0003"),
	}}
	var kinds []string
	for _, v := range (&Cluster{Nodes: []*NodeState{n}}).Triage(CleanupPolicy{}) {
		kinds = append(kinds, v.Leftover.Kind)
	}
	want := []string{LeftoverSubscription, LeftoverSlot, LeftoverPublication, LeftoverNewSchema, LeftoverOldSchema}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Errorf("order %v, want %v", kinds, want)
	}
}

func TestCheckActivation(t *testing.T) {
	c := &Cluster{Nodes: []*NodeState{
		{Name: "a", Addr: "h1:5432/app", Shards: []ShardState{{Shard: 1, Schema: "sh0001", Active: true}, {Shard: 2, Schema: "sh0002"}}},
		{Name: "b", Addr: "h2:5432/app", Shards: []ShardState{{Shard: 2, Schema: "sh0002"}, {Shard: 3, Schema: "sh0003", Active: true}, {Shard: 4, Schema: "sh0004", Copy: true, CopyFrom: "a"}},
			Claims: []ClaimInfo{{Shard: 5, Schema: "sh0005", Token: "other", Purpose: "move a → b (destination)", PID: 7, Host: "ci", Live: true},
				{Shard: 6, Schema: "sh0006", Token: "other", Live: false},
				{Shard: 7, Schema: "sh0007", Token: "mine", Live: true}}},
	}}
	tests := []struct {
		target  string
		source  string
		shards  []int
		schemas []string
		ownCopy bool
		err     string
	}{
		{"h2:5432/app", "", []int{2}, []string{"sh0002"}, false, ""},
		{"b", "", []int{2}, []string{"sh0002"}, false, ""},
		{"h1:5432/app", "", []int{1, 2}, []string{"sh0001", "sh0002"}, false, ""}, // active here already: fine
		{"h2:5432/app", "", []int{1, 2}, []string{"sh0001", "sh0002"}, false, "sh0001 is active on node a (h1:5432/app)"},
		{"h9:5432/app", "", []int{1, 3}, []string{"sh0001", "sh0003"}, false, "sh0001 is active on node a (h1:5432/app); sh0003 is active on node b (h2:5432/app)"},
		{"b", "a", []int{1}, []string{"sh0001"}, false, ""}, // a move from a: a deactivates it itself
		{"b", "", []int{4}, []string{"sh0004"}, false, "unfinished copy of a move from a"},
		{"b", "a", []int{4}, []string{"sh0004"}, true, ""},
		{"a", "", []int{5}, []string{"sh0005"}, false, "shard 5 is claimed on node b (h2:5432/app) by a running `pgms` (pid 7 on host ci"},
		{"a", "", []int{6}, []string{"sh0006"}, false, ""}, // a claim whose run is gone
		{"a", "", []int{7}, []string{"sh0007"}, false, ""}, // this run's own claim
	}
	for _, tt := range tests {
		err := c.CheckActivation(ActivationCheck{Target: tt.target, Source: tt.source, Shards: tt.shards, Schemas: tt.schemas, OwnCopy: tt.ownCopy, Token: "mine"})
		if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("CheckActivation(%s, %v) = %v, want %q", tt.target, tt.schemas, err, tt.err)
		}
	}
	c.Nodes = append(c.Nodes, &NodeState{Name: "c", Addr: "h3:5432/app", Err: errors.New("down")})
	if err := c.CheckActivation(ActivationCheck{Target: "h2:5432/app", Shards: []int{2}, Schemas: []string{"sh0002"}}); err == nil || !strings.Contains(err.Error(), "node c (h3:5432/app) could not be read") {
		t.Errorf("with an unreadable node: %v", err)
	}
}
