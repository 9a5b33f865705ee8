package executor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// startMove sets up shard n half-way through a move from a to b, the way
// both tools do it: a publication and a slot on a, the shard's table on b
// and a subscription on b streaming from the slot.
func startMove(t *testing.T, a, b *pgx.Conn, srcDSN string, n int, slot, pub, sub string) {
	t.Helper()
	schema := fmt.Sprintf("sh%04d", n)
	pgtest.Exec(t, a, fmt.Sprintf("CREATE TABLE %s.t (id int PRIMARY KEY); CREATE PUBLICATION %s FOR TABLE %s.t", schema, pub, schema))
	pgtest.Exec(t, a, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", slot)
	pgtest.Exec(t, b, fmt.Sprintf("SELECT microsharding.microsharding_ensure_exist(%d); CREATE TABLE %s.t (id int PRIMARY KEY)", n, schema))
	pgtest.Exec(t, b, fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION '%s' PUBLICATION %s WITH (create_slot = false, slot_name = '%s', copy_data = false)",
		sub, srcDSN, pub, slot))
}

// waitSlot waits until a slot is (or is not) in use.
func waitSlot(t *testing.T, conn *pgx.Conn, slot string, active bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got bool
		err := conn.QueryRow(context.Background(), "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&got)
		if err == nil && got == active {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s: active=%v (%v), want %v", slot, got, err, active)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holdSlot streams from a slot with pg_recvlogical, a walsender that is no
// subscription's, under the given application_name.
func holdSlot(t *testing.T, conn *pgx.Conn, dsn, slot, application string) {
	t.Helper()
	// test_decoding decodes every change; pgoutput would fail (and end the
	// walsender) at the first change without a publication.
	pgtest.Exec(t, conn, "SELECT pg_create_logical_replication_slot($1, 'test_decoding')", slot)
	cmd := exec.Command(clientPath(t, "pg_recvlogical"), "-d", dsn, "--slot", slot, "--start", "--no-loop", "-f", "/dev/null")
	cmd.Env = append(os.Environ(), "PGAPPNAME="+application)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitSlot(t, conn, slot, true)
}

func exists(t *testing.T, conn *pgx.Conn, catalog, column, name string) bool {
	t.Helper()
	var ok bool
	err := conn.QueryRow(context.Background(), fmt.Sprintf("SELECT EXISTS (SELECT 1 FROM %s WHERE %s = $1)", catalog, column), name).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestCleanup(t *testing.T) {
	dbs := pgtest.Databases(t, 2)
	na, nb := installed(t, dbs[0]), installed(t, dbs[1])
	a, b := na.Conn, nb.Conn
	now := time.Now().UTC()
	recent := names.OldSchema("sh0002", now.Add(-time.Hour))
	pgtest.Exec(t, a, `
		SELECT microsharding.microsharding_ensure_exist(1, 9);
		CREATE SCHEMA sh0001old20200101000000;
		CREATE TABLE sh0001old20200101000000.t (id int PRIMARY KEY, pad text);
		INSERT INTO sh0001old20200101000000.t SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g;
		CREATE SCHEMA `+recent+`;
		CREATE SCHEMA sh0003new;
		CREATE SCHEMA sh0001older;
		CREATE SCHEMA renew;
		CREATE SCHEMA sh1new;
		CREATE PUBLICATION my_pub;
		CREATE PUBLICATION pg_microsharding_move_sh0004_pub;
	`)
	pgtest.Exec(t, a, "SELECT pg_create_logical_replication_slot('pg_microsharding_move_sh0004_sub', 'pgoutput')")
	pgtest.Exec(t, a, "SELECT pg_create_logical_replication_slot('other_slot', 'pgoutput')")
	// WAL written from now on is retained by the orphaned slot.
	pgtest.Exec(t, a, "CREATE TABLE public.filler AS SELECT g, repeat('y', 200) AS pad FROM generate_series(1, 10000) g")

	// A move in progress (sh0005) and one that finished but left its
	// replication objects (sh0006), a disabled subscription (sh0007), a slot
	// held by a foreign walsender (sh0008) and one held by a running pgms
	// (sh0009).
	startMove(t, a, b, dbs[0].DSN, 5, "pgms_move_sh0005", "pgms_move_sh0005", "pgms_move_sh0005")
	startMove(t, a, b, dbs[0].DSN, 6, "pgms_move_sh0006", "pgms_move_sh0006", "pgms_move_sh0006")
	pgtest.Exec(t, b, "SELECT microsharding.microsharding_ensure_active(6)")
	pgtest.Exec(t, b, fmt.Sprintf(`SELECT microsharding.microsharding_ensure_exist(7);
		CREATE SUBSCRIPTION pgms_move_sh0007 CONNECTION '%s' PUBLICATION pgms_move_sh0007 WITH (connect = false, slot_name = NONE);
		CREATE SUBSCRIPTION user_sub CONNECTION '%s' PUBLICATION my_pub WITH (connect = false, slot_name = NONE)`, dbs[0].DSN, dbs[0].DSN))
	waitSlot(t, a, "pgms_move_sh0005", true)
	waitSlot(t, a, "pgms_move_sh0006", true)
	holdSlot(t, a, dbs[0].DSN, "pgms_move_sh0008", "pg_recvlogical")
	holdSlot(t, a, dbs[0].DSN, "pgms_move_sh0009", "pgms")

	// The move of sh0005 is running: it holds the shard's claims, on
	// both nodes.
	for _, dsn := range []string{dbs[0].DSN, dbs[1].DSN} {
		c, err := state.ClaimShards(context.Background(), state.ClaimSpec{DSN: dsn, Node: "x", LibrarySchema: "microsharding",
			Shards: []int{5}, Schemas: []string{"sh0005"}, Purpose: "move a → b", Who: state.Invocation{Command: "move", PID: 1, Host: "elsewhere"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Release(context.Background()) })
	}

	nodes := []state.NodeSpec{{Name: "a", DSN: dbs[0].DSN}, {Name: "b", DSN: dbs[1].DSN}}
	policy := state.CleanupPolicy{Now: now, RetainOld: 168 * time.Hour}
	verdicts := state.Refresh(context.Background(), nodes, state.RefreshOptions{}).Triage(policy)
	var drop, keep []string
	for _, v := range verdicts {
		key := v.Node + " " + v.Leftover.String()
		if v.Drop {
			drop = append(drop, key)
		} else {
			keep = append(keep, key)
		}
	}
	sort.Strings(drop)
	sort.Strings(keep)
	wantDrop := []string{
		"a publication pg_microsharding_move_sh0004_pub",
		"a publication pgms_move_sh0006",
		"a schema sh0001old20200101000000",
		"a schema sh0003new",
		"a slot pg_microsharding_move_sh0004_sub",
		"a slot pgms_move_sh0006",
		"b subscription pgms_move_sh0006",
		"b subscription pgms_move_sh0007",
	}
	wantKeep := []string{
		"a publication pgms_move_sh0005",
		"a schema " + recent,
		"a slot pgms_move_sh0005",
		"a slot pgms_move_sh0008",
		"a slot pgms_move_sh0009",
		"b subscription pgms_move_sh0005",
	}
	if !reflect.DeepEqual(drop, wantDrop) || !reflect.DeepEqual(keep, wantKeep) {
		t.Fatalf("triage:\ndrop %q\nkeep %q", drop, keep)
	}

	var reported []string
	spec := CleanupSpec{RetainOld: policy.RetainOld, Now: now, Report: func(o Outcome) {
		reported = append(reported, o.Leftover.String())
	}}
	outcomes, err := CleanupAll(context.Background(), map[string]*pgutil.Node{"a": na, "b": nb}, verdicts, spec)
	if err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	var dropped []string
	for _, o := range outcomes {
		if !o.Dropped {
			t.Errorf("%s not dropped: %s", o.Leftover, o.Reason)
		}
		dropped = append(dropped, o.Leftover.String())
		t.Logf("%s: dropped %s in %v", o.Node, o.Leftover, o.Took)
		if o.Leftover.Name == "pg_microsharding_move_sh0004_sub" && o.RetainedBytes < 1<<20 {
			t.Errorf("orphaned slot retained %d bytes, want over 1 MiB", o.RetainedBytes)
		}
	}
	if !reflect.DeepEqual(dropped, reported) || len(dropped) != len(wantDrop) {
		t.Errorf("dropped %v, reported %v", dropped, reported)
	}
	// Subscriptions (on b) went first, before the slot they held on a.
	if !strings.HasPrefix(dropped[0], "subscription") || !strings.HasPrefix(dropped[1], "subscription") {
		t.Errorf("order: %v", dropped)
	}

	for _, s := range []string{"sh0001old20200101000000", "sh0003new"} {
		if exists(t, a, "pg_namespace", "nspname", s) {
			t.Errorf("schema %s survived", s)
		}
	}
	for _, s := range []string{recent, "sh0001older", "renew", "sh1new", "sh0001", "sh0005", "sh0006"} {
		if !exists(t, a, "pg_namespace", "nspname", s) {
			t.Errorf("schema %s was dropped", s)
		}
	}
	for _, s := range []string{"other_slot", "pgms_move_sh0005", "pgms_move_sh0008", "pgms_move_sh0009"} {
		if !exists(t, a, "pg_replication_slots", "slot_name", s) {
			t.Errorf("slot %s was dropped", s)
		}
	}
	if !exists(t, a, "pg_publication", "pubname", "my_pub") || !exists(t, b, "pg_subscription", "subname", "user_sub") ||
		!exists(t, b, "pg_subscription", "subname", "pgms_move_sh0005") || !exists(t, a, "pg_publication", "pubname", "pgms_move_sh0005") {
		t.Error("a user object or the running move's objects were dropped")
	}
	// The running move still streams.
	pgtest.Exec(t, a, "INSERT INTO sh0005.t VALUES (1)")
	deadline := time.Now().Add(10 * time.Second)
	for !exists(t, b, "sh0005.t", "id", "1") {
		if time.Now().After(deadline) {
			t.Fatal("the running move stopped streaming")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Converged: a second triage drops nothing.
	for _, v := range state.Refresh(context.Background(), nodes, state.RefreshOptions{}).Triage(policy) {
		if v.Drop {
			t.Errorf("second triage drops %s on %s", v.Leftover, v.Node)
		}
	}
}

// TestCleanupChecksAgain gives Cleanup leftovers that a stale or careless
// list says to drop; it checks each on the node and keeps what must stay.
func TestCleanupChecksAgain(t *testing.T) {
	dbs := pgtest.Databases(t, 2)
	na, nb := installed(t, dbs[0]), installed(t, dbs[1])
	a, b := na.Conn, nb.Conn
	now := time.Now().UTC()
	recent := names.OldSchema("sh0002", now.Add(-time.Hour))
	pgtest.Exec(t, a, `SELECT microsharding.microsharding_ensure_exist(1, 9); CREATE SCHEMA renew; CREATE SCHEMA `+recent)
	pgtest.Exec(t, a, "CREATE SCHEMA sh0003old20200101000000")
	startMove(t, a, b, dbs[0].DSN, 5, "pg_microsharding_move_sh0005_sub", "pg_microsharding_move_sh0005_pub", "pg_microsharding_move_sh0005_sub")
	waitSlot(t, a, "pg_microsharding_move_sh0005_sub", true)
	holdSlot(t, a, dbs[0].DSN, "pgms_move_sh0008", "pg_recvlogical")
	holdSlot(t, a, dbs[0].DSN, "pgms_move_sh0009", "pgms")

	l := func(kind, name string) state.Leftover {
		x, ok := state.ParseLeftover(kind, name, sql.DefaultNaming)
		if !ok {
			x = state.Leftover{Kind: kind, Name: name}
		}
		return x
	}
	ctx := context.Background()
	spec := CleanupSpec{RetainOld: 168 * time.Hour, Now: now, SlotWait: time.Second, Leftovers: []state.Leftover{
		l(state.LeftoverOldSchema, recent),
		l(state.LeftoverOldSchema, "renew"),
		l(state.LeftoverOldSchema, "sh0003old20200101000000"),
		l(state.LeftoverSlot, "pg_microsharding_move_sh0005_sub"),
		l(state.LeftoverPublication, "pg_microsharding_move_sh0005_pub"),
		l(state.LeftoverSlot, "pgms_move_sh0008"),
		l(state.LeftoverSlot, "pgms_move_sh0009"),
		l(state.LeftoverSlot, "pgms_move_sh0010"),
	}}
	// The active list names the renamed schema: it stays.
	pgtest.Exec(t, a, "SELECT microsharding.microsharding_ensure_active_shards_(ARRAY['sh0003old20200101000000'])")
	res, err := Cleanup(ctx, na, spec)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		recent:                             "renamed less than 168h0m0s ago",
		"renew":                            "not one a move gives",
		"sh0003old20200101000000":          "in the active list",
		"pg_microsharding_move_sh0005_sub": "still in use by walsender",
		"pg_microsharding_move_sh0005_pub": "slot pg_microsharding_move_sh0005_sub of the same move is still there",
		"pgms_move_sh0008":                 "pass --terminate-orphan-walsenders",
		"pgms_move_sh0009":                 "held by a running pgms",
		"pgms_move_sh0010":                 "already gone",
	}
	for _, o := range res.Outcomes {
		if o.Dropped || o.Err != nil || !strings.Contains(o.Reason, want[o.Leftover.Name]) {
			t.Errorf("%s: dropped=%v err=%v reason %q, want kept: %q", o.Leftover, o.Dropped, o.Err, o.Reason, want[o.Leftover.Name])
		}
	}
	if len(res.Outcomes) != len(want) {
		t.Errorf("%d outcomes", len(res.Outcomes))
	}

	// A subscription of a running move is kept too.
	res, err = Cleanup(ctx, nb, CleanupSpec{Leftovers: []state.Leftover{l(state.LeftoverSubscription, "pg_microsharding_move_sh0005_sub")}})
	if err != nil || len(res.Outcomes) != 1 || res.Outcomes[0].Dropped || !strings.Contains(res.Outcomes[0].Reason, "a move may be in progress") {
		t.Errorf("running subscription: %+v, %v", res.Outcomes, err)
	}

	// Allowed to end foreign walsenders: the orphan goes, a running pgms's
	// slot and a subscription's stay.
	spec.TerminateOrphanWalsenders = true
	spec.Leftovers = []state.Leftover{l(state.LeftoverSlot, "pgms_move_sh0008"), l(state.LeftoverSlot, "pgms_move_sh0009")}
	res, err = Cleanup(ctx, na, spec)
	if err != nil || !res.Outcomes[0].Dropped || res.Outcomes[1].Dropped {
		t.Errorf("with terminate: %+v, %v", res.Outcomes, err)
	}
	if exists(t, a, "pg_replication_slots", "slot_name", "pgms_move_sh0008") || !exists(t, a, "pg_replication_slots", "slot_name", "pgms_move_sh0009") {
		t.Error("wrong slots dropped")
	}
}
