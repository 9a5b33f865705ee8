// Command discovery measures the hot path applications call on every node,
// microsharding_list_active_shards(), with a configurable number of active
// shards, next to baselines measured on the same connection in the same
// run:
//
//   - SELECT 1, the cost of a round trip;
//   - the floor: SELECT '{…}'::text[], returning the same names as a
//     constant;
//   - the type's floor: SELECT '{…}'::regnamespace[], the same constant in
//     the type the function returns. Printing a regnamespace (a catalog
//     lookup and identifier quoting per element) costs about twice as much
//     as printing a text, so in text results no function returning
//     regnamespace[] can come closer to the text[] floor than this does;
//   - the library version 2 function and pg-microsharding's = ANY() query
//     shape, for comparison.
//
// Results are read in text format, as psql and most drivers (node-postgres)
// do; -binary reads them in binary. Each call is measured prepared (a named
// statement, planned once) and through the simple query protocol (planned
// on every call). Within a round the queries take turns of 50 ms, and
// ratios are taken within each round, so that other load on the machine
// hits all of them alike; the medians over the rounds are printed.
//
//	go run ./internal/bench/discovery [-shards 1000] [-rounds 7] [-duration 500ms] [-binary] [-alternatives]
//
// -alternatives also measures the designs considered for the function (see
// alternatives below), with a third mode where the application switches
// search_path before each call.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/sql"
)

func main() {
	shards := flag.Int("shards", 1000, "active shards on the node")
	others := flag.Int("other-schemas", 200, "inactive shard schemas that also exist")
	duration := flag.Duration("duration", 500*time.Millisecond, "time per query per round")
	rounds := flag.Int("rounds", 7, "rounds; medians are reported")
	binary := flag.Bool("binary", false, "read results in binary format instead of text")
	alts := flag.Bool("alternatives", false, "also measure the alternative designs")
	flag.Parse()
	cfg := config{shards: *shards, others: *others, slice: *duration, rounds: *rounds, binary: *binary, alternatives: *alts}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "discovery:", err)
		os.Exit(1)
	}
}

type config struct {
	shards, others int
	slice          time.Duration
	rounds         int
	binary         bool
	alternatives   bool
}

// query is one measured statement. The first three are the baselines every
// ratio refers to.
type query struct{ name, sql string }

const (
	baseline  = 0 // SELECT 1
	floor     = 1 // constant text[]
	typeFloor = 2 // constant regnamespace[]
	listQuery = 3 // microsharding_list_active_shards()
)

// mode is how the application issues the call.
type mode struct {
	name       string
	simple     bool // simple query protocol: parsed and planned on every call
	switchPath bool // SET search_path to another shard before every call
}

func run(cfg config) error {
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
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM microsharding.microsharding_ensure_exist(1, $1)", cfg.shards+cfg.others); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM microsharding.microsharding_ensure_active(1, $1)", cfg.shards); err != nil {
		return err
	}
	var n int
	var names string
	if err := conn.QueryRow(ctx, "SELECT cardinality(microsharding.microsharding_list_active_shards()), microsharding.microsharding_active_shards_()::text").Scan(&n, &names); err != nil {
		return err
	}
	if n != cfg.shards {
		return fmt.Errorf("%d shards active, want %d", n, cfg.shards)
	}
	if _, err := conn.Exec(ctx, comparisons); err != nil {
		return err
	}

	queries := []query{
		{"SELECT 1", "SELECT 1"},
		{fmt.Sprintf("floor: constant %d-name text[]", cfg.shards), "SELECT '" + names + "'::text[]"},
		{"type's floor: same as regnamespace[]", "SELECT '" + names + "'::regnamespace[]"},
		{fmt.Sprintf("list_active_shards(), %d active", cfg.shards), "SELECT microsharding.microsharding_list_active_shards()"},
		{"library v2: cast of the baked names", "SELECT bench.list_v2()"},
		{"pg-microsharding: = ANY() over pg_namespace", "SELECT bench.list_by_any()"},
	}
	modes := []mode{{name: "prepared"}, {name: "simple protocol", simple: true}}
	if cfg.alternatives {
		if _, err := conn.Exec(ctx, alternatives(names)); err != nil {
			return err
		}
		queries = append(queries, alternativeQueries...)
		modes = append(modes, mode{name: "prepared, search_path switched before each call", switchPath: true})
	}

	// rates[mode][query][round]
	rates := make([][][]float64, len(modes))
	for m := range modes {
		rates[m] = make([][]float64, len(queries))
	}
	for r := 0; r < cfg.rounds; r++ {
		for m, md := range modes {
			round, err := measureRound(ctx, conn.PgConn(), queries, md, cfg)
			if err != nil {
				return fmt.Errorf("%s: %w", md.name, err)
			}
			for i, rate := range round {
				rates[m][i] = append(rates[m][i], rate)
			}
		}
	}

	format := "text"
	if cfg.binary {
		format = "binary"
	}
	fmt.Printf("discovery benchmark: PostgreSQL %d, one connection, %s results, %d active of %d shard schemas; medians of %d rounds × %v per query\n",
		cluster.Servers[0].Version, format, cfg.shards, cfg.shards+cfg.others, cfg.rounds, cfg.slice)
	for m, md := range modes {
		if md.simple && cfg.binary {
			fmt.Printf("\n%s: results always in text format\n", md.name)
		} else {
			fmt.Printf("\n%s:\n", md.name)
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "query\tcalls/s\tµs/call\t× SELECT 1\t× floor\t× type's floor\t")
		for i, q := range queries {
			rate := median(rates[m][i])
			fmt.Fprintf(tw, "%s\t%.0f\t%.1f\t%.2f\t%.2f\t%.2f\t\n", q.name, rate, 1e6/rate,
				medianRatio(rates[m][i], rates[m][baseline]),
				medianRatio(rates[m][i], rates[m][floor]),
				medianRatio(rates[m][i], rates[m][typeFloor]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		ratios := ratiosOf(rates[m][listQuery], rates[m][floor])
		fmt.Printf("list_active_shards() / floor per round: %s\n", formatRatios(ratios))
	}
	return nil
}

// comparisons are the earlier ways of answering, computed from the same
// baked list: library version 2's function (a cast of the names, each
// resolved through the catalog cache on every call, with a fallback when a
// schema is missing) and pg-microsharding's query shape.
const comparisons = `
	CREATE SCHEMA bench;
	CREATE FUNCTION bench.list_v2() RETURNS regnamespace[] LANGUAGE plpgsql STABLE
	SET search_path = microsharding AS $$
	BEGIN
	  RETURN microsharding_active_shards_()::regnamespace[];
	EXCEPTION WHEN invalid_schema_name THEN
	  RETURN (
	    SELECT COALESCE(array_agg(n.oid::regnamespace ORDER BY n.nspname), '{}')
	    FROM unnest(microsharding_active_shards_()) AS a(name)
	    JOIN pg_catalog.pg_namespace n ON n.nspname = a.name);
	END;
	$$;
	CREATE FUNCTION bench.list_by_any() RETURNS regnamespace[] LANGUAGE sql
	SET search_path = microsharding AS $$
	  SELECT COALESCE(array_agg(nspname::regnamespace ORDER BY nspname), '{}')
	  FROM pg_catalog.pg_namespace WHERE nspname = ANY(microsharding_active_shards_())
	$$;`

// The designs considered for microsharding_list_active_shards(), each
// answering from the same list:
//
//   - inline_literal: an inlinable SQL function whose body is the
//     regnamespace[] literal. Nothing is left to do per call in a prepared
//     statement, but once an active schema is dropped, every plan made
//     after fails to parse the literal ("schema does not exist") — and
//     baking OIDs instead would print the dropped one as a number.
//   - inline_folded: an inlinable SQL function calling
//     microsharding_existing_shards_() on the baked names, folded into the
//     caller's plan: free in prepared statements, but a statement that is
//     not prepared reads the catalog on every call.
//   - plpgsql_immutable: the chosen body declared IMMUTABLE, so that the
//     caller's planner folds it too; simple-protocol calls are cheap, but
//     the caller's plan must then be invalidated when the list changes,
//     which re-creating microsharding_active_shards_() alone does not do.
//   - plpgsql_no_set: the chosen function without SET search_path: the
//     plan inside is remade whenever the caller's search_path differs from
//     the last call's.
const alternativesTemplate = `
	CREATE SCHEMA bench_alt;
	CREATE FUNCTION bench_alt.inline_literal() RETURNS pg_catalog.regnamespace[] LANGUAGE sql IMMUTABLE
	AS $$ SELECT %[1]s::pg_catalog.regnamespace[] $$;
	CREATE FUNCTION bench_alt.inline_folded() RETURNS pg_catalog.regnamespace[] LANGUAGE sql IMMUTABLE
	AS $$ SELECT microsharding.microsharding_existing_shards_(%[1]s::pg_catalog.text[]) $$;
	CREATE FUNCTION bench_alt.plpgsql_immutable() RETURNS regnamespace[] LANGUAGE plpgsql IMMUTABLE
	SET search_path = microsharding AS $$
	BEGIN
	  RETURN microsharding_existing_shards_(microsharding_active_shards_());
	END;
	$$;
	CREATE FUNCTION bench_alt.plpgsql_no_set() RETURNS regnamespace[] LANGUAGE plpgsql STABLE AS $$
	BEGIN
	  RETURN microsharding.microsharding_existing_shards_(microsharding.microsharding_active_shards_());
	END;
	$$;`

var alternativeQueries = []query{
	{"alt: inlined regnamespace[] literal", "SELECT bench_alt.inline_literal()"},
	{"alt: inlined, catalog read folded", "SELECT bench_alt.inline_folded()"},
	{"alt: PL/pgSQL IMMUTABLE", "SELECT bench_alt.plpgsql_immutable()"},
	{"alt: PL/pgSQL without SET search_path", "SELECT bench_alt.plpgsql_no_set()"},
}

func alternatives(names string) string {
	return fmt.Sprintf(alternativesTemplate, "'"+strings.ReplaceAll(names, "'", "''")+"'")
}

// measureRound measures every query in one mode and returns their calls
// per second. The queries take turns, for cfg.slice per query in all: load
// from elsewhere on the machine then falls on all of them alike. Results are read off the wire without
// being decoded, so that the client's decoding (pgx would decode a text[]
// into strings, and not a regnamespace[]) does not weigh on one query more
// than another.
func measureRound(ctx context.Context, pc *pgconn.PgConn, queries []query, md mode, cfg config) ([]float64, error) {
	formats := []int16{pgx.TextFormatCode}
	if cfg.binary {
		formats = []int16{pgx.BinaryFormatCode}
	}
	stmt := func(i int) string { return fmt.Sprintf("bench_discovery_%d", i) }
	path := 0
	call := func(i int) error {
		if md.switchPath {
			path++
			if _, err := pc.Exec(ctx, fmt.Sprintf("SET search_path = sh%04d, public", 1+path%2)).ReadAll(); err != nil {
				return err
			}
		}
		if md.simple {
			_, err := pc.Exec(ctx, queries[i].sql).ReadAll()
			return err
		}
		return pc.ExecPrepared(ctx, stmt(i), nil, nil, formats).Read().Err
	}
	for i, q := range queries {
		if !md.simple {
			if err := pc.Deallocate(ctx, stmt(i)); err != nil {
				return nil, err
			}
			if _, err := pc.Prepare(ctx, stmt(i), q.sql, nil); err != nil {
				return nil, fmt.Errorf("%s: %w", q.name, err)
			}
		}
		if err := call(i); err != nil { // plan and warm up
			return nil, fmt.Errorf("%s: %w", q.name, err)
		}
	}
	// A turn lasts long enough for a query to run warm (after the slowest
	// ones, the first calls of the next are slower) and short enough for
	// the load to change little between turns.
	const turn = 50 * time.Millisecond
	calls := make([]int, len(queries))
	spent := make([]time.Duration, len(queries))
	for t := time.Duration(0); t < cfg.slice; t += turn {
		for i, q := range queries {
			start := time.Now()
			for time.Since(start) < turn {
				if err := call(i); err != nil {
					return nil, fmt.Errorf("%s: %w", q.name, err)
				}
				calls[i]++
			}
			spent[i] += time.Since(start)
		}
	}
	rates := make([]float64, len(queries))
	for i := range queries {
		rates[i] = float64(calls[i]) / spent[i].Seconds()
	}
	return rates, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ratiosOf(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] / b[i]
	}
	return out
}

// medianRatio is the median of the per-round ratios a/b: a ratio taken
// within a round compares measurements made under the same load.
func medianRatio(a, b []float64) float64 { return median(ratiosOf(a, b)) }

func formatRatios(v []float64) string {
	parts := make([]string, len(v))
	for i, r := range v {
		parts[i] = fmt.Sprintf("%.2f", r)
	}
	return strings.Join(parts, " ")
}
