package state

import (
	"context"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/sql"
)

func refresh(t *testing.T, nodes []NodeSpec, opts RefreshOptions) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Refresh(ctx, nodes, opts)
}

func install(t *testing.T, dsn string) {
	t.Helper()
	conn := pgtest.Connect(t, dsn)
	if _, err := sql.Install(context.Background(), conn, sql.Options{}); err != nil {
		t.Fatalf("install: %v", err)
	}
}

// shardSummary is the part of a ShardState a test states compactly.
type shardSummary struct {
	Schema     string
	Active     bool
	Tables     int
	WithoutKey string
}

func summarize(shards []ShardState) []shardSummary {
	out := []shardSummary{}
	for _, s := range shards {
		out = append(out, shardSummary{s.Schema, s.Active, s.Tables, strings.Join(s.TablesWithoutKey, ",")})
	}
	return out
}

func TestRefreshShardsAndLibraries(t *testing.T) {
	dbs := pgtest.Databases(t, 3)
	// a: the pgms library, shards 1-3 of which 1-2 are active.
	install(t, dbs[0].DSN)
	a := pgtest.Connect(t, dbs[0].DSN)
	pgtest.Exec(t, a, `
		SELECT microsharding.microsharding_ensure_exist(1, 3);
		SELECT microsharding.microsharding_ensure_active(1, 2);
		CREATE TABLE sh0001.users (id bigint PRIMARY KEY, name text);
		INSERT INTO sh0001.users SELECT g, 'user ' || g FROM generate_series(1, 1000) g;
		CREATE TABLE sh0002.log (at timestamptz, line text);
		CREATE TABLE sh0002.full_ident (x int);
		ALTER TABLE sh0002.full_ident REPLICA IDENTITY FULL;
		CREATE TABLE sh0002."Odd ""name""" (x int);
		CREATE TABLE sh0003.by_index (x int NOT NULL);
		CREATE UNIQUE INDEX ON sh0003.by_index (x);
		ALTER TABLE sh0003.by_index REPLICA IDENTITY USING INDEX by_index_x_idx;
		CREATE TABLE sh0003.nothing (id int PRIMARY KEY);
		ALTER TABLE sh0003.nothing REPLICA IDENTITY NOTHING;
		CREATE SCHEMA sh12;          -- too few digits: not a shard
		CREATE SCHEMA sh00001;       -- too many
		CREATE SCHEMA shard_data;    -- the prefix, but no number
	`)
	// b: pg-microsharding's library, reduced to its active list.
	b := pgtest.Connect(t, dbs[1].DSN)
	pgtest.Exec(t, b, `
		CREATE SCHEMA microsharding;
		CREATE FUNCTION microsharding.microsharding_active_shards_() RETURNS text[]
		  LANGUAGE sql IMMUTABLE AS $$ SELECT '{sh0004,sh0099}'::text[] $$;
		CREATE SCHEMA sh0004;
		CREATE SCHEMA sh0005;
	`)
	// c: no library at all.
	c := pgtest.Connect(t, dbs[2].DSN)
	pgtest.Exec(t, c, `CREATE SCHEMA sh0006`)

	cl := refresh(t, []NodeSpec{{"c", dbs[2].DSN}, {"a", dbs[0].DSN}, {"b", dbs[1].DSN}}, RefreshOptions{})
	if got := []string{cl.Nodes[0].Name, cl.Nodes[1].Name, cl.Nodes[2].Name}; !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Fatalf("nodes not sorted by name: %v", got)
	}
	for _, n := range cl.Nodes {
		if n.Err != nil {
			t.Fatalf("node %s: %v", n.Name, n.Err)
		}
		if n.Standby || n.WalLevel != "logical" || n.ServerVersion < 100000 || n.MaxReplicationSlots != 40 ||
			n.MaxWalSenders != 40 || n.MaxSlotWalKeepSize != -1 {
			t.Errorf("node %s settings: %+v", n.Name, n)
		}
		if db := dbsByName(dbs, n.Name); n.Addr != db.Server.Addr()+"/"+db.Name {
			t.Errorf("node %s: Addr %q", n.Name, n.Addr)
		}
	}

	tests := []struct {
		node      string
		installed bool
		version   int
		shards    []shardSummary
	}{
		{"a", true, sql.Version, []shardSummary{
			{"sh0001", true, 1, ""},
			{"sh0002", true, 3, `Odd "name",log`},
			{"sh0003", false, 2, "nothing"},
		}},
		{"b", true, 0, []shardSummary{{"sh0004", true, 0, ""}, {"sh0005", false, 0, ""}}},
		{"c", false, 0, []shardSummary{{"sh0006", false, 0, ""}}},
	}
	for _, tt := range tests {
		n := cl.Node(tt.node)
		if n.Library.Installed != tt.installed || n.Library.Version != tt.version {
			t.Errorf("node %s library = %+v, want installed=%v version=%d", tt.node, n.Library, tt.installed, tt.version)
		}
		if got := summarize(n.Shards); !reflect.DeepEqual(got, tt.shards) {
			t.Errorf("node %s shards:\n got %+v\nwant %+v", tt.node, got, tt.shards)
		}
	}
	if s := cl.Node("a").Shard(1); s == nil || s.Bytes < 64*1024 || s.Shard != 1 {
		t.Errorf("shard 1 on a: %+v (its table holds 1000 rows and an index)", s)
	}
	if cl.Node("a").Shard(7) != nil || cl.Node("zzz") != nil {
		t.Error("absent shard or node found")
	}
}

func dbsByName(dbs []pgtest.DB, name string) pgtest.DB {
	return dbs[map[string]int{"a": 0, "b": 1, "c": 2}[name]]
}

func TestRefreshWeights(t *testing.T) {
	db := pgtest.Database(t)
	install(t, db.DSN)
	conn := pgtest.Connect(t, db.DSN)
	pgtest.Exec(t, conn, `
		SELECT microsharding.microsharding_ensure_exist(1, 2);
		SELECT microsharding.microsharding_ensure_active(1);
		CREATE TABLE sh0001.t (id int PRIMARY KEY);
		CREATE TABLE sh0002.t (id int PRIMARY KEY);
		INSERT INTO sh0001.t SELECT generate_series(1, 10);
		INSERT INTO sh0002.t SELECT generate_series(1, 3);
	`)
	spec := []NodeSpec{{"a", db.DSN}}
	cl := refresh(t, spec, RefreshOptions{Weights: true})
	for _, s := range cl.Nodes[0].Shards {
		if s.Weight == nil || !s.Weight.Bytes || s.Weight.Value != float64(s.Bytes) {
			t.Errorf("%s: default weight %+v, bytes %d", s.Schema, s.Weight, s.Bytes)
		}
	}
	cl = refresh(t, spec, RefreshOptions{Weights: true, WeightSQL: "SELECT count(*) FROM t"})
	if w := cl.Nodes[0].Shard(2).Weight; w == nil || w.Value != 3 || w.Bytes {
		t.Errorf("weight_sql weight of sh0002 = %+v, want 3", w)
	}
	cl = refresh(t, spec, RefreshOptions{})
	if cl.Nodes[0].Shard(1).Weight != nil {
		t.Error("weights measured without being asked for")
	}
	cl = refresh(t, spec, RefreshOptions{Weights: true, WeightSQL: "SELECT count(*) FROM missing_table"})
	if err := cl.Nodes[0].Err; err == nil || !strings.Contains(err.Error(), "node a (") || !strings.Contains(err.Error(), "missing_table") {
		t.Errorf("failing weight query: err = %v", err)
	}
}

func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestRefreshUnreachableNode(t *testing.T) {
	db := pgtest.Database(t)
	port := closedPort(t)
	nodes := []NodeSpec{
		{"a", db.DSN},
		{"b", fmt.Sprintf("postgres://app:s3cr3t-pw@127.0.0.1:%d/app?connect_timeout=3", port)},
		{"", fmt.Sprintf("host=127.0.0.1 port=%d dbname=app user=app password=s3cr3t-pw connect_timeout=3", port)},
		{"d", "postgres://app:s3cr3t-pw@[bad"},
	}
	cl := refresh(t, nodes, RefreshOptions{})
	if cl.Node("a").Err != nil {
		t.Fatalf("node a: %v", cl.Node("a").Err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port) + "/app"
	for name, prefix := range map[string]string{
		"b":  "node b (" + addr + "): cannot connect: ",
		addr: "node " + addr + ": cannot connect: ",
		"d":  "node d (",
	} {
		n := cl.Node(name)
		if n == nil {
			t.Fatalf("no node %q in %+v", name, cl.Nodes)
		}
		msg := fmt.Sprint(n.Err)
		if !strings.HasPrefix(msg, prefix) || strings.Contains(msg, "s3cr3t") {
			t.Errorf("node %s error = %q, want prefix %q and no password", name, msg, prefix)
		}
	}
	if msg := cl.Node("b").Err.Error(); !strings.Contains(msg, "refused") {
		t.Errorf("cause missing: %q", msg)
	}
}

func TestRefreshLeftovers(t *testing.T) {
	dbs := pgtest.Databases(t, 2)
	install(t, dbs[0].DSN)
	a := pgtest.Connect(t, dbs[0].DSN)
	pgtest.Exec(t, a, `
		SELECT microsharding.microsharding_ensure_exist(1, 3);
		CREATE TABLE sh0001.t (id int PRIMARY KEY);
		CREATE SCHEMA sh0001old20260102030405;             -- pgms and pg-microsharding
		CREATE TABLE sh0001old20260102030405.t (id int PRIMARY KEY, v text);
		INSERT INTO sh0001old20260102030405.t SELECT g, repeat('x', 100) FROM generate_series(1, 500) g;
		CREATE SCHEMA sh0002old_1700000000;                -- older pg-microsharding
		CREATE SCHEMA sh0002old;
		CREATE SCHEMA sh0003new;
		CREATE SCHEMA sh0001older;                          -- user schemas with similar names
		CREATE SCHEMA renew;
		CREATE SCHEMA sh1new;
		CREATE PUBLICATION pgms_move_sh0001 FOR TABLE sh0001.t;
		CREATE PUBLICATION pg_microsharding_move_sh0002_pub;
		CREATE PUBLICATION pg_microsharding_move_sh0002_sub; -- wrong suffix for a publication
		CREATE PUBLICATION my_pub;
		CREATE PUBLICATION pgms_move_sh1;                   -- not a shard schema
	`)
	pgtest.Exec(t, a, `SELECT pg_create_logical_replication_slot('pg_microsharding_move_sh0002_sub', 'pgoutput')`)
	pgtest.Exec(t, a, `SELECT pg_create_logical_replication_slot('other_slot', 'pgoutput')`)
	// WAL written after the slot was made is what it retains.
	pgtest.Exec(t, a, `CREATE TABLE public.filler AS SELECT g, repeat('y', 200) AS pad FROM generate_series(1, 5000) g`)

	b := pgtest.Connect(t, dbs[1].DSN)
	pgtest.Exec(t, b, fmt.Sprintf(`CREATE SUBSCRIPTION pgms_move_sh0001 CONNECTION '%s'
		PUBLICATION pgms_move_sh0001 WITH (connect = false, slot_name = NONE)`, dbs[0].DSN))
	pgtest.Exec(t, b, fmt.Sprintf(`CREATE SUBSCRIPTION user_sub CONNECTION '%s'
		PUBLICATION my_pub WITH (connect = false, slot_name = NONE)`, dbs[0].DSN))

	cl := refresh(t, []NodeSpec{{"a", dbs[0].DSN}, {"b", dbs[1].DSN}}, RefreshOptions{})
	for _, n := range cl.Nodes {
		if n.Err != nil {
			t.Fatal(n.Err)
		}
	}
	type row struct {
		Kind, Name, Schema string
		Shard              int
		Tool               string
		Renamed            string
	}
	var got []row
	for _, l := range cl.Node("a").Leftovers {
		r := row{l.Kind, l.Name, l.Schema, l.Shard, l.Tool, ""}
		if !l.Renamed.IsZero() {
			r.Renamed = l.Renamed.UTC().Format(time.RFC3339)
		}
		got = append(got, r)
	}
	want := []row{
		{LeftoverPublication, "pgms_move_sh0001", "sh0001", 1, ToolPGMS, ""},
		{LeftoverOldSchema, "sh0001old20260102030405", "sh0001", 1, ToolPGMS, "2026-01-02T03:04:05Z"},
		{LeftoverSlot, "pg_microsharding_move_sh0002_sub", "sh0002", 2, ToolPGMicrosharding, ""},
		{LeftoverPublication, "pg_microsharding_move_sh0002_pub", "sh0002", 2, ToolPGMicrosharding, ""},
		{LeftoverOldSchema, "sh0002old", "sh0002", 2, ToolPGMicrosharding, ""},
		{LeftoverOldSchema, "sh0002old_1700000000", "sh0002", 2, ToolPGMicrosharding, "2023-11-14T22:13:20Z"},
		{LeftoverNewSchema, "sh0003new", "sh0003", 3, ToolPGMS, ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("leftovers on a:\n got %+v\nwant %+v", got, want)
	}
	for _, l := range cl.Node("a").Leftovers {
		switch l.Name {
		case "pg_microsharding_move_sh0002_sub":
			if l.Active || l.RetainedBytes < 1<<20 {
				t.Errorf("slot: active=%v retained=%d, want inactive and over 1 MiB", l.Active, l.RetainedBytes)
			}
		case "sh0001old20260102030405":
			if l.Bytes < 50*1000 {
				t.Errorf("renamed schema size %d", l.Bytes)
			}
		}
	}
	subs := cl.Node("b").Leftovers
	if len(subs) != 1 || subs[0].Kind != LeftoverSubscription || subs[0].Name != "pgms_move_sh0001" ||
		subs[0].Active || subs[0].Slot != "" || subs[0].Shard != 1 {
		t.Errorf("leftovers on b: %+v", subs)
	}
}

func TestFingerprint(t *testing.T) {
	dbs := pgtest.Databases(t, 2)
	for _, db := range dbs {
		install(t, db.DSN)
		conn := pgtest.Connect(t, db.DSN)
		pgtest.Exec(t, conn, `SELECT microsharding.microsharding_ensure_exist(1, 2);
			CREATE TABLE sh0001.t (id int PRIMARY KEY)`)
	}
	a := pgtest.Connect(t, dbs[0].DSN)
	nodes := []NodeSpec{{"a", dbs[0].DSN}, {"b", dbs[1].DSN}}
	reversed := []NodeSpec{nodes[1], nodes[0]}

	base := refresh(t, nodes, RefreshOptions{}).Fingerprint()
	if got := refresh(t, reversed, RefreshOptions{Parallelism: 1}).Fingerprint(); got != base {
		t.Error("fingerprint depends on node order")
	}
	pgtest.Exec(t, a, `INSERT INTO sh0001.t SELECT generate_series(1, 1000)`)
	if got := refresh(t, nodes, RefreshOptions{Weights: true}).Fingerprint(); got != base {
		t.Error("fingerprint changed by inserting data")
	}
	pgtest.Exec(t, a, `SELECT microsharding.microsharding_ensure_active(1)`)
	activated := refresh(t, nodes, RefreshOptions{}).Fingerprint()
	if activated == base {
		t.Error("fingerprint unchanged by an activation")
	}
	pgtest.Exec(t, a, `CREATE SCHEMA sh0002old20260101000000`)
	if refresh(t, nodes, RefreshOptions{}).Fingerprint() == activated {
		t.Error("fingerprint unchanged by a new leftover")
	}
	// Shards inside one node in another order: same fingerprint.
	cl := refresh(t, nodes, RefreshOptions{})
	fp := cl.Fingerprint()
	s := cl.Nodes[0].Shards
	s[0], s[1] = s[1], s[0]
	if cl.Fingerprint() != fp {
		t.Error("fingerprint depends on shard order")
	}

	empty := (&Cluster{}).Fingerprint()
	if len(empty) != 64 || empty != (&Cluster{}).Fingerprint() {
		t.Errorf("empty cluster fingerprint %q", empty)
	}
	down := &Cluster{Nodes: []*NodeState{{Name: "a", Err: fmt.Errorf("x")}}}
	if down.Fingerprint() == empty {
		t.Error("an unreachable node does not change the fingerprint")
	}
}

func TestRefreshStandby(t *testing.T) {
	db := pgtest.Database(t)
	install(t, db.DSN)
	conn := pgtest.Connect(t, db.DSN)
	pgtest.Exec(t, conn, `SELECT microsharding.microsharding_ensure_exist(1, 2);
		SELECT microsharding.microsharding_ensure_active(1, 2);
		CREATE SCHEMA sh0001old20260101000000`)
	pgtest.Exec(t, conn, `SELECT pg_create_logical_replication_slot('pgms_move_sh0002', 'pgoutput')`)
	standby := startStandby(t, db.Server, db.Name)

	cl := refresh(t, []NodeSpec{{"primary", db.DSN}, {"replica", standby}}, RefreshOptions{})
	p, r := cl.Node("primary"), cl.Node("replica")
	if p.Err != nil || r.Err != nil {
		t.Fatalf("errors: %v / %v", p.Err, r.Err)
	}
	if p.Standby || !r.Standby {
		t.Errorf("standby flags: primary %v, replica %v", p.Standby, r.Standby)
	}
	if !reflect.DeepEqual(summarize(p.Shards), summarize(r.Shards)) || !r.Library.Installed {
		t.Errorf("a standby shows its primary's shards: %+v vs %+v", r.Shards, p.Shards)
	}
	// Slots are not replicated; the renamed schema is.
	if len(r.Leftovers) != 1 || r.Leftovers[0].Kind != LeftoverOldSchema {
		t.Errorf("standby leftovers: %+v", r.Leftovers)
	}
	for _, v := range cl.Triage(CleanupPolicy{}) {
		if v.Node == "replica" && v.Drop {
			t.Errorf("triage drops %s on a standby", v.Leftover)
		}
	}
}

// TestRefreshTiming reads 3 nodes with many shards and reports how long a
// refresh takes. PGMS_BENCH_SHARDS sets the shards per node (default 100).
func TestRefreshTiming(t *testing.T) {
	shards := 100
	if v, err := strconv.Atoi(os.Getenv("PGMS_BENCH_SHARDS")); err == nil && v > 0 {
		shards = v
	}
	dbs := pgtest.Databases(t, 3)
	var nodes []NodeSpec
	for i, db := range dbs {
		install(t, db.DSN)
		conn := pgtest.Connect(t, db.DSN)
		from, to := i*shards+1, (i+1)*shards
		pgtest.Exec(t, conn, fmt.Sprintf(`
			SELECT microsharding.microsharding_ensure_exist(%d, %d);
			SELECT microsharding.microsharding_ensure_active(%d, %d);
			SELECT count(*) FROM microsharding.microsharding_do_on_each(
			  'CREATE TABLE users (id bigint PRIMARY KEY, name text); CREATE TABLE events (id bigint PRIMARY KEY, user_id bigint, at timestamptz)');
		`, from, to, from, to))
		nodes = append(nodes, NodeSpec{string(rune('a' + i)), db.DSN})
	}
	for _, weights := range []bool{false, true} {
		var best time.Duration
		for range 3 {
			start := time.Now()
			cl := refresh(t, nodes, RefreshOptions{Weights: weights})
			took := time.Since(start)
			if best == 0 || took < best {
				best = took
			}
			for _, n := range cl.Nodes {
				if n.Err != nil || len(n.Shards) != shards || n.Shards[0].Tables != 2 {
					t.Fatalf("node %s: err %v, %d shards", n.Name, n.Err, len(n.Shards))
				}
			}
		}
		t.Logf("Refresh of 3 nodes x %d shards x 2 tables (weights %v): %v", shards, weights, best.Round(time.Millisecond/10))
	}
}
