package state

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
)

// Weight is the load measure of one shard: by default the total size of its
// tables in bytes, or the first column of the user's weight_sql.
type Weight struct {
	Value float64
	// Bytes says Value is a size in bytes (the default measure, or a
	// weight_sql result with a size unit such as "120 MB").
	Bytes bool
	// Extra holds the further columns of the weight query, by column name.
	Extra []Column
}

// Column is one extra named value of a weight query.
type Column struct {
	Name  string
	Value string
}

// ListActiveShards returns the schema names microsharding_list_active_shards()
// reports on the node, ordered by name.
func ListActiveShards(ctx context.Context, q Querier, librarySchema string) ([]string, error) {
	var names []string
	err := q.QueryRow(ctx, "SELECT "+pgutil.Quote(librarySchema, "microsharding_list_active_shards")+"()::text[]").Scan(&names)
	if err != nil {
		return nil, err
	}
	// regnamespace prints quoted names when quoting is needed.
	for i, n := range names {
		if strings.HasPrefix(n, `"`) {
			names[i] = strings.ReplaceAll(strings.Trim(n, `"`), `""`, `"`)
		}
	}
	return names, nil
}

// DefaultWeights measures shards by the total relation size (heap, TOAST and
// indexes) of their tables, in one catalog query for all of them, with the
// table count as an extra column.
func DefaultWeights(ctx context.Context, q Querier, schemas []string) (map[string]Weight, error) {
	rows, err := q.Query(ctx, `
		SELECT n.nspname, COALESCE(sum(pg_total_relation_size(c.oid)), 0)::float8, count(c.oid)
		FROM pg_catalog.pg_namespace n
		LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'm')
		WHERE n.nspname = ANY($1)
		GROUP BY n.nspname`, schemas)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Weight, len(schemas))
	for rows.Next() {
		var name string
		var size float64
		var tables int64
		if err := rows.Scan(&name, &size, &tables); err != nil {
			return nil, err
		}
		out[name] = Weight{Value: size, Bytes: true, Extra: []Column{{Name: "tables", Value: strconv.FormatInt(tables, 10)}}}
	}
	return out, rows.Err()
}

// QueryWeights runs the user's weight query once per shard with search_path
// set to the shard, in a read-only transaction. The first column of the
// first row is the weight: a number, optionally with a size unit
// ("120 MB"); further columns are kept as extra information.
func QueryWeights(ctx context.Context, conn *pgx.Conn, schemas []string, weightSQL string) (map[string]Weight, error) {
	out := make(map[string]Weight, len(schemas))
	for _, schema := range schemas {
		w, err := queryWeight(ctx, conn, schema, weightSQL)
		if err != nil {
			return nil, fmt.Errorf("weight of shard %s: %w", schema, err)
		}
		out[schema] = w
	}
	return out, nil
}

func queryWeight(ctx context.Context, conn *pgx.Conn, schema, weightSQL string) (Weight, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return Weight{}, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only
	if _, err := tx.Exec(ctx, "SELECT set_config('search_path', $1, true)", pgutil.Quote(schema)+",public"); err != nil {
		return Weight{}, err
	}
	rows, err := tx.Query(ctx, weightSQL, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return Weight{}, pgutil.Wrap(err, "weight query")
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Weight{}, pgutil.Wrap(err, "weight query")
		}
		return Weight{}, fmt.Errorf("weight query returned no row")
	}
	values, err := rows.Values()
	if err != nil {
		return Weight{}, err
	}
	fields := rows.FieldDescriptions()
	if len(values) == 0 {
		return Weight{}, fmt.Errorf("weight query returned no column")
	}
	value, isBytes, err := ParseWeight(fmt.Sprint(values[0]))
	if err != nil {
		return Weight{}, fmt.Errorf("first column %q: %w", fields[0].Name, err)
	}
	w := Weight{Value: value, Bytes: isBytes}
	for i := 1; i < len(values); i++ {
		w.Extra = append(w.Extra, Column{Name: fields[i].Name, Value: fmt.Sprint(values[i])})
	}
	rows.Close()
	return w, rows.Err()
}

// ParseWeight reads a weight: a plain number, or a number with a size unit
// as pg_size_pretty prints them ("120 MB"); with a unit the value is in
// bytes and isBytes is true.
func ParseWeight(s string) (value float64, isBytes bool, err error) {
	return units.ParseSize(s)
}
