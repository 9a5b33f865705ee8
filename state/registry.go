package state

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
)

// The node registry remembers every node pgms has managed, so that a node
// that leaves the topology files is still visited: a shard on it is live
// data, and re-pointing it elsewhere must become a move, never a second
// allocation. Every managed node keeps the whole registry (a few rows), so
// that it survives the loss of any one node, the state node included; a
// plan reads the union of what the nodes in the files know.
//
// A node is identified by an id pgms gives it on first registration, kept
// in the library schema. A standby carries the same id, so a failover
// keeps the node's identity; a server that answers at a node's address
// with another id (or none) is another server.

const registryDDL = `
CREATE TABLE IF NOT EXISTS %[1]s.pgms_node (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  created_at  timestamptz NOT NULL DEFAULT now(),
  only_one    boolean NOT NULL DEFAULT true UNIQUE CHECK (only_one)
);
CREATE TABLE IF NOT EXISTS %[1]s.pgms_nodes (
  node_id           uuid PRIMARY KEY,
  name              text NOT NULL,
  addr              text NOT NULL,
  dsn               text NOT NULL,
  system_identifier text NOT NULL DEFAULT '',
  database          text NOT NULL DEFAULT '',
  registered_at     timestamptz NOT NULL DEFAULT now(),
  seen_at           timestamptz NOT NULL DEFAULT now()
);
`

// RegisteredNode is a node the registry knows.
type RegisteredNode struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Addr string `json:"addr"`
	// DSN is how the node was reached, without its password: enough to
	// reach it with .pgpass, PGPASSWORD or certificate authentication.
	DSN              string    `json:"-"`
	SystemIdentifier string    `json:"system_identifier"`
	Database         string    `json:"database"`
	RegisteredAt     time.Time `json:"registered_at"`
}

// Identity is what a node says about itself now.
type Identity struct {
	// ID is pgms's id of the node; empty when it has none yet.
	ID               string
	SystemIdentifier string
	Database         string
	// Started is the postmaster's start time: with the system identifier
	// and the database it tells one running server from another, even
	// when one was cloned from the other.
	Started time.Time
}

// SameServer reports whether two identities were read from the same
// running server and database.
func (a Identity) SameServer(b Identity) bool {
	return a.SystemIdentifier == b.SystemIdentifier && a.Database == b.Database && a.Started.Equal(b.Started)
}

// ReadIdentity reads a node's identity; ID stays empty while the node has
// none.
func ReadIdentity(ctx context.Context, q Querier, lib string) (Identity, error) {
	var id Identity
	err := q.QueryRow(ctx, `SELECT (SELECT system_identifier::text FROM pg_catalog.pg_control_system()), current_database(), pg_catalog.pg_postmaster_start_time()`).
		Scan(&id.SystemIdentifier, &id.Database, &id.Started)
	if err != nil {
		return id, pgutil.Wrap(err, "read the server's identity")
	}
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgutil.Quote(lib, "pgms_node")).Scan(&exists); err != nil || !exists {
		return id, err
	}
	err = q.QueryRow(ctx, "SELECT id::text FROM "+pgutil.Quote(lib, "pgms_node")).Scan(&id.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil
	}
	return id, err
}

// ReadRegistry returns the nodes a node's registry holds, by name; empty
// without a registry.
func ReadRegistry(ctx context.Context, q Querier, lib string) ([]RegisteredNode, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgutil.Quote(lib, "pgms_nodes")).Scan(&exists); err != nil || !exists {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT node_id::text, name, addr, dsn, system_identifier, database, registered_at
		FROM `+pgutil.Quote(lib, "pgms_nodes")+` ORDER BY name, node_id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (RegisteredNode, error) {
		var n RegisteredNode
		err := r.Scan(&n.ID, &n.Name, &n.Addr, &n.DSN, &n.SystemIdentifier, &n.Database, &n.RegisteredAt)
		return n, err
	})
}

// EnsureIdentity gives the node its pgms id if it has none, creating the
// registry tables, and returns its identity.
func EnsureIdentity(ctx context.Context, conn *pgx.Conn, lib string) (Identity, error) {
	if err := ensureTable(ctx, conn, lib, registryDDL, "pgms_nodes"); err != nil {
		return Identity{}, err
	}
	if _, err := conn.Exec(ctx, "INSERT INTO "+pgutil.Quote(lib, "pgms_node")+" DEFAULT VALUES ON CONFLICT DO NOTHING"); err != nil {
		return Identity{}, err
	}
	return ReadIdentity(ctx, conn, lib)
}

// RegistryEntry is a node to record: how to reach it and who it is.
type RegistryEntry struct {
	Name     string
	DSN      string // may hold a password: it is removed before storing
	Identity Identity
	// Authoritative names come from the topology files and replace the
	// recorded name; others (a DSN given on the command line) only name a
	// node the registry did not know.
	Authoritative bool
}

// Register records entries in the registry of the node conn is connected
// to (creating it when missing). Entries without an id are skipped.
func Register(ctx context.Context, conn *pgx.Conn, lib string, entries []RegistryEntry) error {
	if err := ensureTable(ctx, conn, lib, registryDDL, "pgms_nodes"); err != nil {
		return err
	}
	sorted := append([]RegistryEntry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Identity.ID < sorted[j].Identity.ID })
	table := pgutil.Quote(lib, "pgms_nodes")
	for _, e := range sorted {
		if e.Identity.ID == "" {
			continue
		}
		onConflict := "UPDATE SET addr = excluded.addr, dsn = excluded.dsn, system_identifier = excluded.system_identifier, database = excluded.database, seen_at = now()"
		if e.Authoritative {
			onConflict += ", name = excluded.name"
		}
		_, err := conn.Exec(ctx, `INSERT INTO `+table+` (node_id, name, addr, dsn, system_identifier, database)
			VALUES ($1::uuid, $2, $3, $4, $5, $6) ON CONFLICT (node_id) DO `+onConflict,
			e.Identity.ID, e.Name, dsn.Name(e.DSN), dsn.WithoutPassword(e.DSN), e.Identity.SystemIdentifier, e.Identity.Database)
		if err != nil {
			return fmt.Errorf("record node %s: %w", e.Name, err)
		}
	}
	return nil
}

// Unregister removes a node from the registry of the node conn is
// connected to.
func Unregister(ctx context.Context, conn *pgx.Conn, lib, nodeID string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgutil.Quote(lib, "pgms_nodes")).Scan(&exists); err != nil || !exists {
		return err
	}
	_, err := conn.Exec(ctx, "DELETE FROM "+pgutil.Quote(lib, "pgms_nodes")+" WHERE node_id = $1::uuid", nodeID)
	return err
}
