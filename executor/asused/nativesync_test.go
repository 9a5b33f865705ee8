package asused

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgtest"
)

// BenchmarkNativeSync measures what PostgreSQL 16's binary initial
// synchronisation gives the native copy: a subscription with copy_data =
// true copies the tables of a shard of about PGMS_BENCH_MB megabytes
// (default 200) into tables that have their indexes, once with binary =
// false and once with binary = true, in turns. It reports the median time
// of a complete copy in each mode (from CREATE SUBSCRIPTION to every table
// ready) and the median of the rounds' binary/text ratios.
//
//	PGMS_TEST_PG_VERSION=17 go test -run x -bench NativeSync -benchtime 5x ./executor/asused
func BenchmarkNativeSync(b *testing.B) {
	servers := pgtest.StartServers(b, 2, pgtest.Options{})
	if servers[0].Version < 16 {
		b.Skipf("PostgreSQL %d copies the tables in text whatever binary says; 16 is the first to copy them in binary", servers[0].Version)
	}
	mb := 200
	if v, err := strconv.Atoi(os.Getenv("PGMS_BENCH_MB")); err == nil && v > 0 {
		mb = v
	}
	dbs := pgtest.DatabasesOn(b, servers)
	src, dst := pgtest.Connect(b, dbs[0].DSN), pgtest.Connect(b, dbs[1].DSN)
	const ddl = `CREATE TABLE orders (id bigint PRIMARY KEY, customer bigint NOT NULL, amount numeric(12,2), status text NOT NULL, created timestamptz NOT NULL, note text);
		CREATE INDEX orders_customer ON orders (customer);
		CREATE TABLE events (id bigint PRIMARY KEY, order_id bigint NOT NULL, kind text NOT NULL, at timestamptz NOT NULL, data jsonb);
		CREATE INDEX events_order ON events (order_id);
		CREATE TABLE items (id bigint PRIMARY KEY, val bigint NOT NULL, tags int[], price float8)`
	pgtest.Exec(b, src, ddl)
	pgtest.Exec(b, dst, ddl)
	// About 120 bytes of heap a row in each table.
	rows := int64(mb) << 20 / 3 / 120
	pgtest.Exec(b, src, fmt.Sprintf(`INSERT INTO orders SELECT g, g %% 100000, (g %% 10000) / 7.0, 'paid', '2026-01-01'::timestamptz + g * interval '1 second', md5(g::text) FROM generate_series(1, %d) g;
		INSERT INTO events SELECT g, g / 3, 'shipped', '2026-01-01'::timestamptz + g * interval '1 second', jsonb_build_object('n', g, 'm', md5(g::text)) FROM generate_series(1, %d) g;
		INSERT INTO items SELECT g, g * 7, ARRAY[g %% 10, g %% 100, g %% 1000], g / 3.0 FROM generate_series(1, %d) g;
		CREATE PUBLICATION bench FOR TABLE orders, events, items`, rows, rows, rows))
	pgtest.Exec(b, src, "VACUUM ANALYZE orders, events, items")
	var size int64
	if err := src.QueryRow(context.Background(), "SELECT sum(pg_table_size(c))::bigint FROM unnest('{orders,events,items}'::regclass[]) c").Scan(&size); err != nil {
		b.Fatal(err)
	}
	conninfo := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=disable", servers[0].Host, servers[0].Port, dbs[0].Name, pgtest.Superuser)
	// The two modes take turns within each round, so that other work on
	// the machine weighs on both alike; the ratio is taken per round.
	var text, binary, ratio []float64
	b.ResetTimer()
	for b.Loop() {
		tt := syncOnce(b, dst, conninfo, false)
		bt := syncOnce(b, dst, conninfo, true)
		text, binary, ratio = append(text, tt.Seconds()), append(binary, bt.Seconds()), append(ratio, bt.Seconds()/tt.Seconds())
	}
	b.ReportMetric(median(text), "text-s/copy")
	b.ReportMetric(median(binary), "binary-s/copy")
	b.ReportMetric(median(ratio), "binary/text")
	b.ReportMetric(float64(size)/1e6, "MB")
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// syncOnce copies the published tables into the destination's emptied
// tables through a new subscription, removes the subscription and returns
// how long the copy took.
func syncOnce(b *testing.B, dst *pgx.Conn, conninfo string, binary bool) time.Duration {
	ctx := context.Background()
	pgtest.Exec(b, dst, "TRUNCATE orders, events, items; CHECKPOINT")
	began := time.Now()
	pgtest.Exec(b, dst, fmt.Sprintf("CREATE SUBSCRIPTION bench CONNECTION '%s' PUBLICATION bench WITH (binary = %t)", conninfo, binary))
	for {
		var pending int
		if err := dst.QueryRow(ctx, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'").Scan(&pending); err != nil {
			b.Fatal(err)
		}
		if pending == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(began)
	pgtest.Exec(b, dst, "DROP SUBSCRIPTION bench")
	return took
}
