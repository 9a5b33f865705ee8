package sql

import (
	"context"
	"os"
	"testing"

	"github.com/pgms-dev/pgms/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, 2)) }

func TestSmoke(t *testing.T) {
	db := pgtest.Database(t)
	conn := pgtest.Connect(t, db.DSN)
	ctx := context.Background()
	res, err := Install(ctx, conn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	pgtest.Exec(t, conn, "SET search_path = microsharding")
	var s string
	if err := conn.QueryRow(ctx, "SELECT array_agg(x)::text FROM microsharding_ensure_exist(0, 3) x").Scan(&s); err != nil {
		t.Fatal(err)
	}
	t.Log(s)
	if err := conn.QueryRow(ctx, "SELECT array_agg(x)::text FROM microsharding_ensure_active(1, 2) x").Scan(&s); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT microsharding_list_active_shards()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	t.Log(s)
	res, err = Install(ctx, conn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT microsharding.microsharding_list_active_shards()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	t.Log(s, res)
}
