// Package state reads the live cluster: which shards exist and are active on
// each node, their weights, the replication objects a move left behind, and
// the apply journal and lock kept on the state node.
//
// state knows nothing of topology files (package config) and never changes a
// shard; it only reads, except for the journal and lock tables it owns.
package state

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is what the readers here need of a connection or transaction.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}
