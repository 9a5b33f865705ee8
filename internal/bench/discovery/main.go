// Command discovery measures the hot path applications call on every node,
// microsharding_list_active_shards(), against SELECT 1 on the same
// connection as the baseline, with a configurable number of active shards.
//
//	go run ./internal/bench/discovery [-shards 1000] [-duration 3s]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/sql"
)

func main() {
	shards := flag.Int("shards", 1000, "active shards on the node")
	schemas := flag.Int("other-schemas", 200, "inactive shard schemas that also exist")
	duration := flag.Duration("duration", 3*time.Second, "time per measurement")
	rounds := flag.Int("rounds", 3, "measurements per query (the best is kept)")
	flag.Parse()
	if err := run(*shards, *schemas, *duration, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "discovery:", err)
		os.Exit(1)
	}
}

func run(shards, others int, duration time.Duration, rounds int) error {
	ctx := context.Background()
	cluster, err := pgtest.Start(ctx, 1, pgtest.Options{})
	if err != nil {
		return err
	}
	defer cluster.Close()
	conn, err := pgx.Connect(ctx, cluster.Servers[0].DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := sql.Install(ctx, conn, sql.Options{}); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM microsharding.microsharding_ensure_exist(1, $1)", shards+others); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM microsharding.microsharding_ensure_active(1, $1)", shards); err != nil {
		return err
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT cardinality(microsharding.microsharding_list_active_shards())").Scan(&n); err != nil {
		return err
	}
	if n != shards {
		return fmt.Errorf("%d shards active, want %d", n, shards)
	}

	// For comparison: the same answer computed by filtering pg_namespace with
	// = ANY(list), the query shape pg-microsharding's function uses.
	if _, err := conn.Exec(ctx, `
		CREATE FUNCTION public.filter_by_any() RETURNS regnamespace[] LANGUAGE sql STABLE AS $$
		  SELECT COALESCE(array_agg(nspname::regnamespace ORDER BY nspname), '{}')
		  FROM pg_namespace WHERE nspname = ANY(microsharding.microsharding_active_shards_()) $$`); err != nil {
		return err
	}
	queries := []struct{ name, sql string }{
		{"SELECT 1 (baseline)", "SELECT 1"},
		{fmt.Sprintf("list_active_shards(), %d active", shards), "SELECT microsharding.microsharding_list_active_shards()"},
		{"same, filtered with = ANY()", "SELECT public.filter_by_any()"},
	}
	rates := make([]float64, len(queries))
	for i, q := range queries {
		for r := 0; r < rounds; r++ {
			rate, err := measure(ctx, conn, q.sql, duration)
			if err != nil {
				return fmt.Errorf("%s: %w", q.name, err)
			}
			rates[i] = max(rates[i], rate)
		}
	}
	fmt.Printf("discovery benchmark: one connection, extended protocol (prepared), PostgreSQL %d, best of %d × %v\n\n", cluster.Servers[0].Version, rounds, duration)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "query\tcalls/s\tµs/call\tvs SELECT 1\t")
	for i, q := range queries {
		fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.2f×\t\n", q.name, rates[i], 1e6/rates[i], rates[i]/rates[0])
	}
	return tw.Flush()
}

func measure(ctx context.Context, conn *pgx.Conn, query string, d time.Duration) (float64, error) {
	var sink any
	if err := conn.QueryRow(ctx, query).Scan(&sink); err != nil { // prepare and warm up
		return 0, err
	}
	calls := 0
	start := time.Now()
	for time.Since(start) < d {
		for i := 0; i < 100; i++ {
			if err := conn.QueryRow(ctx, query).Scan(&sink); err != nil {
				return 0, err
			}
		}
		calls += 100
	}
	return float64(calls) / time.Since(start).Seconds(), nil
}
