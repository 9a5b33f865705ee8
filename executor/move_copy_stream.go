package executor

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/state"
)

// tableCopy is one table of the fast copy and its progress.
type tableCopy struct {
	table
	// columns are the quoted names of the columns copied: every column but
	// the generated ones, which the destination computes itself.
	columns []string
	binary  bool
	// pending counts the units not yet finished; rows and bytes grow as
	// they stream.
	pending, running atomic.Int32
	rows, bytes      atomic.Int64
}

// copyUnit is what one worker copies in one COPY: a whole table, or a range
// of its pages.
type copyUnit struct {
	t *tableCopy
	// from, to are page numbers; whole is a copy of the whole table, which
	// may then be written frozen.
	from, to int64
	whole    bool
	bytes    int64
}

// copyPlan is what the fast copy copies and how.
type copyPlan struct {
	tables []*tableCopy
	units  []copyUnit
	// text names the tables copied as text, and why.
	text []string
}

// planCopy reads the columns of the shard's tables and decides, per table,
// binary or text COPY and whether to split it into page ranges.
//
// Binary COPY is 10–15% cheaper than text, but some binary forms carry
// object ids that differ between the two databases: arrays and composite
// values name their element and field types, reg* types are ids. So binary
// is used only when both servers run the same major version and every
// column's type, domains stripped, is a built-in type (arrays of built-in
// types included, reg* types excluded) or an enum (sent as its label).
func (m *move) planCopy(ctx context.Context) (copyPlan, error) {
	var dstMajor int
	if err := m.dst.Conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&dstMajor); err != nil {
		return copyPlan{}, pgutil.Wrap(err, "node %s", m.dst.Name)
	}
	var blockSize int64
	if err := m.src.Conn.QueryRow(ctx, "SELECT current_setting('block_size')::bigint").Scan(&blockSize); err != nil {
		return copyPlan{}, pgutil.Wrap(err, "node %s", m.src.Name)
	}
	rows, err := m.src.Conn.Query(ctx, `WITH RECURSIVE cols AS (
		  SELECT c.relname, a.attnum, a.attname, a.atttypid, a.attgenerated <> '' AS generated
		  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
		  WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) AND c.relkind = 'r'
		    AND a.attnum > 0 AND NOT a.attisdropped
		), base AS (
		  SELECT DISTINCT atttypid AS top, atttypid AS typ FROM cols
		  UNION
		  SELECT b.top, t.typbasetype FROM base b JOIN pg_catalog.pg_type t ON t.oid = b.typ WHERE t.typtype = 'd'
		)
		SELECT cols.relname, cols.attname, cols.generated, pg_catalog.format_type(cols.atttypid, NULL),
		  bt.typtype = 'e' OR (bt.oid < 16384 AND bt.typsend::oid <> 0 AND COALESCE(et.typname, bt.typname) !~ '^reg')
		FROM cols
		JOIN base ON base.top = cols.atttypid
		JOIN pg_catalog.pg_type bt ON bt.oid = base.typ AND bt.typtype <> 'd'
		LEFT JOIN pg_catalog.pg_type et ON et.oid = bt.typelem AND bt.typlen = -1
		ORDER BY cols.relname, cols.attnum`, m.schema)
	if err != nil {
		return copyPlan{}, pgutil.Wrap(err, "node %s: read the columns of %s", m.src.Name, m.schema)
	}
	type column struct {
		table, name, typ  string
		generated, binary bool
	}
	var cols []column
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.table, &c.name, &c.generated, &c.typ, &c.binary); err != nil {
			rows.Close()
			return copyPlan{}, err
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return copyPlan{}, pgutil.Wrap(err, "node %s: read the columns of %s", m.src.Name, m.schema)
	}

	var p copyPlan
	for _, t := range m.leafTables() {
		tc := &tableCopy{table: t, binary: dstMajor == m.srcMajor}
		why := ""
		for _, c := range cols {
			if c.table != t.Name || c.generated {
				continue
			}
			tc.columns = append(tc.columns, pgutil.Quote(c.name))
			if !c.binary && tc.binary {
				tc.binary = false
				why = fmt.Sprintf("%s (column %s is %s)", pgutil.Quote(t.Name), pgutil.Quote(c.name), c.typ)
			}
		}
		if why != "" {
			p.text = append(p.text, why)
		}
		p.tables = append(p.tables, tc)
		p.units = append(p.units, splitTable(tc, m.opts.CopyRangeBytes, blockSize, m.srcMajor)...)
	}
	if dstMajor != m.srcMajor && len(p.tables) > 0 {
		p.text = []string{fmt.Sprintf("every table (%s runs PostgreSQL %d, %s %d)", m.src.Name, m.srcMajor, m.dst.Name, dstMajor)}
	}
	// The biggest first: the last unit to finish then is a small one.
	slices.SortStableFunc(p.units, func(a, b copyUnit) int { return cmp.Compare(b.bytes, a.bytes) })
	return p, nil
}

// maxRanges bounds the ranges of one table.
const maxRanges = 4096

// splitTable cuts a table bigger than rangeBytes into page ranges of about
// that size. Sources before PostgreSQL 14 cannot scan a page range (no TID
// range scan), so there every table is copied whole. The last range is
// open-ended: the table may have grown since its size was read.
func splitTable(t *tableCopy, rangeBytes, blockSize int64, srcMajor int) []copyUnit {
	n := int64(1)
	if rangeBytes > 0 && srcMajor >= 14 && t.Bytes > rangeBytes {
		n = min((t.Bytes+rangeBytes-1)/rangeBytes, maxRanges)
	}
	t.pending.Store(int32(n))
	if n == 1 {
		return []copyUnit{{t: t, whole: true, bytes: t.Bytes}}
	}
	pages := (t.Bytes + blockSize - 1) / blockSize
	per := (pages + n - 1) / n
	units := make([]copyUnit, n)
	for i := range n {
		units[i] = copyUnit{t: t, from: i * per, to: (i + 1) * per, bytes: t.Bytes / n}
	}
	units[n-1].to = -1
	return units
}

// copyOut is the source's COPY statement for a unit.
func (m *move) copyOut(u copyUnit) string {
	cols := strings.Join(u.t.columns, ", ")
	var q string
	switch {
	case u.whole && cols == "":
		q = "COPY " + pgutil.Quote(m.schema, u.t.Name) + " TO STDOUT"
	case u.whole:
		q = "COPY " + pgutil.Quote(m.schema, u.t.Name) + " (" + cols + ") TO STDOUT"
	default:
		where := fmt.Sprintf("ctid >= '(%d,0)'::tid", u.from)
		if u.to >= 0 {
			where += fmt.Sprintf(" AND ctid < '(%d,0)'::tid", u.to)
		}
		q = "COPY (SELECT " + cols + " FROM " + pgutil.Quote(m.schema, u.t.Name) + " WHERE " + where + ") TO STDOUT"
	}
	if u.t.binary {
		q += " (FORMAT binary)"
	}
	return q
}

// copyIn is the destination's COPY statement for a unit. A whole table is
// written frozen (its transaction truncates it first, which FREEZE needs):
// the copy then needs no vacuum to set hint bits or freeze it later.
func (m *move) copyIn(u copyUnit) string {
	q := "COPY " + pgutil.Quote(m.schema, u.t.Name)
	if len(u.t.columns) > 0 {
		q += " (" + strings.Join(u.t.columns, ", ") + ")"
	}
	q += " FROM STDIN"
	var opts []string
	if u.t.binary {
		opts = append(opts, "FORMAT binary")
	}
	if u.whole {
		opts = append(opts, "FREEZE")
	}
	if len(opts) > 0 {
		q += " (" + strings.Join(opts, ", ") + ")"
	}
	return q
}

// copyUnit streams one unit from the source session to the destination
// session through a pipe. pgx hands every row to the writer separately and
// sends one message per read; the buffer makes that 64 KiB messages
// instead of one per row, which is most of pgms's own CPU time otherwise.
func (m *move) copyUnit(ctx context.Context, w *copyWorker, u copyUnit) error {
	t := u.t
	t.running.Add(1)
	name := pgutil.Quote(m.schema, t.Name)
	// A stream that moves no byte for StallTimeout is cut somewhere: a
	// partition drops no connection, it only stops the bytes.
	ctx, stalled := m.watchStream(ctx, t, name)
	defer stalled()
	if u.whole {
		if _, err := execSimple(ctx, w.dst.Conn, "BEGIN; TRUNCATE ONLY "+name); err != nil {
			return pgutil.Wrap(err, "node %s: prepare %s for the copy", m.dst.Name, name)
		}
	}
	pr, pw := io.Pipe()
	buf := bufio.NewWriterSize(pw, 256<<10)
	type result struct {
		tag pgconn.CommandTag
		err error
	}
	done := make(chan result, 1)
	go func() {
		tag, err := w.dst.Conn.PgConn().CopyFrom(ctx, pr, m.copyIn(u))
		if err != nil {
			pr.CloseWithError(errCopyInFailed)
		}
		done <- result{tag, err}
	}()
	counter := &countingWriter{w: buf, t: t}
	_, outErr := w.src.Conn.PgConn().CopyTo(ctx, counter, m.copyOut(u))
	if outErr == nil {
		outErr = buf.Flush()
	}
	pw.CloseWithError(outErr)
	in := <-done
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && (outErr != nil || in.err != nil) {
		return cause
	}
	switch {
	case outErr != nil && !errors.Is(outErr, errCopyInFailed):
		return pgutil.Wrap(outErr, "node %s: copy %s out", m.src.Name, name)
	case in.err != nil:
		return pgutil.Wrap(in.err, "node %s: copy %s in", m.dst.Name, name)
	}
	if u.whole {
		if _, err := execSimple(ctx, w.dst.Conn, "COMMIT"); err != nil {
			return pgutil.Wrap(err, "node %s: commit the copy of %s", m.dst.Name, name)
		}
	}
	// The exact count replaces the estimate.
	t.rows.Add(in.tag.RowsAffected() - counter.n)
	t.running.Add(-1)
	if t.pending.Add(-1) == 0 {
		return fault.Point(ctx, "move.backfill.table")
	}
	return nil
}

// watchStream cancels ctx when the table's copy moves no byte for
// StallTimeout, naming the table and the nodes; the returned function
// stops the watch.
func (m *move) watchStream(ctx context.Context, t *tableCopy, name string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(min(m.opts.StallTimeout/4, 5*time.Second))
		defer tick.Stop()
		last, since := t.bytes.Load(), time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if n := t.bytes.Load(); n != last {
				last, since = n, time.Now()
				continue
			}
			if time.Since(since) >= m.opts.StallTimeout {
				cancel(fmt.Errorf("the copy of %s moved no data for %v: the connection to %s or %s is cut, or a server stopped answering", name, m.opts.StallTimeout, m.src.Name, m.dst.Name))
				return
			}
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}

// errCopyInFailed is what the source's side of the pipe sees when the
// destination's COPY failed; the destination's error is the one to report.
var errCopyInFailed = errors.New("the destination ended the copy")

// countingWriter counts what the source sends; pgx writes one row per
// call (the binary header rides with the first row, the trailer alone).
type countingWriter struct {
	w io.Writer
	t *tableCopy
	n int64 // calls, taken for rows until the exact count is known
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.t.bytes.Add(int64(len(p)))
	c.t.rows.Add(1)
	c.n++
	return c.w.Write(p)
}

// copyProgress is the state of the copy: bytes streamed so far (less than
// the tables' size on disk, which counts tuple headers and free space) and
// rows, exact for finished units and counted as they stream otherwise.
func (m *move) copyProgress(plan []*tableCopy, elapsed time.Duration) *CopyProgress {
	p := &CopyProgress{}
	for _, t := range plan {
		p.TotalBytes += t.Bytes
		tp := state.TableProgress{Name: t.Name, State: "waiting", TotalBytes: t.Bytes, Bytes: t.bytes.Load(), Rows: t.rows.Load()}
		switch {
		case t.pending.Load() == 0:
			tp.State = "ready"
			tp.Bytes = max(tp.Bytes, t.Bytes)
			p.Ready++
		case t.running.Load() > 0 || tp.Bytes > 0:
			tp.State = "copying"
		}
		p.Tables = append(p.Tables, tp)
		p.Bytes += tp.Bytes
		p.Rows += tp.Rows
	}
	if s := elapsed.Seconds(); s > 0 {
		p.Rate = float64(p.Bytes) / s
	}
	return p
}
