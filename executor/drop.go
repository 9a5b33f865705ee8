package executor

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgutil"
)

// DropShards drops the schemas of shards from..to on node with everything
// in them: the explicit removal a topology's removed block asks for. Each
// shard goes in its own transaction, deactivated first, so that a failure
// leaves every shard either whole or gone. Absent shards are skipped. It
// returns the schemas it dropped.
func DropShards(ctx context.Context, node *pgutil.Node, from, to int, librarySchema string) ([]string, error) {
	lib := libraryOf(librarySchema)
	what := fmt.Sprintf("drop %s on node %s", shardRange(from, to), node.Name)
	if err := checkRange(from, to); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var dropped []string
	for n := from; n <= to; n++ {
		if err := ctx.Err(); err != nil {
			return dropped, err
		}
		schema, err := dropShard(ctx, node.Conn, lib, n)
		if err != nil {
			return dropped, pgutil.Wrap(err, "%s: shard %d", what, n)
		}
		if schema != "" {
			dropped = append(dropped, schema)
		}
	}
	return dropped, nil
}

func dropShard(ctx context.Context, conn *pgx.Conn, lib string, n int) (string, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	var schema string
	var exists bool
	err = tx.QueryRow(ctx, "SELECT s, to_regnamespace(quote_ident(s)) IS NOT NULL FROM "+pgutil.Quote(lib, "microsharding_schema_name_")+"($1) s", n).Scan(&schema, &exists)
	if err != nil || !exists {
		return "", err
	}
	if _, err := tx.Exec(ctx, "SELECT count(*) FROM "+pgutil.Quote(lib, "microsharding_ensure_inactive")+"($1)", n); err != nil {
		return "", err
	}
	if _, err := tx.Exec(ctx, "DROP SCHEMA "+pgutil.Quote(schema)+" CASCADE"); err != nil {
		return "", err
	}
	if _, err := tx.Exec(ctx, "SELECT "+pgutil.Quote(lib, "microsharding_ensure_active_shards_")+"()"); err != nil {
		return "", err
	}
	return schema, tx.Commit(ctx)
}
