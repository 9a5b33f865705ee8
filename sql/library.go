// Package sql embeds the pgms stored-function library and installs it.
//
// The library keeps the function names, arguments and meaning of the
// @clickup/pg-microsharding API, so that applications and clusters managed
// by that tool keep working when pgms takes over. Installing is idempotent
// and upgrades in place; it never touches the list of active shards.
package sql

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultSchema is the schema the library lives in unless configured
// otherwise; pg-microsharding uses the same name.
const DefaultSchema = "microsharding"

// Version is the version of the embedded library, as returned by
// microsharding_version() after install. Installs of pg-microsharding itself
// have no version function and read as version 0.
const Version = 3

//go:embed library.sql
var script string

var versionInScript = regexp.MustCompile(`FUNCTION microsharding_version\(\) RETURNS integer\s+LANGUAGE sql IMMUTABLE\s+SET search_path FROM CURRENT\s+AS \$\$ SELECT (\d+); \$\$`)

// scriptVersion is the version the embedded script declares; a test keeps it
// equal to Version.
func scriptVersion() (int, error) {
	m := versionInScript.FindStringSubmatch(script)
	if m == nil {
		return 0, errors.New("library.sql does not define microsharding_version()")
	}
	return strconv.Atoi(m[1])
}

// Naming is the shard schema naming: Prefix followed by the shard number
// zero-padded to Digits.
type Naming struct {
	Prefix string
	Digits int
}

// DefaultNaming is pg-microsharding's naming: sh0000 … sh9999.
var DefaultNaming = Naming{Prefix: "sh", Digits: 4}

// SchemaName returns the schema name of shard n.
func (n Naming) SchemaName(shard int) string {
	return fmt.Sprintf("%s%0*d", n.Prefix, n.Digits, shard)
}

// MaxShard is the largest shard number the naming can express.
func (n Naming) MaxShard() int {
	max := 1
	for i := 0; i < n.Digits; i++ {
		max *= 10
	}
	return max - 1
}

// Options tune Install.
type Options struct {
	// Schema is the library schema; DefaultSchema when empty.
	Schema string
	// Naming, when set, is applied to the node. Changing the naming of a node
	// with active shards is refused. Nil keeps what the node has (the default
	// naming on a fresh install).
	Naming *Naming
	// AllowDowngrade lets an older library replace a newer one.
	AllowDowngrade bool
}

// Result says what Install found and did.
type Result struct {
	Schema      string
	FromVersion int  // 0: pg-microsharding's library or none
	Fresh       bool // the schema held no library before
	ToVersion   int
}

// Changed reports whether Install wrote anything a re-run would not.
func (r Result) Changed() bool { return r.Fresh || r.FromVersion != r.ToVersion }

// ErrNewerInstalled is returned when the node runs a newer library than this
// binary embeds.
var ErrNewerInstalled = errors.New("a newer library version is installed")

// installLockKey serialises concurrent installs on one database; the value
// is arbitrary but fixed ("pgms" in ASCII).
const installLockKey = 0x70676d73

// Install creates or upgrades the library on the database conn is connected
// to, in one transaction.
func Install(ctx context.Context, conn *pgx.Conn, opts Options) (Result, error) {
	schema := opts.Schema
	if schema == "" {
		schema = DefaultSchema
	}
	res := Result{Schema: schema, ToVersion: Version}

	tx, err := conn.Begin(ctx)
	if err != nil {
		return res, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", installLockKey); err != nil {
		return res, fmt.Errorf("take install lock: %w", err)
	}
	installed, err := InstalledVersion(ctx, tx, schema)
	if err != nil {
		return res, err
	}
	switch {
	case installed < 0:
		res.Fresh = true
	default:
		res.FromVersion = installed
	}
	if installed > Version && !opts.AllowDowngrade {
		return res, fmt.Errorf("%w in schema %q: version %d, this pgms embeds version %d; upgrade pgms (or pass --allow-downgrade)",
			ErrNewerInstalled, schema, installed, Version)
	}

	ident := pgx.Identifier{schema}.Sanitize()
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
		return res, fmt.Errorf("create schema %s: %w", ident, err)
	}
	// SET LOCAL so that SET search_path FROM CURRENT in the script captures
	// exactly the library schema, and nothing leaks past the transaction.
	if _, err := tx.Exec(ctx, "SELECT set_config('search_path', $1, true)", ident); err != nil {
		return res, err
	}
	// The script holds many statements and DO blocks: the simple protocol
	// runs them as one batch.
	if _, err := tx.Exec(ctx, script, pgx.QueryExecModeSimpleProtocol); err != nil {
		return res, fmt.Errorf("run library script in schema %s: %w", ident, err)
	}
	// Re-baking sorts, de-duplicates and filters the list it finds (an
	// install made by pg-microsharding may hold it unsorted), which the fast
	// path of microsharding_list_active_shards() relies on. The set of
	// active shards is unchanged.
	if _, err := tx.Exec(ctx, "SELECT microsharding_ensure_active_shards_()"); err != nil {
		return res, fmt.Errorf("normalise the active list: %w", err)
	}
	if opts.Naming != nil {
		if _, err := tx.Exec(ctx, "SELECT microsharding_configure_naming_($1, $2)",
			opts.Naming.Prefix, opts.Naming.Digits); err != nil {
			return res, fmt.Errorf("configure shard naming: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return res, err
	}
	return res, nil
}

// Querier is the part of pgx.Conn and pgx.Tx the helpers here need.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// InstalledVersion returns the library version installed in schema: -1 when
// there is none, 0 for pg-microsharding's library (no version function).
func InstalledVersion(ctx context.Context, q Querier, schema string) (int, error) {
	var hasList, hasVersion bool
	err := q.QueryRow(ctx, `
		SELECT
		  EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		          WHERE n.nspname = $1 AND p.proname = 'microsharding_active_shards_'),
		  EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		          WHERE n.nspname = $1 AND p.proname = 'microsharding_version')`, schema).Scan(&hasList, &hasVersion)
	if err != nil {
		return 0, fmt.Errorf("look for the library in schema %q: %w", schema, err)
	}
	if !hasList {
		return -1, nil
	}
	if !hasVersion {
		return 0, nil
	}
	var v int
	if err := q.QueryRow(ctx, "SELECT "+pgx.Identifier{schema, "microsharding_version"}.Sanitize()+"()").Scan(&v); err != nil {
		return 0, fmt.Errorf("read library version in schema %q: %w", schema, err)
	}
	return v, nil
}
