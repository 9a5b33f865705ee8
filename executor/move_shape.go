package executor

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgutil"
)

// The shape of a shard is its set of tables and their columns. The copy
// and the publication are made from the shape the source had when the
// move began; a table created in the shard later is neither copied nor
// published, and a column added later makes the subscription fail on
// every change. Switching over then would leave rows behind on the source.
// So the cutover compares the source's shape with the destination copy's,
// in detail before it takes the lock and as one hash under the lock, and
// refuses to switch when they differ.

// shapeRows lists, per table of the schema, its kind and its columns with
// their types, in column order.
func shapeRows(schema string) string {
	return `SELECT c.relname::text, c.relkind::text,
		  COALESCE((SELECT string_agg(pg_catalog.quote_ident(a.attname) || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
		    FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
		FROM pg_catalog.pg_class c
		WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ` + quoteLiteral(schema) + `) AND c.relkind IN ('r', 'p')`
}

// shapeHashSQL is one statement returning the hash of the schema's shape,
// cheap enough to run under the cutover lock.
func shapeHashSQL(schema string) string {
	return `SELECT COALESCE(pg_catalog.md5(string_agg(r.relname || '|' || r.relkind || '|' || r.cols, E'\n' ORDER BY r.relname)), '')
		FROM (` + shapeRows(schema) + `) AS r(relname, relkind, cols)`
}

// readShape returns the schema's tables with their kind and columns.
func readShape(ctx context.Context, conn *pgx.Conn, schema string) (map[string]string, string, error) {
	rows, err := conn.Query(ctx, shapeRows(schema), pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return nil, "", err
	}
	out := map[string]string{}
	for rows.Next() {
		var name, kind, cols string
		if err := rows.Scan(&name, &kind, &cols); err != nil {
			rows.Close()
			return nil, "", err
		}
		out[name] = kind + "|" + cols
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	var hash string
	err = conn.QueryRow(ctx, shapeHashSQL(schema), pgx.QueryExecModeSimpleProtocol).Scan(&hash)
	return out, hash, err
}

// shapeChanged compares the source's shape of the shard with its copy on
// the destination and describes the differences ("" when none). As a side
// effect it records the destination's hash for the check under the lock.
func (m *move) shapeChanged(ctx context.Context, src *pgx.Conn) (string, error) {
	have, srcHash, err := readShape(ctx, src, m.schema)
	if err != nil {
		return "", pgutil.Wrap(err, "node %s: read the tables of %s", m.src.Name, m.schema)
	}
	copied, dstHash, err := readShape(ctx, m.dst.Conn, m.schema)
	if err != nil {
		return "", pgutil.Wrap(err, "node %s: read the tables of the copy %s", m.dst.Name, m.schema)
	}
	m.shape = dstHash
	if srcHash == dstHash {
		return "", nil
	}
	var diffs []string
	for t, sig := range have {
		c, ok := copied[t]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("table %s was created on %s after the copy began", pgutil.Quote(m.schema, t), m.src.Name))
		case c != sig:
			diffs = append(diffs, fmt.Sprintf("table %s changed on %s after the copy began (now: %s; copied: %s)", pgutil.Quote(m.schema, t), m.src.Name, columnsOf(sig), columnsOf(c)))
		}
	}
	for t := range copied {
		if _, ok := have[t]; !ok {
			diffs = append(diffs, fmt.Sprintf("table %s was dropped on %s after the copy began", pgutil.Quote(m.schema, t), m.src.Name))
		}
	}
	sort.Strings(diffs)
	if len(diffs) == 0 {
		return "the definition of the shard's tables changed on the source after the copy began", nil
	}
	return strings.Join(diffs, "; "), nil
}

func columnsOf(sig string) string {
	_, cols, _ := strings.Cut(sig, "|")
	return cols
}
