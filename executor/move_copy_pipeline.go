package executor

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/pgutil"
)

// backfillJob is the fast copy's work, spread over sessions: the copy
// units first, biggest first; then the index builds of the post-data
// section, each as soon as the rows of its table are in, so that the
// indexes of the tables copied early are built while the big ones are
// still copying; then, on one session, the rest of the post-data section
// in the script's order.
type backfillJob struct {
	m     *move
	plan  []*tableCopy
	units []copyUnit
	// leaves finds the copy of a build's table.
	leaves map[string]*tableCopy
	// sessions is how many destination sessions the builds may use.
	sessions int

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu         sync.Mutex
	cond       *sync.Cond
	unitsTaken int
	unitsLeft  int
	pd         *postData // nil until the post-data section is known
	taken      []bool
	building   map[string]bool
	built      int
}

// runBackfill runs the job on the workers (and on up to sessions
// destination sessions in all for the builds, opened once the post-data
// section is known), reporting progress. postData delivers the post-data
// section; it may take a while (pg_dump).
func (m *move) runBackfill(ctx context.Context, workers []*copyWorker, plan []*tableCopy, units []copyUnit, sessions int, postData func(context.Context) (string, error)) error {
	j := &backfillJob{m: m, plan: plan, units: units, unitsLeft: len(units), leaves: map[string]*tableCopy{}, sessions: sessions, building: map[string]bool{}}
	j.cond = sync.NewCond(&j.mu)
	for _, t := range plan {
		j.leaves[t.Name] = t
	}
	j.ctx, j.cancel = context.WithCancelCause(ctx)
	defer j.cancel(nil)
	stop := context.AfterFunc(j.ctx, func() {
		j.mu.Lock()
		j.cond.Broadcast()
		j.mu.Unlock()
	})
	defer stop()

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { j.work(w) })
	}
	wg.Go(func() {
		script, err := postData(j.ctx)
		if err != nil {
			j.cancel(err)
			return
		}
		pd := parsePostData(script)
		pd.builds = m.pendingBuilds(pd.builds)
		slices.SortStableFunc(pd.builds, func(a, b ddlBuild) int { return cmp.Compare(j.size(b.table), j.size(a.table)) })
		j.mu.Lock()
		j.pd, j.taken = &pd, make([]bool, len(pd.builds))
		j.cond.Broadcast()
		j.mu.Unlock()
		for range min(j.sessions, len(pd.builds)) - len(workers) {
			dst, err := pgutil.ConnectAs(j.ctx, m.spec.To.Name, m.spec.To.DSN)
			if err != nil {
				j.cancel(err)
				return
			}
			wg.Go(func() {
				defer dst.Close()
				j.work(&copyWorker{dst: dst})
			})
		}
	})

	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	began := time.Now()
	tick := time.NewTicker(m.opts.PollInterval)
	defer tick.Stop()
	lastJournal := began
	for {
		select {
		case <-finished:
			if err := context.Cause(j.ctx); err != nil {
				return m.interrupted(ctx, err)
			}
			return j.finish(workers)
		case now := <-tick.C:
			if len(plan) == 0 {
				continue
			}
			p := m.copyProgress(plan, now.Sub(began))
			m.mu.Lock()
			m.progress.Bytes, m.progress.Rows, m.progress.Tables = p.Bytes, p.Rows, p.Tables
			st := m.progress
			m.mu.Unlock()
			m.rep.Report(Event{Time: now, Shard: m.spec.Shard, Schema: m.schema, Phase: PhaseBackfill, Kind: EventProgress, Copy: p, Message: j.describeBuilds(), LagBytes: -1})
			if now.Sub(lastJournal) >= 5*time.Second {
				m.record(ctx, st)
				lastJournal = now
			}
		}
	}
}

// finish runs the rest of the post-data section on one session, after
// every build. The builds left the sessions' settings anywhere: the rest
// starts from the defaults and replays the script's settings in order.
func (j *backfillJob) finish(workers []*copyWorker) error {
	m := j.m
	var conn *pgconn.PgConn
	if len(workers) > 0 {
		conn = workers[0].dst.Conn.PgConn()
	} else {
		dst, err := pgutil.ConnectAs(j.ctx, m.spec.To.Name, m.spec.To.DSN)
		if err != nil {
			return err
		}
		defer dst.Close()
		conn = dst.Conn.PgConn()
	}
	if _, err := conn.Exec(j.ctx, "RESET ALL").ReadAll(); err != nil {
		return m.interrupted(j.ctx, pgutil.Wrap(err, "node %s: reset the session", m.dst.Name))
	}
	for _, q := range j.pd.rest {
		if _, err := conn.Exec(j.ctx, q).ReadAll(); err != nil && !(m.continuing() && alreadyThere(err)) {
			return m.interrupted(j.ctx, pgutil.Wrap(err, "node %s: %s", m.dst.Name, abbreviate(q)))
		}
	}
	return nil
}

// work copies units while there are any, then builds indexes while there
// are any.
func (j *backfillJob) work(w *copyWorker) {
	m := j.m
	if w.src != nil {
		for {
			u, ok := j.takeUnit()
			if !ok {
				break
			}
			if err := m.copyUnit(j.ctx, w, u); err != nil {
				j.cancel(err)
				return
			}
			if j.unitDone() {
				m.subPhase(j.ctx, "indexes", "every row copied; building the remaining indexes and constraints")
				if err := fault.Point(j.ctx, "move.backfill.copied"); err != nil {
					j.cancel(err)
					return
				}
			}
		}
		// The snapshot is no longer needed by this session, unless the
		// verification gate compares the copy with it afterwards.
		if !m.verifiesCopy() {
			if _, err := execSimple(j.ctx, w.src.Conn, "COMMIT"); err != nil {
				j.cancel(pgutil.Wrap(err, "node %s: end a copy transaction", m.src.Name))
				return
			}
			w.src.Close()
		}
	}
	conn := w.dst.Conn.PgConn()
	lastSetup := ""
	for {
		b, alone, ok := j.nextBuild()
		if !ok {
			return
		}
		// The builds run side by side; a build's own parallel workers
		// would only crowd the server's CPUs then. A build left alone may
		// use them.
		setup := strings.TrimPrefix(b.setup+";\nSET max_parallel_maintenance_workers = 0", ";\n")
		if alone {
			setup = strings.TrimPrefix(b.setup+";\nRESET max_parallel_maintenance_workers", ";\n")
		}
		if setup != lastSetup {
			if _, err := conn.Exec(j.ctx, setup).ReadAll(); err != nil {
				j.cancel(pgutil.Wrap(err, "node %s: prepare the session for %s", m.dst.Name, b.name))
				return
			}
			lastSetup = setup
		}
		if _, err := conn.Exec(j.ctx, b.sql).ReadAll(); err != nil {
			j.cancel(pgutil.Wrap(err, "node %s: %s", m.dst.Name, abbreviate(b.sql)))
			return
		}
		j.mu.Lock()
		delete(j.building, b.name)
		j.built++
		j.cond.Broadcast()
		j.mu.Unlock()
	}
}

func (j *backfillJob) takeUnit() (copyUnit, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.ctx.Err() != nil || j.unitsTaken == len(j.units) {
		return copyUnit{}, false
	}
	j.unitsTaken++
	return j.units[j.unitsTaken-1], true
}

// unitDone counts a finished unit and says whether it was the last.
func (j *backfillJob) unitDone() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.unitsLeft--
	j.cond.Broadcast()
	return j.unitsLeft == 0
}

// nextBuild waits for a build whose table is copied; ok is false when
// none is left or the job failed. alone says that nothing else runs or
// waits.
func (j *backfillJob) nextBuild() (b ddlBuild, alone, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		if j.ctx.Err() != nil {
			return ddlBuild{}, false, false
		}
		if j.pd != nil {
			found, left := -1, 0
			for i, b := range j.pd.builds {
				if j.taken[i] {
					continue
				}
				left++
				if found < 0 && j.ready(b) {
					found = i
				}
			}
			if found >= 0 {
				b := j.pd.builds[found]
				j.taken[found] = true
				alone := left == 1 && j.unitsLeft == 0 && len(j.building) == 0
				j.building[b.name] = true
				return b, alone, true
			}
			if left == 0 {
				return ddlBuild{}, false, false
			}
		}
		j.cond.Wait()
	}
}

// ready says whether a build may start: its table is copied. A build on
// any other table (a partitioned table's, say, which may lock its
// partitions) waits for the whole copy.
func (j *backfillJob) ready(b ddlBuild) bool {
	if t := j.leaves[b.table]; t != nil {
		return t.pending.Load() == 0
	}
	return j.unitsLeft == 0
}

func (j *backfillJob) size(table string) int64 {
	if t := j.leaves[table]; t != nil {
		return t.Bytes
	}
	return 0
}

// describeBuilds says what the index builds are doing, for progress lines.
func (j *backfillJob) describeBuilds() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.pd == nil || j.built == 0 && len(j.building) == 0 {
		return ""
	}
	msg := fmt.Sprintf("indexes and constraints: %d/%d built", j.built, len(j.pd.builds))
	if len(j.building) > 0 {
		names := make([]string, 0, len(j.building))
		for n := range j.building {
			names = append(names, pgutil.Quote(n))
		}
		slices.Sort(names)
		msg += "; building " + strings.Join(names, ", ")
	}
	return msg
}
