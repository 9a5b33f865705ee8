// Command demo runs the local servers of `make demo`: three throwaway
// PostgreSQL servers under a project-local directory that outlive this
// process until `demo stop`.
//
//	go run ./internal/demo start [-dir .demo]   start (or reuse) and write DIR/env
//	go run ./internal/demo seed  [-dir .demo]   fill the active shards with rows
//	go run ./internal/demo stop  [-dir .demo]   stop the servers and remove DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

var nodeNames = []string{"a", "b", "c"}

const database = "app"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: demo start|seed|stop [-dir DIR]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", ".demo", "directory of the demo servers")
	rows := fs.Int("rows", 2000, "rows per shard and table for seed")
	fs.Parse(os.Args[2:])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	switch os.Args[1] {
	case "start":
		err = start(ctx, *dir)
	case "seed":
		err = seed(ctx, *dir, *rows)
	case "stop":
		err = stop(*dir)
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func envFile(dir string) string { return filepath.Join(dir, "env") }

// readEnv returns the node DSNs a previous start wrote.
func readEnv(dir string) (map[string]string, error) {
	data, err := os.ReadFile(envFile(dir))
	if err != nil {
		return nil, err
	}
	dsns := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.HasPrefix(k, "PGMS_DSN_") {
			dsns[strings.ToLower(strings.TrimPrefix(k, "PGMS_DSN_"))] = strings.Trim(v, "'")
		}
	}
	return dsns, nil
}

func start(ctx context.Context, dir string) error {
	if dsns, err := readEnv(dir); err == nil && len(dsns) == len(nodeNames) {
		alive := true
		for _, d := range dsns {
			n, err := pgutil.Connect(ctx, d)
			if err != nil {
				alive = false
				break
			}
			n.Close()
		}
		if alive {
			fmt.Printf("demo servers already running (%s)\n", envFile(dir))
			return nil
		}
		stop(dir)
	}
	servers, err := pgtest.StartDetached(ctx, dir, nodeNames, pgtest.Options{})
	if err != nil {
		return err
	}
	var env strings.Builder
	env.WriteString("# Node DSNs of the pgms demo servers; source this file.\n")
	var all []string
	for i, s := range servers {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "CREATE DATABASE "+database)
		conn.Close(ctx)
		if err != nil {
			return fmt.Errorf("node %s: %w", nodeNames[i], err)
		}
		dsn := s.DSN(database)
		all = append(all, dsn)
		fmt.Fprintf(&env, "export PGMS_DSN_%s='%s'\n", strings.ToUpper(nodeNames[i]), dsn)
		fmt.Printf("node %s: %s (data in %s)\n", nodeNames[i], s.Addr(), s.DataDir)
	}
	fmt.Fprintf(&env, "export PGMS_DSNS='%s'\n", strings.Join(all, ","))
	return os.WriteFile(envFile(dir), []byte(env.String()), 0o644)
}

// seed inserts rows into every active shard's tables, more into some shards
// than others so that weights differ.
func seed(ctx context.Context, dir string, rows int) error {
	dsns, err := readEnv(dir)
	if err != nil {
		return fmt.Errorf("no demo servers (run start first): %w", err)
	}
	for _, name := range nodeNames {
		n, err := pgutil.Connect(ctx, dsns[name])
		if err != nil {
			return err
		}
		shards, err := state.ListActiveShards(ctx, n.Conn, sql.DefaultSchema)
		if err != nil {
			n.Close()
			return fmt.Errorf("node %s: %w", name, err)
		}
		for i, schema := range shards {
			count := rows * (1 + i%3)
			users := pgutil.Quote(schema, "users")
			orders := pgutil.Quote(schema, "orders")
			_, err := n.Conn.Exec(ctx, `INSERT INTO `+users+` (name, email)
				SELECT 'user ' || g, 'user' || g || '@example.com' FROM generate_series(1, $1) g`, count)
			if err == nil {
				_, err = n.Conn.Exec(ctx, `INSERT INTO `+orders+` (user_id, total_cents)
					SELECT u.id, (random() * 10000)::int FROM `+users+` u, generate_series(1, 3)`)
			}
			if err != nil {
				n.Close()
				return fmt.Errorf("node %s shard %s: %s", name, schema, pgutil.Describe(err))
			}
		}
		n.Close()
	}
	return nil
}

func stop(dir string) error {
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		fmt.Println("no demo servers")
		return nil
	}
	if err := pgtest.StopDetached(dir); err != nil {
		return err
	}
	fmt.Printf("demo servers stopped; removing %s\n", dir)
	return os.RemoveAll(dir)
}
