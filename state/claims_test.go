package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/sql"
)

func claimSpec(dsn string, shards ...int) ClaimSpec {
	schemas := make([]string, len(shards))
	for i, s := range shards {
		schemas[i] = fmt.Sprintf("sh%04d", s)
	}
	return ClaimSpec{DSN: dsn, Node: "a", LibrarySchema: sql.DefaultSchema, Shards: shards, Schemas: schemas,
		Purpose: "move a → b (source)", Who: Invocation{Command: "move", Host: "ci-7", PID: 4242, User: "deploy"}}
}

func TestClaimIsExclusive(t *testing.T) {
	db, conn := stateNode(t)
	ctx := context.Background()
	first, err := ClaimShards(ctx, claimSpec(db.DSN, 3))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ClaimShards(ctx, claimSpec(db.DSN, 2, 3, 4))
	var held *ClaimHeldError
	if !errors.As(err, &held) || held.Shard != 3 || !errors.Is(err, ErrClaimHeld) {
		t.Fatalf("second claim: %v", err)
	}
	for _, want := range []string{"shard 3 is claimed on node a", "pid 4242 on host ci-7", "user deploy", "move a → b (source)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	// The failed claim left nothing of its own.
	claims, err := ReadClaims(ctx, conn, sql.DefaultSchema)
	if err != nil || len(claims) != 1 || claims[0].Shard != 3 || !claims[0].Live {
		t.Fatalf("claims %+v, %v", claims, err)
	}
	first.Release(ctx)
	second, err := ClaimShards(ctx, claimSpec(db.DSN, 2, 3, 4))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Release(ctx)
	if second.Previous != nil {
		t.Errorf("a released claim is not a takeover: %+v", second.Previous)
	}
}

// TestClaimTakeover: a claim whose session ended is taken over, and the
// remaining sessions of the run that held it are ended first.
func TestClaimTakeover(t *testing.T) {
	db, conn := stateNode(t)
	ctx := context.Background()
	// Another run's leftovers: its claim row (its lock gone) and one of its
	// sessions, still open.
	other, err := ClaimShards(ctx, claimSpec(db.DSN, 7))
	if err != nil {
		t.Fatal(err)
	}
	pgtest.Exec(t, conn, "UPDATE microsharding.pgms_claims SET token = 'feedfacecafe'")
	other.Node().Close()
	cfg, err := pgx.ParseConfig(db.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "pgms/feedfacecafe"
	straggler, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer straggler.Close(ctx)
	waitClaimFree(t, conn, 7)

	c, err := ClaimShards(ctx, claimSpec(db.DSN, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release(ctx)
	if len(c.Previous) != 1 || c.Previous[0].Token != "feedfacecafe" {
		t.Errorf("previous %+v", c.Previous)
	}
	if err := straggler.Ping(ctx); err == nil {
		t.Error("the earlier run's session survived the takeover")
	}
}

func waitClaimFree(t *testing.T, conn *pgx.Conn, shard int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		claims, err := ReadClaims(context.Background(), conn, sql.DefaultSchema)
		if err != nil {
			t.Fatal(err)
		}
		live := false
		for _, c := range claims {
			live = live || c.Shard == shard && c.Live
		}
		if !live {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("shard %d still claimed: %+v", shard, claims)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClaimReacquire: a claim whose session ended is taken back when no
// other run took it meanwhile, and refused when one did.
func TestClaimReacquire(t *testing.T) {
	db, conn := stateNode(t)
	ctx := context.Background()
	c, err := ClaimShards(ctx, claimSpec(db.DSN, 9))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release(ctx)
	pgtest.Exec(t, conn, "SELECT pg_terminate_backend($1)", c.BackendPID())
	waitClaimFree(t, conn, 9)
	if err := c.Reacquire(ctx); err != nil {
		t.Fatalf("reacquire: %v", err)
	}
	if _, err := c.Node().Conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	// The same, but another run takes the shard in between.
	pgtest.Exec(t, conn, "SELECT pg_terminate_backend($1)", c.BackendPID())
	waitClaimFree(t, conn, 9)
	pgtest.Exec(t, conn, "UPDATE microsharding.pgms_claims SET token = 'feedfacecafe', claim_id = 12345 WHERE shard = 9")
	if err := c.Reacquire(ctx); !errors.Is(err, ErrClaimLost) {
		t.Fatalf("reacquire after a takeover: %v", err)
	}
}

// TestClaimManyShards: a claim of thousands of shards takes one lock, far
// within the server's lock table, and the held-check sees it.
func TestClaimManyShards(t *testing.T) {
	db, conn := stateNode(t)
	ctx := context.Background()
	shards := make([]int, 9000)
	for i := range shards {
		shards[i] = i
	}
	c, err := ClaimShards(ctx, claimSpec(db.DSN, shards...))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release(ctx)
	var locks int
	pgtest.Connect(t, db.DSN).QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", c.BackendPID()).Scan(&locks)
	if locks != 1 {
		t.Errorf("%d advisory locks for one claim", locks)
	}
	var held bool
	if err := conn.QueryRow(ctx, c.HeldSQL(), pgx.QueryExecModeSimpleProtocol).Scan(&held); err != nil || !held {
		t.Errorf("HeldSQL: %v, %v", held, err)
	}
	if err := c.verify(ctx); err != nil {
		t.Error(err)
	}
}

func TestRegistry(t *testing.T) {
	dbs := pgtest.Databases(t, 2)
	ctx := context.Background()
	var conns []*pgx.Conn
	var ids []Identity
	for _, db := range dbs {
		c := pgtest.Connect(t, db.DSN)
		if _, err := sql.Install(ctx, c, sql.Options{}); err != nil {
			t.Fatal(err)
		}
		before, err := ReadIdentity(ctx, c, sql.DefaultSchema)
		if err != nil || before.ID != "" {
			t.Fatalf("identity before: %+v, %v", before, err)
		}
		id, err := EnsureIdentity(ctx, c, sql.DefaultSchema)
		if err != nil || id.ID == "" {
			t.Fatalf("EnsureIdentity: %+v, %v", id, err)
		}
		again, _ := EnsureIdentity(ctx, c, sql.DefaultSchema)
		if again.ID != id.ID {
			t.Errorf("the id changed: %s, then %s", id.ID, again.ID)
		}
		conns, ids = append(conns, c), append(ids, id)
	}
	// Separate servers cloned from one template share the system
	// identifier; the start time tells them apart.
	if ids[0].SameServer(ids[1]) {
		t.Errorf("two servers taken for one: %+v %+v", ids[0], ids[1])
	}
	if !ids[0].SameServer(ids[0]) {
		t.Error("a server is not itself")
	}
	entries := []RegistryEntry{
		{Name: "a", DSN: strings.Replace(dbs[0].DSN, "postgres@", "postgres:secret@", 1), Identity: ids[0], Authoritative: true},
		{Name: "b", DSN: dbs[1].DSN, Identity: ids[1], Authoritative: true},
	}
	if err := Register(ctx, conns[0], sql.DefaultSchema, entries); err != nil {
		t.Fatal(err)
	}
	// A name from the command line does not replace a topology name.
	if err := Register(ctx, conns[0], sql.DefaultSchema, []RegistryEntry{{Name: "127.0.0.1:1/x", DSN: dbs[1].DSN, Identity: ids[1]}}); err != nil {
		t.Fatal(err)
	}
	reg, err := ReadRegistry(ctx, conns[0], sql.DefaultSchema)
	if err != nil || len(reg) != 2 || reg[0].Name != "a" || reg[1].Name != "b" || reg[1].ID != ids[1].ID {
		t.Fatalf("registry %+v, %v", reg, err)
	}
	if strings.Contains(reg[0].DSN, "secret") {
		t.Errorf("password stored: %s", reg[0].DSN)
	}
	if err := Unregister(ctx, conns[0], sql.DefaultSchema, ids[1].ID); err != nil {
		t.Fatal(err)
	}
	if reg, _ := ReadRegistry(ctx, conns[0], sql.DefaultSchema); len(reg) != 1 {
		t.Errorf("after unregister: %+v", reg)
	}
}
