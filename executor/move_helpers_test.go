package executor

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/sql"
)

// cluster is a source and a destination database with the library
// installed on both.
type cluster struct {
	t        *testing.T
	src, dst pgtest.DB
	a, b     *pgx.Conn
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	dbs := pgtest.Databases(t, 2)
	c := &cluster{t: t, src: dbs[0], dst: dbs[1]}
	c.a = pgtest.Connect(t, c.src.DSN)
	c.b = pgtest.Connect(t, c.dst.DSN)
	for _, conn := range []*pgx.Conn{c.a, c.b} {
		if _, err := sql.Install(context.Background(), conn, sql.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// shard creates shard n on the source with a typical set of objects and
// activates it; extra DDL runs with search_path set to the shard.
func (c *cluster) shard(n int, extra string) string {
	c.t.Helper()
	schema := sql.DefaultNaming.SchemaName(n)
	pgtest.Exec(c.t, c.a, fmt.Sprintf("SELECT microsharding.microsharding_ensure_exist(%d)", n))
	pgtest.Exec(c.t, c.a, "SET search_path = "+schema+"; "+extra+"; RESET search_path")
	pgtest.Exec(c.t, c.a, fmt.Sprintf("SELECT microsharding.microsharding_ensure_active(%d)", n))
	return schema
}

func (c *cluster) spec(n int, activate bool) MoveSpec {
	return MoveSpec{
		Shard: n, Activate: activate,
		From: Endpoint{Name: "a", DSN: c.src.DSN},
		To:   Endpoint{Name: "b", DSN: c.dst.DSN},
		Options: MoveOptions{
			PollInterval: 50 * time.Millisecond,
		},
	}
}

func (c *cluster) active(conn *pgx.Conn) []string {
	c.t.Helper()
	var out []string
	if err := conn.QueryRow(context.Background(), "SELECT microsharding.microsharding_list_active_shards()::text[]").Scan(&out); err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *cluster) schemas(conn *pgx.Conn, like string) []string {
	c.t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 ORDER BY 1", like)
	if err != nil {
		c.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

// noArtifacts fails the test if any publication, slot or subscription
// exists on either node.
func (c *cluster) noArtifacts() {
	c.t.Helper()
	ctx := context.Background()
	for _, n := range []struct {
		name string
		conn *pgx.Conn
	}{{"source", c.a}, {"destination", c.b}} {
		var pubs, slots, subs []string
		n.conn.QueryRow(ctx, "SELECT COALESCE(array_agg(pubname::text), '{}') FROM pg_publication").Scan(&pubs)
		n.conn.QueryRow(ctx, "SELECT COALESCE(array_agg(slot_name::text), '{}') FROM pg_replication_slots WHERE database = current_database()").Scan(&slots)
		n.conn.QueryRow(ctx, "SELECT COALESCE(array_agg(subname::text), '{}') FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())").Scan(&subs)
		if len(pubs)+len(slots)+len(subs) > 0 {
			c.t.Errorf("%s has leftovers: publications %v, slots %v, subscriptions %v", n.name, pubs, slots, subs)
		}
	}
}

// checksum returns the row count and an md5 of the ordered content of a
// table.
func checksum(t *testing.T, conn *pgx.Conn, table string) (int64, string) {
	t.Helper()
	var n int64
	var sum *string
	err := conn.QueryRow(context.Background(), "SELECT count(*), md5(string_agg(x::text, ',' ORDER BY x::text)) FROM "+table+" x").Scan(&n, &sum)
	if err != nil {
		t.Fatalf("checksum %s: %v", table, err)
	}
	if sum == nil {
		return n, ""
	}
	return n, *sum
}

func (c *cluster) sameContent(srcSchema, dstSchema string, tables ...string) {
	c.t.Helper()
	for _, tbl := range tables {
		na, sa := checksum(c.t, c.a, pgx.Identifier{srcSchema, tbl}.Sanitize())
		nb, sb := checksum(c.t, c.b, pgx.Identifier{dstSchema, tbl}.Sanitize())
		if na != nb || sa != sb {
			c.t.Errorf("table %s differs: source %d rows %s, destination %d rows %s", tbl, na, sa, nb, sb)
		}
	}
}

// events collects a move's events for assertions.
type events struct {
	list chan Event
}

func newEvents() *events { return &events{list: make(chan Event, 10000)} }

func (e *events) Report(ev Event) {
	select {
	case e.list <- ev:
	default:
	}
}

func (e *events) all() []Event {
	var out []Event
	for {
		select {
		case ev := <-e.list:
			out = append(out, ev)
		default:
			return out
		}
	}
}

func (e *events) text() string {
	var b strings.Builder
	for _, ev := range e.all() {
		b.WriteString(FormatEvent(ev))
		b.WriteString("\n")
	}
	return b.String()
}
