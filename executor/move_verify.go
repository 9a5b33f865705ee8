package executor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
)

// Verification levels (MoveOptions.Verify, verify in the files, --verify).
const (
	// VerifyOff compares nothing.
	VerifyOff = "off"
	// VerifyCount compares the row count of every chunk.
	VerifyCount = "count"
	// VerifyFull compares the row count and an order-independent hash of
	// the rows' content of every chunk.
	VerifyFull = "full"
	// DefaultVerify is the level of a move that names none. Full
	// verification reads every row once more on both servers, outside
	// any pause; make bench-move measures its cost against the copy's.
	DefaultVerify = config.DefaultVerify
)

// VerifyLevels are the levels MoveOptions.Verify accepts.
var VerifyLevels = []string{VerifyOff, VerifyCount, VerifyFull}

// CheckVerify refuses an unknown verification level.
func CheckVerify(level string) error {
	if level == "" || slices.Contains(VerifyLevels, level) {
		return nil
	}
	return fmt.Errorf("unknown verification level %q: use %s", level, strings.Join(VerifyLevels, ", "))
}

// VerifyResult says what the verification gate compared.
type VerifyResult struct {
	Level  string `json:"level"`
	Tables int    `json:"tables"`
	Chunks int    `json:"chunks"`
	Rows   int64  `json:"rows"`
	// Took is the time the comparison took, on both servers at once.
	Took time.Duration `json:"took_ns"`
	// Skipped says why nothing was compared ("" when it was).
	Skipped string `json:"skipped,omitempty"`
}

func (v *VerifyResult) String() string {
	switch {
	case v == nil:
		return ""
	case v.Skipped != "":
		return "not verified: " + v.Skipped
	}
	what := "row counts"
	if v.Level == VerifyFull {
		what = "row counts and content hashes"
	}
	return fmt.Sprintf("verified (%s): %s of %d tables in %d chunks, %d rows, match; %s", v.Level, what, v.Tables, v.Chunks, v.Rows, units.FormatMS(v.Took))
}

// MismatchError is a copy that differs from the source at the snapshot it
// was copied from. The move stops before any subscription streams into the
// copy, which is kept for inspection.
type MismatchError struct {
	Node   string // the destination
	Schema string
	// Chunks lists the chunks that differ, at most maxMismatches of them.
	Chunks []ChunkMismatch
	// More counts the differing chunks not listed.
	More int
}

// ChunkMismatch is one chunk whose count or hash differs.
type ChunkMismatch struct {
	Table string
	// Chunk is the chunk's number (1-based) among Of chunks of the table.
	Chunk, Of int
	// Range is the chunk's primary-key range, as SQL.
	Range            string
	SrcRows, DstRows int64
	SrcHash, DstHash string
	// CountOnly: only the counts were compared (level count).
	CountOnly bool
}

const maxMismatches = 5

func (e *MismatchError) Error() string {
	parts := make([]string, len(e.Chunks))
	for i, c := range e.Chunks {
		s := fmt.Sprintf("table %s chunk %d/%d (%s): ", pgutil.Quote(c.Table), c.Chunk, c.Of, c.Range)
		if c.SrcRows != c.DstRows {
			s += fmt.Sprintf("%d rows on the source, %d on the copy", c.SrcRows, c.DstRows)
		} else {
			s += fmt.Sprintf("same %d rows, different content", c.SrcRows)
		}
		parts[i] = s
	}
	more := ""
	if e.More > 0 {
		more = fmt.Sprintf(" and %d more chunks", e.More)
	}
	return fmt.Sprintf("verification failed: the copy of %s on %s differs from the source's snapshot it was copied from: %s%s",
		e.Schema, e.Node, strings.Join(parts, "; "), more)
}

// errVerifyMismatch marks a failed verification for the move's error
// handling, which keeps the copy instead of undoing it.
var errVerifyMismatch = errors.New("verification mismatch")

func (e *MismatchError) Is(target error) bool { return target == errVerifyMismatch }

// verifyChunk is one part of a table compared on both servers.
type verifyChunk struct {
	t       *tableCopy
	key     string // the quoted column the ranges are on ("" for one chunk)
	keyType string // its type, for the casts of the bounds
	lo, hi  *string
	n, of   int
	// hash is the expression hashing a row of alias t ("" for count).
	hash string
	// span counts the chunks after n that a merged range also covers.
	span int
}

// where is the chunk's condition and its bind values.
func (c verifyChunk) where() (string, []any) {
	var conds []string
	var args []any
	if c.lo != nil {
		args = append(args, *c.lo)
		conds = append(conds, fmt.Sprintf("t.%s >= $%d::text::%s", c.key, len(args), c.keyType))
	}
	if c.hi != nil {
		args = append(args, *c.hi)
		conds = append(conds, fmt.Sprintf("t.%s < $%d::text::%s", c.key, len(args), c.keyType))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// describe shows the chunk's range with its values, for messages.
func (c verifyChunk) describe() string {
	switch {
	case c.lo == nil && c.hi == nil:
		return "the whole table"
	case c.lo == nil:
		return fmt.Sprintf("%s < %s", c.key, quoteLiteral(*c.hi))
	case c.hi == nil:
		return fmt.Sprintf("%s >= %s", c.key, quoteLiteral(*c.lo))
	}
	return fmt.Sprintf("%s >= %s AND %s < %s", c.key, quoteLiteral(*c.lo), c.key, quoteLiteral(*c.hi))
}

func (c verifyChunk) query(schema string) (string, []any) {
	where, args := c.where()
	sum := "''"
	if c.hash != "" {
		sum = "COALESCE(sum(" + c.hash + "), 0)::text"
	}
	return "SELECT count(*), " + sum + " FROM " + pgutil.Quote(schema, c.t.Name) + " t" + where, args
}

// verifyChunkBytes is about how much of a table one chunk covers:
// enough chunks to keep every session busy and to say where a
// difference is, few enough that each query's overhead is nothing. (A
// variable for the tests, which cut small tables into chunks.)
var verifyChunkBytes int64 = 64 << 20

// maxVerifyChunks bounds the chunks of one table.
const maxVerifyChunks = 64

// planVerify cuts every table into chunks by ranges of the leading column
// of its primary key (or replica identity index), with bounds sampled from
// the source, and picks how rows are hashed: by their values' own hash
// functions (hash_record_extended, from PostgreSQL 14, when every column
// is of a built-in type whose hash does not depend on the database), else
// by their text form. Bounds only partition the rows, so any values do:
// both servers count exactly the same rows into each chunk.
func (m *move) planVerify(ctx context.Context, plan []*tableCopy, level string) ([]verifyChunk, error) {
	var dstMajor int
	if err := m.dst.Conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&dstMajor); err != nil {
		return nil, pgutil.Wrap(err, "node %s", m.dst.Name)
	}
	type keyInfo struct{ col, typ string }
	keys := map[string]keyInfo{}
	rows, err := m.src.Conn.Query(ctx, `SELECT DISTINCT ON (c.relname) c.relname, a.attname, pg_catalog.format_type(a.atttypid, NULL)
		FROM pg_catalog.pg_index i
		JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
		JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
		WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) AND c.relkind = 'r'
		  AND (i.indisprimary OR i.indisreplident) AND i.indkey[0] <> 0
		ORDER BY c.relname, i.indisprimary DESC`, m.schema)
	if err != nil {
		return nil, pgutil.Wrap(err, "node %s: read the keys of %s", m.src.Name, m.schema)
	}
	for rows.Next() {
		var t string
		var k keyInfo
		if err := rows.Scan(&t, &k.col, &k.typ); err != nil {
			rows.Close()
			return nil, err
		}
		keys[t] = k
	}
	if err := rows.Err(); err != nil {
		return nil, pgutil.Wrap(err, "node %s: read the keys of %s", m.src.Name, m.schema)
	}
	typed := map[string]bool{}
	if level == VerifyFull && m.srcMajor >= 14 && dstMajor == m.srcMajor {
		if typed, err = m.typedHashTables(ctx); err != nil {
			return nil, err
		}
	}
	var chunks []verifyChunk
	for _, t := range plan {
		hash := ""
		if level == VerifyFull {
			hash = "pg_catalog.hashtextextended(t::text, 0)"
			if typed[t.Name] {
				hash = "pg_catalog.hash_record_extended(t, 0)"
			}
		}
		k, ok := keys[t.Name]
		n := int(min(max((t.Bytes+verifyChunkBytes-1)/verifyChunkBytes, 1), maxVerifyChunks))
		var bounds []string
		if ok && n > 1 {
			if bounds, err = m.sampleBounds(ctx, t, pgutil.Quote(k.col), n); err != nil {
				return nil, err
			}
		}
		of := len(bounds) + 1
		for i := 0; i < of; i++ {
			c := verifyChunk{t: t, key: pgutil.Quote(k.col), keyType: k.typ, n: i + 1, of: of, hash: hash}
			if i > 0 {
				c.lo = &bounds[i-1]
			}
			if i < len(bounds) {
				c.hi = &bounds[i]
			}
			chunks = append(chunks, c)
		}
	}
	// The biggest first, as for the copy: the last to finish is small.
	slices.SortStableFunc(chunks, func(a, b verifyChunk) int {
		return int(min(max(b.t.Bytes/int64(b.of)-a.t.Bytes/int64(a.of), -1), 1))
	})
	return chunks, nil
}

// typedHashTables names the tables whose rows may be hashed by their
// columns' hash functions: every column's type (domains stripped) is
// built in, not an object id (reg*, oid: the same value names different
// objects in the two databases), and has a default hash operator class,
// itself or as the element of an array.
func (m *move) typedHashTables(ctx context.Context) (map[string]bool, error) {
	rows, err := m.src.Conn.Query(ctx, `WITH RECURSIVE cols AS (
		  SELECT c.relname, a.atttypid
		  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
		  WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) AND c.relkind = 'r'
		    AND a.attnum > 0 AND NOT a.attisdropped
		), base AS (
		  SELECT DISTINCT atttypid AS top, atttypid AS typ FROM cols
		  UNION
		  SELECT b.top, t.typbasetype FROM base b JOIN pg_catalog.pg_type t ON t.oid = b.typ WHERE t.typtype = 'd'
		), hashable AS (
		  SELECT o.opcintype FROM pg_catalog.pg_opclass o JOIN pg_catalog.pg_am am ON am.oid = o.opcmethod
		  WHERE am.amname = 'hash' AND o.opcdefault
		)
		SELECT cols.relname, bool_and(
		  bt.oid < 16384 AND COALESCE(et.typname, bt.typname) !~ '^(reg|oid$)'
		  AND (bt.oid IN (SELECT opcintype FROM hashable) OR et.oid IN (SELECT opcintype FROM hashable)))
		FROM cols
		JOIN base ON base.top = cols.atttypid
		JOIN pg_catalog.pg_type bt ON bt.oid = base.typ AND bt.typtype <> 'd'
		LEFT JOIN pg_catalog.pg_type et ON et.oid = bt.typelem AND bt.typlen = -1
		GROUP BY cols.relname`, m.schema)
	if err != nil {
		return nil, pgutil.Wrap(err, "node %s: read the column types of %s", m.src.Name, m.schema)
	}
	out := map[string]bool{}
	for rows.Next() {
		var t string
		var ok bool
		if err := rows.Scan(&t, &ok); err != nil {
			rows.Close()
			return nil, err
		}
		out[t] = ok
	}
	return out, pgutil.Wrap(rows.Err(), "node %s: read the column types of %s", m.src.Name, m.schema)
}

// sampleBounds picks up to n-1 distinct values of the key column that cut
// the table into about equal parts, from a sample of its pages.
func (m *move) sampleBounds(ctx context.Context, t *tableCopy, key string, n int) ([]string, error) {
	return m.sampleBoundsOn(ctx, m.src.Conn, t, key, n)
}

// sampleBoundsOn samples on the given source session.
func (m *move) sampleBoundsOn(ctx context.Context, conn *pgx.Conn, t *tableCopy, key string, n int) ([]string, error) {
	pct := 100.0
	if t.Tuples > 0 {
		pct = min(100, max(0.01, 100*float64(200*n)/float64(t.Tuples)))
	}
	rows, err := conn.Query(ctx, "SELECT s.k::text AS bound FROM (SELECT DISTINCT "+key+" AS k FROM "+pgutil.Quote(m.schema, t.Name)+
		" TABLESAMPLE SYSTEM ($1::float4)) s ORDER BY s.k", pct)
	if err != nil {
		return nil, pgutil.Wrap(err, "node %s: sample %s", m.src.Name, pgutil.Quote(m.schema, t.Name))
	}
	var sample []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, err
		}
		sample = append(sample, v)
	}
	if err := rows.Err(); err != nil {
		return nil, pgutil.Wrap(err, "node %s: sample %s", m.src.Name, pgutil.Quote(m.schema, t.Name))
	}
	if len(sample) < 2*n {
		n = max(len(sample)/2, 1)
	}
	var bounds []string
	for i := 1; i < n; i++ {
		b := sample[i*len(sample)/n]
		if len(bounds) == 0 || bounds[len(bounds)-1] != b {
			bounds = append(bounds, b)
		}
	}
	return bounds, nil
}

// verifyCopy compares the copy with the source at the snapshot it was
// copied from, before the subscription streams anything into it: the
// source's sessions still hold that snapshot, and nothing writes to the
// copy yet, so both sides are frozen at the same point however busy the
// source is. Each worker compares one chunk at a time, querying both
// servers at once; no row leaves them.
func (m *move) verifyCopy(ctx context.Context, workers []*copyWorker, plan []*tableCopy) error {
	chunks, err := m.planVerify(ctx, plan, m.opts.Verify)
	if err != nil {
		return m.interrupted(ctx, err)
	}
	return m.verifyChunks(ctx, workers, len(plan), chunks)
}

// verifyChunks compares the chunks of tables tables, and records and
// reports the outcome.
func (m *move) verifyChunks(ctx context.Context, workers []*copyWorker, tables int, chunks []verifyChunk) error {
	level := m.opts.Verify
	res := &VerifyResult{Level: level, Tables: tables, Chunks: len(chunks)}
	m.res.Verify = res
	if err := fault.Point(ctx, "move.backfill.verify"); err != nil {
		return err
	}
	m.subPhase(ctx, "verify", fmt.Sprintf("comparing %d tables in %d chunks with the snapshot they were copied from (%s), %d at a time", tables, len(chunks), level, len(workers)))
	began := time.Now()
	var (
		mu      sync.Mutex
		bad     []ChunkMismatch
		nBad    int
		rowsAll int64
	)
	err := m.eachChunk(ctx, workers, chunks, func(w *copyWorker, c verifyChunk) error {
		src, dst, err := m.compareChunk(ctx, w, c)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if src != dst {
			nBad++
			if len(bad) < maxMismatches {
				bad = append(bad, ChunkMismatch{Table: c.t.Name, Chunk: c.n, Of: c.of, Range: c.describe(),
					SrcRows: src.rows, DstRows: dst.rows, SrcHash: src.hash, DstHash: dst.hash, CountOnly: c.hash == ""})
			}
		} else {
			rowsAll += src.rows
		}
		return nil
	})
	res.Took = time.Since(began)
	res.Rows = rowsAll
	if err != nil {
		return err
	}
	if nBad > 0 {
		slices.SortFunc(bad, func(a, b ChunkMismatch) int {
			return cmp.Or(strings.Compare(a.Table, b.Table), a.Chunk-b.Chunk)
		})
		merr := &MismatchError{Node: m.dst.Name, Schema: m.schema, Chunks: bad, More: nBad - len(bad)}
		m.noteVerify(ctx, fmt.Sprintf("MISMATCH (%s): %d of %d chunks differ, first: table %s chunk %d/%d", level, nBad, len(chunks), pgutil.Quote(bad[0].Table), bad[0].Chunk, bad[0].Of))
		return merr
	}
	m.noteVerify(ctx, res.String())
	m.event(PhaseBackfill, EventInfo, res.String())
	return fault.Point(ctx, "move.backfill.verified")
}

// eachChunk runs fn on every chunk, each worker taking one chunk at a
// time, until all are done or one fails. The destination sessions are
// first given the copy's settings again: the index builds and the rest of
// the post-data section changed them, and text forms must be produced
// alike on both sides.
func (m *move) eachChunk(ctx context.Context, workers []*copyWorker, chunks []verifyChunk, fn func(*copyWorker, verifyChunk) error) error {
	for _, w := range workers {
		if _, err := execSimple(ctx, w.dst.Conn, "RESET ALL; "+copySessionSettings); err != nil {
			return m.interrupted(ctx, pgutil.Wrap(err, "node %s: prepare a session", m.dst.Name))
		}
	}
	var (
		mu      sync.Mutex
		next    int
		firstEr error
	)
	take := func() (verifyChunk, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next == len(chunks) || firstEr != nil || ctx.Err() != nil {
			return verifyChunk{}, false
		}
		next++
		return chunks[next-1], true
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for {
				c, ok := take()
				if !ok {
					return
				}
				if err := fn(w, c); err != nil {
					mu.Lock()
					firstEr = cmp.Or(firstEr, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if firstEr != nil {
		return m.interrupted(ctx, firstEr)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w while comparing the copy: %w", ErrInterrupted, err)
	}
	return nil
}

// noteVerify records the gate's outcome in the journal.
func (m *move) noteVerify(ctx context.Context, line string) {
	m.mu.Lock()
	m.progress.Verify = line
	st := m.progress
	m.mu.Unlock()
	m.record(ctx, st)
}

// chunkSum is one server's count and hash of a chunk.
type chunkSum struct {
	rows int64
	hash string
}

// compareChunk runs a chunk's query on both servers at once.
func (m *move) compareChunk(ctx context.Context, w *copyWorker, c verifyChunk) (src, dst chunkSum, err error) {
	q, args := c.query(m.schema)
	var srcErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		srcErr = w.src.Conn.QueryRow(ctx, q, args...).Scan(&src.rows, &src.hash)
	}()
	dstErr := w.dst.Conn.QueryRow(ctx, q, args...).Scan(&dst.rows, &dst.hash)
	<-done
	name := pgutil.Quote(m.schema, c.t.Name)
	if srcErr != nil {
		return src, dst, pgutil.Wrap(srcErr, "node %s: verify %s chunk %d/%d", m.src.Name, name, c.n, c.of)
	}
	if dstErr != nil {
		return src, dst, pgutil.Wrap(dstErr, "node %s: verify %s chunk %d/%d", m.dst.Name, name, c.n, c.of)
	}
	return src, dst, nil
}

// verifySkipped records why a move compared nothing.
func (m *move) verifySkipped(why string) {
	if m.opts.Verify == VerifyOff {
		return
	}
	m.res.Verify = &VerifyResult{Level: m.opts.Verify, Skipped: why}
	m.mu.Lock()
	m.progress.Verify = m.res.Verify.String()
	m.mu.Unlock()
	m.event(PhaseBackfill, EventWarning, "the copy is not verified: "+why)
}

// verifiesCopy says whether the fast copy is compared with its snapshot,
// so that its source sessions keep the snapshot open until then.
func (m *move) verifiesCopy() bool { return m.opts.Verify != VerifyOff }

// dropReplication drops the move's subscription, slot and publication,
// keeping the copy.
func (m *move) dropReplication(ctx context.Context) error {
	return m.retrying(ctx, "the replication objects", func(ctx context.Context) error {
		if err := m.dropSubscription(ctx); err != nil {
			return err
		}
		if err := m.dropSlot(ctx); err != nil {
			return err
		}
		return m.dropPublication(ctx)
	})
}
