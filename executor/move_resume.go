package executor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
)

// A fast copy lives in pgms's process: its exported snapshot ends with the
// run, so a copy cut short cannot simply go on. What it wrote stays valid
// row by row, though, and comparing is much cheaper than copying (the
// verification gate reads a copy in about a third of the time it took to
// make it). So an interrupted or crashed fast copy is kept, and the next
// run takes a fresh snapshot and, table by table, chunk by chunk (ranges
// of the primary key), compares the kept copy with the source: equal
// chunks stay, the others are replaced from the new snapshot, and tables
// that had no row yet are copied as usual. Every chunk is then either
// equal to the new snapshot or copied from it, so the result is exactly
// the new snapshot, and the subscription streams from there.

// DefaultKeepCopyBytes is the least a fast copy must have written for an
// interruption to keep it: below, copying again costs about a second and
// leaves nothing behind on the nodes meanwhile.
const DefaultKeepCopyBytes = 64 << 20

// ResumeResult says what a run that continued a kept copy did.
type ResumeResult struct {
	// Chunks were compared; Kept of them were equal and stayed.
	Chunks, Kept int
	// KeptBytes is about how much of the kept copy stayed, ReplacedBytes
	// how much of it differed and was copied again, FreshBytes the tables
	// that had no row yet, copied now; all measured by the source tables'
	// sizes.
	KeptBytes, ReplacedBytes, FreshBytes int64
	// Took is the comparison's time, the replaced chunks included.
	Took time.Duration
}

func (r *ResumeResult) String() string {
	if r == nil {
		return ""
	}
	total := float64(max(r.KeptBytes+r.ReplacedBytes+r.FreshBytes, 1))
	return fmt.Sprintf("continued the earlier copy: %d of %d chunks kept (%s, %.0f%% of the shard), %d replaced (%s, %.0f%%), tables not copied before %s (%.0f%%); comparing and replacing took %s",
		r.Kept, r.Chunks, units.FormatBytes(float64(r.KeptBytes)), 100*float64(r.KeptBytes)/total,
		r.Chunks-r.Kept, units.FormatBytes(float64(r.ReplacedBytes)), 100*float64(r.ReplacedBytes)/total,
		units.FormatBytes(float64(r.FreshBytes)), 100*float64(r.FreshBytes)/total, r.Took.Round(time.Millisecond))
}

// keepCopyBytes is the option's value, the default filled in.
func (m *move) keepCopyBytes() int64 {
	if m.opts.KeepCopyBytes == 0 {
		return DefaultKeepCopyBytes
	}
	return m.opts.KeepCopyBytes
}

// copiedBytes is the size of the destination copy's tables.
func (m *move) copiedBytes(ctx context.Context) (int64, error) {
	var n int64
	err := m.dst.Conn.QueryRow(ctx, `SELECT COALESCE(sum(pg_catalog.pg_relation_size(c.oid)), 0)::bigint FROM pg_catalog.pg_class c
		WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) AND c.relkind = 'r'`, m.schema).Scan(&n)
	return n, pgutil.Wrap(err, "node %s: size of the copy %s", m.dst.Name, m.schema)
}

// canContinueCopy decides whether the copy an earlier run left on the
// destination (found without the replication objects it needs to go on)
// is continued rather than dropped: the fast copy is in use, the copy is
// big enough to be worth it, and its tables are still those of the
// source.
func (m *move) canContinueCopy(ctx context.Context) (bool, error) {
	f, ok := m.strategy.(*fastCopy)
	if !ok || m.keepCopyBytes() < 0 {
		return false, nil
	}
	size, err := m.copiedBytes(ctx)
	if err != nil || size < m.keepCopyBytes() {
		return false, err
	}
	// Replacing chunks writes with session_replication_role = replica
	// (see replaceChunk), which only some roles may set.
	if _, err := execSimple(ctx, m.dst.Conn, "BEGIN; SET LOCAL session_replication_role = replica; ROLLBACK"); err != nil {
		execSimple(ctx, m.dst.Conn, "ROLLBACK") //nolint:errcheck // ends the failed transaction
		m.event(PhasePreflight, EventInfo, fmt.Sprintf("the copy an earlier run left cannot be continued (%s may not set session_replication_role: %s); starting over", m.dst.Name, pgutil.Describe(err)))
		return false, nil
	}
	changed, err := m.shapeChanged(ctx, m.src.Conn)
	if err != nil {
		return false, err
	}
	if changed != "" {
		m.event(PhasePreflight, EventInfo, "the copy an earlier run left cannot be continued, the shard's tables changed since: "+changed+"; starting over")
		return false, nil
	}
	f.resume = true
	m.res.Resumed = true
	m.event(PhasePreflight, EventInfo, fmt.Sprintf("an earlier run left a copy of %s on %s; it is kept and compared chunk by chunk with a fresh snapshot, and only what differs is copied again",
		units.FormatBytes(float64(size)), m.dst.Name))
	return true, nil
}

// keepCopy ends an interrupted fast copy without undoing it, when it has
// copied enough to be worth keeping. A copy that already streams keeps
// its subscription, slot and publication: it goes on without pgms, and
// the next run continues from the catch-up. A copy still being made
// keeps only its rows: the snapshot it read from is gone, and a slot
// would only retain WAL; the next run compares and completes it. It
// returns false when the move is to be undone as usual.
func (m *move) keepCopy(ctx context.Context) (bool, string, error) {
	f, ok := m.strategy.(*fastCopy)
	if !ok || m.keepCopyBytes() < 0 {
		return false, "", nil
	}
	if err := m.revive(ctx); err != nil {
		return false, "", err
	}
	size, err := m.copiedBytes(ctx)
	if err != nil || size < m.keepCopyBytes() {
		return false, "", err
	}
	var subscribed bool
	if err := m.dst.Conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_catalog.pg_subscription WHERE oid = "+subscriptionOID+")", m.sub).Scan(&subscribed); err != nil {
		return false, "", pgutil.Wrap(err, "node %s: look for subscription %s", m.dst.Name, m.sub)
	}
	if subscribed || f.state == fastSubscribed {
		return true, fmt.Sprintf("stopped; the copy on %s and its subscription are kept and go on streaming without pgms: run the same move again to continue from the catch-up", m.dst.Name), nil
	}
	if err := m.dropReplication(ctx); err != nil {
		return false, "", err
	}
	return true, fmt.Sprintf("stopped; the %s copied so far are kept on %s (marked as an unfinished copy, never served); the slot and publication are dropped. Run the same move again: it compares the copy with a fresh snapshot and copies only what differs",
		units.FormatBytes(float64(size)), m.dst.Name), nil
}

// continueCopy prepares a kept copy before the fast copy runs: the index
// builds of the tables that have rows are made first (the comparison and
// the replacement of chunks read and delete by key ranges), then those
// tables are compared with the new snapshot chunk by chunk, on the
// workers, and the chunks that differ are replaced. Only the tables
// without any row are left for the copy. It returns the post-data script
// (which the builds needed) for the rest of the copy, and the chunks that
// were replaced, which the verification gate still has to compare.
func (f *fastCopy) continueCopy(ctx context.Context, m *move) (string, []verifyChunk, error) {
	var script string
	select {
	case dumped := <-f.dump:
		if dumped.err != nil {
			return "", nil, dumped.err
		}
		script = dumped.script
	case <-ctx.Done():
		return "", nil, fmt.Errorf("%w while reading the post-data section: %w", ErrInterrupted, ctx.Err())
	}
	began := time.Now()
	m.subPhase(ctx, "compare", "comparing the kept copy with the new snapshot")
	var filled, empty []*tableCopy
	for _, t := range f.plan {
		var has bool
		if err := m.dst.Conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM "+pgutil.Quote(m.schema, t.Name)+")").Scan(&has); err != nil {
			return "", nil, m.interrupted(ctx, pgutil.Wrap(err, "node %s: look at the copy of %s", m.dst.Name, t.Name))
		}
		if has {
			filled = append(filled, t)
		} else {
			empty = append(empty, t)
		}
	}
	existing, err := m.existingIndexes(ctx)
	if err != nil {
		return "", nil, err
	}
	// A filled table without any index was cut short before its builds:
	// it is compared in one scan per side and completed without indexes,
	// which its builds then make as for any copied table. A table with
	// indexes gets the missing ones now, and is compared and completed
	// by key ranges.
	builds := parsePostData(script).builds
	indexed := map[string]bool{}
	for _, b := range builds {
		if existing[b.name] {
			indexed[b.table] = true
		}
	}
	var bare []*tableCopy
	isFilled := map[string]bool{}
	for _, t := range filled {
		isFilled[t.Name] = true
	}
	keep := filled[:0:0]
	for _, t := range filled {
		if indexed[t.Name] {
			keep = append(keep, t)
		} else {
			bare = append(bare, t)
		}
	}
	filled = keep
	var now []ddlBuild
	for _, b := range builds {
		if indexed[b.table] && !existing[b.name] {
			now = append(now, b)
		}
	}
	builds = now
	if err := m.runBuilds(ctx, f.workers, builds); err != nil {
		return "", nil, err
	}
	for _, b := range builds {
		existing[b.name] = true
	}
	f.existing = existing

	chunks, err := m.planVerify(ctx, filled, VerifyFull)
	if err != nil {
		return "", nil, m.interrupted(ctx, err)
	}
	res := &ResumeResult{Chunks: len(chunks)}
	var mu sync.Mutex
	var replaced []verifyChunk
	if err := m.completeBare(ctx, f.workers, bare, res, &mu, &replaced); err != nil {
		return "", nil, err
	}
	err = m.eachChunk(ctx, f.workers, chunks, func(w *copyWorker, c verifyChunk) error {
		src, dst, err := m.compareChunk(ctx, w, c)
		if err != nil {
			return err
		}
		share := c.t.Bytes / int64(c.of)
		if src == dst {
			c.t.rows.Add(src.rows)
			mu.Lock()
			res.Kept++
			res.KeptBytes += share
			mu.Unlock()
			return nil
		}
		if err := m.replaceChunk(ctx, w, c); err != nil {
			return err
		}
		mu.Lock()
		res.ReplacedBytes += share
		replaced = append(replaced, c)
		mu.Unlock()
		return fault.Point(ctx, "move.backfill.replaced")
	})
	if err != nil {
		return "", nil, err
	}
	// The filled tables are complete: the copy only has the empty ones
	// left to do.
	for _, t := range append(filled, bare...) {
		t.pending.Store(0)
		t.bytes.Store(t.Bytes)
	}
	var units []copyUnit
	for _, u := range f.units {
		if !isFilled[u.t.Name] {
			units = append(units, u)
		}
	}
	f.units = units
	for _, t := range empty {
		res.FreshBytes += t.Bytes
	}
	res.Took = time.Since(began)
	m.res.Resume = res
	m.event(PhaseBackfill, EventInfo, res.String())
	return script, replaced, nil
}

// existingIndexes names the indexes the copy has (a primary key's or a
// unique constraint's index carries the constraint's name).
func (m *move) existingIndexes(ctx context.Context) (map[string]bool, error) {
	rows, err := m.dst.Conn.Query(ctx, `SELECT c.relname FROM pg_catalog.pg_class c
		WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) AND c.relkind IN ('i', 'I')`, m.schema)
	if err != nil {
		return nil, m.interrupted(ctx, pgutil.Wrap(err, "node %s: list the indexes of the copy %s", m.dst.Name, m.schema))
	}
	out := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		out[n] = true
	}
	return out, m.interrupted(ctx, pgutil.Wrap(rows.Err(), "node %s: list the indexes of the copy %s", m.dst.Name, m.schema))
}

// runBuilds runs index builds on the workers' destination sessions, one
// per session at a time.
func (m *move) runBuilds(ctx context.Context, workers []*copyWorker, builds []ddlBuild) error {
	if len(builds) == 0 {
		return nil
	}
	m.event(PhaseBackfill, EventInfo, fmt.Sprintf("building %d indexes of the kept tables before comparing them", len(builds)))
	var mu sync.Mutex
	next := 0
	var errs []error
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for {
				mu.Lock()
				if next == len(builds) || len(errs) > 0 {
					mu.Unlock()
					return
				}
				b := builds[next]
				next++
				mu.Unlock()
				q := b.sql
				if b.setup != "" {
					q = b.setup + ";\n" + q
				}
				if _, err := execSimple(ctx, w.dst.Conn, q); err != nil {
					mu.Lock()
					errs = append(errs, m.interrupted(ctx, pgutil.Wrap(err, "node %s: %s", m.dst.Name, abbreviate(b.sql))))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// replaceChunk replaces a chunk of the copy with the source's rows at the
// worker's snapshot, in one transaction on the destination. COPY takes no
// parameters, so the source's statement carries the chunk's bounds as
// quoted literals; they are values the source itself printed.
func (m *move) replaceChunk(ctx context.Context, w *copyWorker, c verifyChunk) error {
	name := pgutil.Quote(m.schema, c.t.Name)
	where, args := c.where()
	// The copy may already have its triggers and foreign keys (the rest of
	// the post-data section): as for the subscription's own writes, none
	// of them may fire, or a cascade would delete rows of other tables.
	if _, err := execSimple(ctx, w.dst.Conn, "BEGIN; SET LOCAL session_replication_role = replica"); err != nil {
		return m.interrupted(ctx, pgutil.Wrap(err, "node %s: replace a chunk of %s", m.dst.Name, name))
	}
	if _, err := w.dst.Conn.Exec(ctx, "DELETE FROM "+name+" t"+where, args...); err != nil {
		execSimple(context.WithoutCancel(ctx), w.dst.Conn, "ROLLBACK") //nolint:errcheck // the session is closed on failure anyway
		return m.interrupted(ctx, pgutil.Wrap(err, "node %s: clear chunk %d/%d of %s", m.dst.Name, c.n, c.of, name))
	}
	out := "COPY (SELECT " + strings.Join(c.t.columns, ", ") + " FROM " + name + " t" + c.literalWhere() + ") TO STDOUT"
	if c.t.binary {
		out += " (FORMAT binary)"
	}
	if err := m.pipeCopy(ctx, w, c.t, out, fmt.Sprintf("chunk %d/%d of %s", c.n, c.of, name)); err != nil {
		return err
	}
	if _, err := execSimple(ctx, w.dst.Conn, "COMMIT"); err != nil {
		return m.interrupted(ctx, pgutil.Wrap(err, "node %s: commit chunk %d/%d of %s", m.dst.Name, c.n, c.of, name))
	}
	return nil
}

// literalWhere is the chunk's condition with its bounds as literals.
func (c verifyChunk) literalWhere() string {
	var conds []string
	if c.lo != nil {
		conds = append(conds, fmt.Sprintf("t.%s >= %s::%s", c.key, quoteLiteral(*c.lo), c.keyType))
	}
	if c.hi != nil {
		conds = append(conds, fmt.Sprintf("t.%s < %s::%s", c.key, quoteLiteral(*c.hi), c.keyType))
	}
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// pendingBuilds leaves out the builds a continued copy already has.
func (m *move) pendingBuilds(builds []ddlBuild) []ddlBuild {
	f, ok := m.strategy.(*fastCopy)
	if !ok || f.existing == nil {
		return builds
	}
	var out []ddlBuild
	for _, b := range builds {
		if !f.existing[b.name] {
			out = append(out, b)
		}
	}
	return out
}

// continuing says whether this run continues a kept copy; the rest of the
// post-data section may then have run in part before.
func (m *move) continuing() bool {
	f, ok := m.strategy.(*fastCopy)
	return ok && f.resume
}

// alreadyThere recognises the error of a post-data statement whose object
// an earlier run of a continued copy already made.
func alreadyThere(err error) bool {
	switch pgutil.SQLState(err) {
	case "42710", "42P07", "42P16": // duplicate_object, duplicate_table, invalid_table_definition (already attached)
		return true
	}
	return false
}

// gateChunks is what the verification gate compares after a continued
// copy: the tables copied now, and the chunks replaced; the chunks found
// equal were compared already.
func (m *move) gateChunks(ctx context.Context, f *fastCopy, replaced []verifyChunk) ([]verifyChunk, error) {
	var fresh []*tableCopy
	for _, t := range f.plan {
		for _, u := range f.units {
			if u.t == t {
				fresh = append(fresh, t)
				break
			}
		}
	}
	chunks, err := m.planVerify(ctx, fresh, m.opts.Verify)
	if err != nil {
		return nil, err
	}
	for _, c := range replaced {
		if m.opts.Verify == VerifyCount {
			c.hash = ""
		}
		chunks = append(chunks, c)
	}
	return chunks, nil
}

// resumeChunkBytes is about how much of a table one chunk of a bare
// table's comparison covers: small, since a chunk that an interruption cut
// through is copied again whole, and cheap, since all chunks of a table
// are counted in one scan.
var resumeChunkBytes int64 = 4 << 20

// maxResumeChunks bounds the chunks of one bare table.
const maxResumeChunks = 4096

// completeBare compares and completes the filled tables that have no index
// yet, one table per worker at a time: both servers count and hash the
// rows of every chunk in one scan of the table (grouped by the chunk the
// key falls in), then the chunks that differ are deleted and copied again
// from the snapshot, in one transaction, each in one scan.
func (m *move) completeBare(ctx context.Context, workers []*copyWorker, bare []*tableCopy, res *ResumeResult, mu *sync.Mutex, replaced *[]verifyChunk) error {
	if len(bare) == 0 {
		return nil
	}
	chunks, err := m.planVerify(ctx, bare, VerifyFull)
	if err != nil {
		return m.interrupted(ctx, err)
	}
	// One pseudo-chunk per table carries its key and hash; the bounds are
	// sampled here at a finer grain.
	var tables []verifyChunk
	seen := map[*tableCopy]bool{}
	for _, c := range chunks {
		if !seen[c.t] {
			seen[c.t] = true
			c.lo, c.hi = nil, nil
			tables = append(tables, c)
		}
	}
	return m.eachChunk(ctx, workers, tables, func(w *copyWorker, c verifyChunk) error {
		var bounds []string
		n := int(min(max((c.t.Bytes+resumeChunkBytes-1)/resumeChunkBytes, 1), maxResumeChunks))
		if c.key != "" && n > 1 {
			var err error
			if bounds, err = m.sampleBoundsOn(ctx, w.src.Conn, c.t, c.key, n); err != nil {
				return err
			}
		}
		bucket := "0"
		var args []any
		if len(bounds) > 0 {
			bucket = "pg_catalog.width_bucket(t." + c.key + ", $1::text[]::" + c.keyType + "[])"
			args = append(args, bounds)
		}
		q := "SELECT " + bucket + " AS b, count(*), COALESCE(sum(" + c.hash + "), 0)::text FROM " + pgutil.Quote(m.schema, c.t.Name) + " t GROUP BY 1"
		var src, dst map[int]chunkSum
		var srcErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			src, srcErr = bucketSums(ctx, w.src, q, args)
		}()
		dst, dstErr := bucketSums(ctx, w.dst, q, args)
		<-done
		name := pgutil.Quote(m.schema, c.t.Name)
		if srcErr != nil {
			return pgutil.Wrap(srcErr, "node %s: compare %s", m.src.Name, name)
		}
		if dstErr != nil {
			return pgutil.Wrap(dstErr, "node %s: compare %s", m.dst.Name, name)
		}
		// Runs of differing chunks become ranges of the key.
		of := len(bounds) + 1
		var ranges []verifyChunk
		for i := 0; i < of; i++ {
			if src[i] == dst[i] {
				continue
			}
			r := verifyChunk{t: c.t, key: c.key, keyType: c.keyType, hash: c.hash, n: i + 1, of: of}
			if i > 0 {
				r.lo = &bounds[i-1]
			}
			if i < len(bounds) {
				r.hi = &bounds[i]
			}
			if k := len(ranges) - 1; k >= 0 && ranges[k].n+ranges[k].runLen() == i+1 {
				ranges[k].hi = r.hi
				ranges[k].span++
				continue
			}
			ranges = append(ranges, r)
		}
		bad := 0
		for _, r := range ranges {
			bad += r.runLen()
		}
		share := c.t.Bytes / int64(of)
		mu.Lock()
		res.Chunks += of
		res.Kept += of - bad
		res.KeptBytes += share * int64(of-bad)
		res.ReplacedBytes += share * int64(bad)
		*replaced = append(*replaced, ranges...)
		mu.Unlock()
		if len(ranges) == 0 {
			return nil
		}
		return m.replaceRanges(ctx, w, c.t, ranges)
	})
}

// runLen is how many chunks a merged range of a bare table covers.
func (c verifyChunk) runLen() int { return c.span + 1 }

// bucketSums runs a grouped comparison query on one session.
func bucketSums(ctx context.Context, n *pgutil.Node, q string, args []any) (map[int]chunkSum, error) {
	rows, err := n.Conn.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	out := map[int]chunkSum{}
	for rows.Next() {
		var b int
		var s chunkSum
		if err := rows.Scan(&b, &s.rows, &s.hash); err != nil {
			rows.Close()
			return nil, err
		}
		out[b] = s
	}
	return out, rows.Err()
}

// replaceRanges deletes ranges of a bare table's key on the destination and
// copies them again from the source's snapshot, in one transaction and one
// scan on each side.
func (m *move) replaceRanges(ctx context.Context, w *copyWorker, t *tableCopy, ranges []verifyChunk) error {
	name := pgutil.Quote(m.schema, t.Name)
	var conds []string
	for _, r := range ranges {
		where := strings.TrimPrefix(r.literalWhere(), " WHERE ")
		if where == "" {
			where = "true"
		}
		conds = append(conds, "("+where+")")
	}
	cond := " WHERE " + strings.Join(conds, " OR ")
	if _, err := execSimple(ctx, w.dst.Conn, "BEGIN; SET LOCAL session_replication_role = replica; DELETE FROM "+name+" t"+cond); err != nil {
		execSimple(context.WithoutCancel(ctx), w.dst.Conn, "ROLLBACK") //nolint:errcheck // the session is closed on failure anyway
		return m.interrupted(ctx, pgutil.Wrap(err, "node %s: clear the ranges of %s to copy again", m.dst.Name, name))
	}
	out := "COPY (SELECT " + strings.Join(t.columns, ", ") + " FROM " + name + " t" + cond + ") TO STDOUT"
	if t.binary {
		out += " (FORMAT binary)"
	}
	if err := m.pipeCopy(ctx, w, t, out, name); err != nil {
		return err
	}
	if _, err := execSimple(ctx, w.dst.Conn, "COMMIT"); err != nil {
		return m.interrupted(ctx, pgutil.Wrap(err, "node %s: commit the ranges of %s", m.dst.Name, name))
	}
	return fault.Point(ctx, "move.backfill.replaced")
}

// pipeCopy streams the rows of a source COPY statement into the table on
// the destination, inside the destination session's transaction.
func (m *move) pipeCopy(ctx context.Context, w *copyWorker, t *tableCopy, out, name string) error {
	pr, pw := io.Pipe()
	buf := bufio.NewWriterSize(pw, 256<<10)
	done := make(chan error, 1)
	go func() {
		_, err := w.dst.Conn.PgConn().CopyFrom(ctx, pr, m.copyIn(copyUnit{t: t}))
		if err != nil {
			pr.CloseWithError(errCopyInFailed)
		}
		done <- err
	}()
	counter := &countingWriter{w: buf, t: t}
	_, outErr := w.src.Conn.PgConn().CopyTo(ctx, counter, out)
	if outErr == nil {
		outErr = buf.Flush()
	}
	pw.CloseWithError(outErr)
	inErr := <-done
	switch {
	case outErr != nil && !errors.Is(outErr, errCopyInFailed):
		return m.interrupted(ctx, pgutil.Wrap(outErr, "node %s: copy %s out", m.src.Name, name))
	case inErr != nil:
		return m.interrupted(ctx, pgutil.Wrap(inErr, "node %s: copy %s in", m.dst.Name, name))
	}
	return nil
}
