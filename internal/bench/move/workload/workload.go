// Package workload is an application stand-in for move tests and
// benchmarks: a writer that finds a shard the way applications do (asking
// every node's microsharding_list_active_shards() before each write),
// inserts and updates rows at a fixed rate, retries a write that fails, and
// remembers every write the database acknowledged so that a test can prove
// none was lost.
package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config describes the writes.
type Config struct {
	DSNs          []string // every node the shard may live on
	LibrarySchema string   // default "microsharding"
	Schema        string   // the shard
	// Table must have columns id (bigserial primary key) and val bigint.
	Table string
	// Interval between writes; a write slower than that delays the next.
	Interval time.Duration
	// UpdateShare is the share of writes that update an earlier row.
	UpdateShare float64
}

// Stats summarise a writer's run.
type Stats struct {
	Inserts, Updates int
	// Retries counts writes that failed (no active node, relation gone,
	// lock timeout …) and were tried again.
	Retries int
	// Acked is the number of distinct rows acknowledged.
	Acked int
	// Latencies of acknowledged writes, from the first attempt to the
	// acknowledgement, routing included.
	P50, P99, Max time.Duration
	// Errors are the distinct failure messages seen (retried).
	Errors []string
	// Violations are writes that prove a bug: the shard active on two
	// nodes, an update that found its row missing.
	Violations []string
}

// Writer writes until stopped.
type Writer struct {
	cfg    Config
	conns  []*pgx.Conn
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	acked  map[int64]int64 // id → last acknowledged val
	order  []int64
	// A write whose attempt failed may still have committed (the server
	// went away after the commit, before the reply): such outcomes are
	// ambiguous, not lost. maybe records, per id, the values of updates
	// whose attempts failed; maybeInserts counts failed insert attempts.
	maybe        map[int64][]int64
	maybeInserts int
	initial      int64 // ids up to this existed before the writer
	stats        Stats
	errs         map[string]bool
	lats         []time.Duration
}

// Start connects to every node and begins writing.
func Start(ctx context.Context, cfg Config) (*Writer, error) {
	if cfg.LibrarySchema == "" {
		cfg.LibrarySchema = "microsharding"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 3 * time.Millisecond
	}
	w := &Writer{cfg: cfg, acked: map[int64]int64{}, maybe: map[int64][]int64{}, errs: map[string]bool{}, done: make(chan struct{})}
	for _, d := range cfg.DSNs {
		c, err := pgx.Connect(ctx, d)
		if err != nil {
			w.close()
			return nil, err
		}
		w.conns = append(w.conns, c)
	}
	c, err := w.route(ctx)
	if err != nil {
		w.close()
		return nil, err
	}
	if err := c.QueryRow(ctx, "SELECT COALESCE(max(id), 0) FROM "+w.table()).Scan(&w.initial); err != nil {
		w.close()
		return nil, err
	}
	// Stopping must not cancel a write in flight: a cancelled statement
	// may have committed, and the writer could not tell whether it was
	// acknowledged. The loop checks the stop signal between attempts.
	wctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go w.loop(wctx)
	return w, nil
}

func (w *Writer) table() string { return pgx.Identifier{w.cfg.Schema, w.cfg.Table}.Sanitize() }

func (w *Writer) close() {
	for _, c := range w.conns {
		c.Close(context.Background())
	}
}

// errNoRoute says no node serves the shard at the moment (mid-cutover).
var errNoRoute = errors.New("shard active on no node")

// route asks every node whether it serves the shard.
//
// The nodes are asked one after the other, so a move's switch can fall
// between two answers: the source said "active" just before it let go and
// the destination just after it took over. Two "active" answers prove a
// violation only if the first node still says "active" after the second
// did: a shard does not come back to a node within a round trip.
func (w *Writer) route(ctx context.Context) (*pgx.Conn, error) {
	var found *pgx.Conn
	for i, c := range w.conns {
		if c.IsClosed() {
			// A restarted or unreachable server: connect again, as an
			// application's pool would.
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			fresh, err := pgx.Connect(cctx, w.cfg.DSNs[i])
			cancel()
			if err != nil {
				return nil, err
			}
			w.conns[i], c = fresh, fresh
		}
		active, err := w.serves(ctx, c)
		if err != nil {
			return nil, err
		}
		if !active {
			continue
		}
		if found != nil {
			still, err := w.serves(ctx, found)
			if err != nil {
				return nil, err
			}
			if still {
				w.violation(fmt.Sprintf("%s active on two nodes at once (ports %d and %d)", w.cfg.Schema, found.Config().Port, c.Config().Port))
			}
		}
		found = c
	}
	if found == nil {
		return nil, errNoRoute
	}
	return found, nil
}

// serves asks a node whether the shard is active there.
func (w *Writer) serves(ctx context.Context, c *pgx.Conn) (bool, error) {
	var active bool
	err := c.QueryRow(ctx, "SELECT $1::text IN (SELECT nspname::text FROM pg_catalog.pg_namespace WHERE oid = ANY("+
		pgx.Identifier{w.cfg.LibrarySchema, "microsharding_list_active_shards"}.Sanitize()+"()))", w.cfg.Schema).Scan(&active)
	return active, err
}

func (w *Writer) violation(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.stats.Violations) < 20 {
		w.stats.Violations = append(w.stats.Violations, msg)
	}
}

func (w *Writer) loop(ctx context.Context) {
	defer close(w.done)
	next := time.Now()
	for ctx.Err() == nil {
		w.write(ctx)
		next = next.Add(w.cfg.Interval)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		} else {
			next = time.Now()
		}
	}
}

// write performs one write, retrying until it is acknowledged or the
// writer stops.
func (w *Writer) write(ctx context.Context) {
	update := false
	var id, val int64
	w.mu.Lock()
	val = rand.Int64N(1 << 40)
	if len(w.order) > 0 && rand.Float64() < w.cfg.UpdateShare {
		update = true
		id = w.order[rand.IntN(len(w.order))]
	}
	w.mu.Unlock()
	start := time.Now()
	stop := ctx
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for attempt := 0; stop.Err() == nil; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Millisecond)
		}
		c, err := w.route(ctx)
		if err == nil {
			if update {
				var tag interface{ RowsAffected() int64 }
				tag, err = c.Exec(ctx, "UPDATE "+w.table()+" SET val = $2 WHERE id = $1", id, val)
				if err == nil && tag.RowsAffected() != 1 {
					w.violation(fmt.Sprintf("update of id %d affected %d rows on port %d", id, tag.RowsAffected(), c.Config().Port))
					return
				}
			} else {
				err = c.QueryRow(ctx, "INSERT INTO "+w.table()+" (val) VALUES ($1) RETURNING id", val).Scan(&id)
			}
		}
		if err != nil {
			w.mu.Lock()
			if c != nil {
				if update {
					w.maybe[id] = append(w.maybe[id], val)
				} else {
					w.maybeInserts++
				}
			}
			w.stats.Retries++
			msg := err.Error()
			if i := strings.Index(msg, " (SQLSTATE"); i > 0 {
				msg = msg[:i]
			}
			w.errs[msg] = true
			w.mu.Unlock()
			continue
		}
		lat := time.Since(start)
		w.mu.Lock()
		if update {
			w.stats.Updates++
		} else {
			w.stats.Inserts++
			w.order = append(w.order, id)
		}
		w.acked[id] = val
		w.lats = append(w.lats, lat)
		w.mu.Unlock()
		return
	}
}

// Stop ends the writes and returns the statistics.
func (w *Writer) Stop() Stats {
	w.cancel()
	<-w.done
	w.close()
	return w.Stats()
}

// Stats returns the statistics so far.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Acked = len(w.acked)
	s.Violations = slices.Clone(s.Violations)
	for e := range w.errs {
		s.Errors = append(s.Errors, e)
	}
	sort.Strings(s.Errors)
	lats := slices.Clone(w.lats)
	slices.Sort(lats)
	if n := len(lats); n > 0 {
		s.P50, s.P99, s.Max = lats[n/2], lats[min(n-1, n*99/100)], lats[n-1]
	}
	return s
}

// Written returns how many writes were acknowledged so far.
func (w *Writer) Written() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lats)
}

// LatenciesFrom returns the latencies of the writes acknowledged after the
// first n.
func (w *Writer) LatenciesFrom(n int) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n > len(w.lats) {
		return nil
	}
	return slices.Clone(w.lats[n:])
}

// Verify checks, on the node given, that every acknowledged write is there
// with its last acknowledged value and that no row the writer did not
// acknowledge appeared.
func (w *Writer) Verify(ctx context.Context, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, "SELECT id, val FROM "+w.table()+" WHERE id > $1", w.initial)
	if err != nil {
		return err
	}
	got := map[int64]int64{}
	for rows.Next() {
		var id, val int64
		if err := rows.Scan(&id, &val); err != nil {
			return err
		}
		got[id] = val
	}
	if err := rows.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var problems []string
	for id, val := range w.acked {
		g, ok := got[id]
		switch {
		case !ok && id > w.initial:
			problems = append(problems, fmt.Sprintf("row %d missing", id))
		case ok && g != val && !slices.Contains(w.maybe[id], g):
			problems = append(problems, fmt.Sprintf("row %d has val %d, last acknowledged %d", id, g, val))
		}
	}
	extra := 0
	for id := range got {
		if _, ok := w.acked[id]; !ok {
			extra++
			if extra > w.maybeInserts {
				problems = append(problems, fmt.Sprintf("row %d was never acknowledged (and more rows appeared than inserts failed)", id))
			}
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("%d of %d acknowledged rows wrong: %s", len(problems), len(w.acked), strings.Join(problems[:min(len(problems), 10)], "; "))
	}
	return nil
}
