package executor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/state"
)

func TestMoveBasic(t *testing.T) {
	c := newCluster(t)
	schema := c.shard(1, `
		CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, created timestamptz DEFAULT now());
		CREATE INDEX users_name ON users (name);
		CREATE TABLE orders (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id bigint REFERENCES users (id), total numeric);
		CREATE SEQUENCE free_seq START 100;
		INSERT INTO users (name) SELECT 'u' || g FROM generate_series(1, 2000) g;
		INSERT INTO orders (user_id, total) SELECT 1 + g % 2000, g FROM generate_series(1, 3000) g;
		SELECT nextval('free_seq'), nextval('free_seq')`)
	ev := newEvents()
	res, err := Move(context.Background(), c.spec(1, true), nil, ev)
	t.Log("\n" + ev.text())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if got := c.active(c.b); len(got) != 1 || got[0] != schema {
		t.Errorf("destination active %v", got)
	}
	if got := c.active(c.a); len(got) != 0 {
		t.Errorf("source active %v", got)
	}
	old := c.schemas(c.a, schema+"old%")
	if len(old) != 1 || old[0] != res.OldSchema {
		t.Fatalf("renamed source %v, result says %q", old, res.OldSchema)
	}
	c.sameContent(old[0], schema, "users", "orders")
	c.noArtifacts()
	var next int64
	c.b.QueryRow(context.Background(), "SELECT nextval('"+schema+".free_seq')").Scan(&next)
	if next != 102 {
		t.Errorf("free_seq on destination: nextval %d, want 102", next)
	}
	c.b.QueryRow(context.Background(), "SELECT nextval('"+schema+".users_id_seq')").Scan(&next)
	if next != 2001 {
		t.Errorf("users_id_seq on destination: nextval %d, want 2001", next)
	}
	var comment *string
	c.b.QueryRow(context.Background(), "SELECT obj_description('"+schema+"'::regnamespace, 'pg_namespace')").Scan(&comment)
	if comment != nil && names.IsCopyMark(*comment) {
		t.Errorf("destination still marked: %q", *comment)
	}
	if res.Pause <= 0 || res.Pause > 2*time.Second || res.Core > res.Pause {
		t.Errorf("implausible pause %v core %v", res.Pause, res.Core)
	}
	// Running it again finds it done.
	res, err = Move(context.Background(), c.spec(1, true), nil, nil)
	if err != nil || !res.AlreadyDone {
		t.Fatalf("second run: %+v, %v", res, err)
	}
}

// TestCommittedMoveFinishesFromItsOwnSource: a copy whose cutover
// committed is finished only from the source its mark names, whose
// renamed schema holds the shard's final sequence values. Asked to finish
// it from another node that also holds a renamed source of the shard (an
// earlier move's), the move refuses before changing anything.
func TestCommittedMoveFinishesFromItsOwnSource(t *testing.T) {
	ctx := context.Background()
	c := newCluster(t)
	pgtest.Exec(t, c.a, "CREATE SCHEMA sh0005old20261125115900; CREATE TABLE sh0005old20261125115900.t (id bigserial PRIMARY KEY)")
	pgtest.Exec(t, c.b, "CREATE SCHEMA sh0005; CREATE TABLE sh0005.t (id bigserial PRIMARY KEY); COMMENT ON SCHEMA sh0005 IS "+
		quoteLiteral(names.CopyMark("sh0005", "c")))
	spec := c.spec(5, true)
	spec.Fleet = spec.Fleet.With(state.NodeSpec{Name: "c", DSN: "postgres://app@db-c.invalid:5432/app"})
	_, err := Move(ctx, spec, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "was made from c, not a") {
		t.Fatalf("finishing c's committed move from a: %v", err)
	}
	if got := c.active(c.b); len(got) != 0 {
		t.Errorf("b serves %v", got)
	}
	// Without a node of that name in the fleet, the mark cannot be placed
	// and the move goes on (a move started with DSNs, finished by name).
	spec.Fleet = state.Fleet{}
	if _, err := Move(ctx, spec, nil, nil); err != nil {
		t.Fatalf("finishing with the mark's node unknown: %v", err)
	}
	if got := c.active(c.b); len(got) != 1 || got[0] != "sh0005" {
		t.Errorf("b serves %v", got)
	}
}
