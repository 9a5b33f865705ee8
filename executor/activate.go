package executor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// ActivateOptions tune Activate and Deactivate.
type ActivateOptions struct {
	// LibrarySchema is the schema of the stored-function library;
	// sql.DefaultSchema when empty.
	LibrarySchema string
	// Fleet, when set, lists every node of the cluster. Activate then
	// claims the shards on the node and, just before activating, reads
	// every node of the fleet: shards active on another node, claimed by
	// another run, or on a node that cannot be read are refused (a shard
	// is active on at most one node). The node being activated is
	// recognised by its name or its address.
	Fleet *state.Fleet
	// Who describes the run in its claims; default this process.
	Who state.Invocation
}

// claimRange claims shards from..to on node, for work described by
// purpose.
func claimRange(ctx context.Context, node *pgutil.Node, lib string, schemas []string, from, to int, purpose string, who state.Invocation) (*state.Claim, error) {
	shards := make([]int, 0, to-from+1)
	for n := from; n <= to; n++ {
		shards = append(shards, n)
	}
	if who.Command == "" {
		who = state.ThisProcess(purpose, "")
	}
	c, err := state.ClaimShards(ctx, state.ClaimSpec{DSN: node.DSN, Node: node.Name, LibrarySchema: lib,
		Shards: shards, Schemas: schemas, Purpose: purpose + " on " + node.Name, Who: who})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// checkFleet reads every node of the fleet and refuses an activation of
// shards from..to on node that would, or could, give one a second home.
func checkFleet(ctx context.Context, fleet *state.Fleet, node *pgutil.Node, lib string, schemas []string, from, to int) error {
	shards := make([]int, 0, to-from+1)
	for n := from; n <= to; n++ {
		shards = append(shards, n)
	}
	f := fleet.With(state.NodeSpec{Name: node.Name, DSN: node.DSN})
	if f.LibrarySchema == "" {
		f.LibrarySchema = lib
	}
	return f.CheckActivation(ctx, state.ActivationCheck{Target: node.Name, Shards: shards, Schemas: schemas})
}

// Activate makes shards from..to active on node; every one must exist
// there. It returns the schemas that were not active before. Activating
// active shards again changes nothing.
func Activate(ctx context.Context, node *pgutil.Node, from, to int, opts ActivateOptions) ([]string, error) {
	lib := libraryOf(opts.LibrarySchema)
	what := fmt.Sprintf("activate %s on node %s", shardRange(from, to), node.Name)
	if err := checkRange(from, to); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	schemas, before, err := rangeState(ctx, node, lib, from, to)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	on := node
	if opts.Fleet != nil {
		claim, err := claimRange(ctx, node, lib, schemas, from, to, "activate", opts.Who)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		defer claim.Release(ctx)
		if err := checkFleet(ctx, opts.Fleet, node, lib, schemas, from, to); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		on = claim.Node()
	}
	if err := ensure(ctx, on, lib, "microsharding_ensure_active", from, to); err != nil {
		return nil, pgutil.Wrap(err, "%s", what)
	}
	return notIn(schemas, before), nil
}

// Deactivate makes shards from..to inactive on node and returns those that
// were active. Shards that are inactive or absent are left as they are.
func Deactivate(ctx context.Context, node *pgutil.Node, from, to int, opts ActivateOptions) ([]string, error) {
	lib := libraryOf(opts.LibrarySchema)
	what := fmt.Sprintf("deactivate %s on node %s", shardRange(from, to), node.Name)
	if err := checkRange(from, to); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var deactivated []string
	err := node.Conn.QueryRow(ctx,
		"SELECT ARRAY(SELECT s::text FROM "+pgutil.Quote(lib, "microsharding_ensure_inactive")+"($1, $2) s)",
		from, to).Scan(&deactivated)
	if err != nil {
		return nil, pgutil.Wrap(libraryHint(err, lib), "%s", what)
	}
	if len(deactivated) == 0 {
		return nil, nil
	}
	return deactivated, nil
}

func libraryOf(schema string) string {
	if schema == "" {
		return sql.DefaultSchema
	}
	return schema
}

// checkRange catches what the library would refuse, with a message that
// does not need SQL to read.
func checkRange(from, to int) error {
	switch {
	case from < 0:
		return fmt.Errorf("invalid shard range %d-%d: shard numbers cannot be negative", from, to)
	case from > to:
		return fmt.Errorf("invalid shard range %d-%d: the first shard is greater than the last (did you mean %d-%d?)", from, to, to, from)
	}
	return nil
}

// rangeState returns the schema names the node's library gives shards
// from..to, and which of them are active now.
func rangeState(ctx context.Context, node *pgutil.Node, lib string, from, to int) (schemas []string, active map[string]bool, err error) {
	var list []string
	// The simple protocol: the active list is a constant baked into an
	// IMMUTABLE function, and a cached prepared plan could keep an old one.
	err = node.Conn.QueryRow(ctx, fmt.Sprintf(
		"SELECT ARRAY(SELECT %s(g) FROM generate_series($1::int, $2::int) g ORDER BY g), %s()",
		pgutil.Quote(lib, "microsharding_schema_name_"), pgutil.Quote(lib, "microsharding_active_shards_")),
		pgx.QueryExecModeSimpleProtocol, from, to).Scan(&schemas, &list)
	if err != nil {
		return nil, nil, libraryHint(err, lib)
	}
	active = make(map[string]bool, len(list))
	for _, s := range list {
		active[s] = true
	}
	return schemas, active, nil
}

// ensure calls one of the library's microsharding_ensure_* functions.
func ensure(ctx context.Context, node *pgutil.Node, lib, function string, from, to int) error {
	_, err := node.Conn.Exec(ctx, "SELECT count(*) FROM "+pgutil.Quote(lib, function)+"($1, $2)", from, to)
	return libraryHint(err, lib)
}

// libraryHint turns a missing library schema or function into the fix.
// Shard functions raise invalid_schema_name too ("No such schema: sh0007"),
// so the message must name the library.
func libraryHint(err error, lib string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	if (pgErr.Code == pgutil.CodeInvalidSchemaName && strings.Contains(pgErr.Message, `"`+lib+`"`)) ||
		(pgErr.Code == pgutil.CodeUndefinedFunction && strings.Contains(pgErr.Message, "microsharding_")) {
		return fmt.Errorf("the microsharding library is missing or incomplete in schema %q (run pgms install): %w", lib, err)
	}
	return err
}

// notIn returns the names not in set, in order.
func notIn(names []string, set map[string]bool) []string {
	var out []string
	for _, n := range names {
		if !set[n] {
			out = append(out, n)
		}
	}
	return out
}

// shardRange says "shard 5" or "shards 5-8".
func shardRange(from, to int) string {
	if from == to {
		return "shard " + strconv.Itoa(from)
	}
	return fmt.Sprintf("shards %d-%d", from, to)
}

// compactShards says which shards a sorted list holds: "3, 5-8".
func compactShards(shards []int) string {
	var parts []string
	for i := 0; i < len(shards); {
		j := i
		for j+1 < len(shards) && shards[j+1] == shards[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(shards[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", shards[i], shards[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}
