package runner

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/state"
)

// The model test edits a topology at random, the way a team does over
// months — nodes added, deleted from the files, retired; shards re-placed,
// drained, removed, activated and deactivated — and after every edit plans
// and applies it on real servers, sometimes interrupting the apply and
// running it again. After every step it checks what pgms promises: no
// shard active on two nodes, no acknowledged row missing from its shard's
// home, and, after a successful apply, a plan with no changes and no
// leftover. A failing seed prints its sequence and reruns alone with
// -model.seed.

var (
	modelSequences = flag.Int("model.sequences", 200, "random edit sequences the model test runs")
	modelSteps     = flag.Int("model.steps", 10, "edits per sequence")
	modelSeed      = flag.Uint64("model.seed", 0, "run only the sequence of this seed")
)

// The runner's tests share four servers; each sequence takes a database
// on each, so sequences run side by side.
func TestMain(m *testing.M) {
	os.Exit(pgtest.MainWith(m, 4, pgtest.Options{Settings: map[string]string{
		// Subscriptions start streaming without the default second of wait.
		"wal_retrieve_retry_interval": "20ms",
	}}))
}

var modelNodes = []string{"a", "b", "c", "d"}

const modelShards = 8 // shard numbers 0..7

// model is the desired topology the sequence edits.
type model struct {
	inFiles map[string]bool // node blocks
	retired map[string]bool // removed { node = … }
	drain   map[string]bool
	place   map[int]string // shard → node
	active  map[int]bool
	removed map[int]bool // removed { shards = … }
	// registered: nodes an apply has seen in the files (only those can be
	// deleted from the files and still be visited)
	registered map[string]bool
	// cleanup: drop every leftover before the next apply, as pgms cleanup
	// --retain 0 does (renamed sources are otherwise kept for a week).
	cleanup bool
}

func newModel() *model {
	return &model{inFiles: map[string]bool{"a": true, "b": true}, retired: map[string]bool{}, drain: map[string]bool{},
		place: map[int]string{0: "a", 1: "a", 2: "b", 3: "b"}, active: map[int]bool{0: true, 1: true, 2: true, 3: true},
		removed: map[int]bool{}, registered: map[string]bool{}}
}

func (m *model) nodes() []string {
	var out []string
	for _, n := range modelNodes {
		if m.inFiles[n] {
			out = append(out, n)
		}
	}
	return out
}

// edit makes one random change that keeps the files valid, and says what
// it did.
func (m *model) edit(r *rand.Rand) string {
	for {
		nodes := m.nodes()
		pick := func(list []string) string { return list[r.IntN(len(list))] }
		placed := func() []int {
			var out []int
			for s := range m.place {
				out = append(out, s)
			}
			sort.Ints(out)
			return out
		}()
		switch r.IntN(10) {
		case 0, 1: // re-place a shard
			if len(placed) == 0 || len(nodes) < 2 {
				continue
			}
			s, n := placed[r.IntN(len(placed))], pick(nodes)
			if m.place[s] == n {
				continue
			}
			m.place[s] = n
			return fmt.Sprintf("place shard %d on %s", s, n)
		case 2: // add a node
			var out []string
			for _, n := range modelNodes {
				if !m.inFiles[n] {
					out = append(out, n)
				}
			}
			if len(out) == 0 {
				continue
			}
			n := pick(out)
			m.inFiles[n], m.retired[n] = true, false
			return "add node " + n
		case 3: // delete a node block, its shards placed elsewhere
			if len(nodes) < 2 {
				continue
			}
			n := pick(nodes)
			m.inFiles[n], m.drain[n] = false, false
			var rest []string
			for _, o := range nodes {
				if o != n {
					rest = append(rest, o)
				}
			}
			// In shard order: a map's order would draw the random
			// numbers differently on every run of the same seed.
			for _, s := range placed {
				if m.place[s] == n {
					m.place[s] = pick(rest)
				}
			}
			return "delete node block " + n + " and place its shards elsewhere"
		case 4: // retire a deleted node
			var out []string
			for _, n := range modelNodes {
				if !m.inFiles[n] && !m.retired[n] && m.registered[n] {
					out = append(out, n)
				}
			}
			if len(out) == 0 {
				continue
			}
			n := pick(out)
			m.retired[n] = true
			return "retire node " + n
		case 5: // drain or undrain
			if len(nodes) == 0 {
				continue
			}
			n := pick(nodes)
			m.drain[n] = !m.drain[n]
			return fmt.Sprintf("drain = %t on %s", m.drain[n], n)
		case 6: // remove a shard
			if len(placed) < 2 {
				continue
			}
			s := placed[r.IntN(len(placed))]
			delete(m.place, s)
			delete(m.active, s)
			m.removed[s] = true
			return fmt.Sprintf("remove shard %d", s)
		case 7: // place a new (or removed) shard
			var free []int
			for s := range modelShards {
				if _, ok := m.place[s]; !ok {
					free = append(free, s)
				}
			}
			if len(free) == 0 || len(nodes) == 0 {
				continue
			}
			s := free[r.IntN(len(free))]
			delete(m.removed, s)
			m.place[s], m.active[s] = pick(nodes), r.IntN(4) > 0
			return fmt.Sprintf("place new shard %d on %s (active %t)", s, m.place[s], m.active[s])
		case 8: // flip
			if len(placed) == 0 {
				continue
			}
			s := placed[r.IntN(len(placed))]
			m.active[s] = !m.active[s]
			return fmt.Sprintf("shard %d active = %t", s, m.active[s])
		case 9:
			m.cleanup = true
			return "pgms cleanup --retain 0"
		}
	}
}

// hcl writes the model as topology files.
func (m *model) hcl(dsns map[string]string, migrate string) string {
	var b strings.Builder
	if migrate != "" {
		fmt.Fprintf(&b, "cluster {\n  migrate_command = [%q]\n}\n", migrate)
	}
	for _, n := range modelNodes {
		switch {
		case m.inFiles[n]:
			fmt.Fprintf(&b, "node %q {\n  dsn = %q\n  drain = %t\n}\n", n, dsns[n], m.drain[n])
		case m.retired[n]:
			fmt.Fprintf(&b, "removed {\n  node = %q\n}\n", n)
		}
	}
	shards := make([]int, 0, len(m.place))
	for s := range m.place {
		shards = append(shards, s)
	}
	sort.Ints(shards)
	for _, s := range shards {
		fmt.Fprintf(&b, "shards \"%d\" {\n  node = %q\n  active = %t\n}\n", s, m.place[s], m.active[s])
	}
	for s := range modelShards {
		if m.removed[s] {
			fmt.Fprintf(&b, "removed {\n  shards = \"%d\"\n}\n", s)
		}
	}
	return b.String()
}

// world is one sequence's servers and what it wrote to them.
type world struct {
	t      *testing.T
	dir    string
	dsns   map[string]string
	conns  map[string]*pgx.Conn
	acked  map[int][]int64 // shard → ids of acknowledged rows
	log    []string
	rounds int
}

// interruptPoints are where an apply may be stopped short.
var interruptPoints = []string{
	"move.preflight.end", "move.ddl.end", "move.replicate.end", "move.backfill.copied",
	"move.backfill.end", "move.catch-up.end", "move.cutover.locked", "move.cutover.committed", "move.finish.end",
}

func (w *world) apply(ctx context.Context) error {
	t, diags := config.Load(w.dir)
	if diags.HasErrors() {
		return fmt.Errorf("topology: %v", diags)
	}
	res, err := Apply(ctx, ApplyRequest{Topology: t, Invocation: state.ThisProcess("apply", "model"),
		Move: executor.MoveOptions{PollInterval: 20 * time.Millisecond, StallTimeout: 30 * time.Second, Strategy: os.Getenv("MODEL_COPY")},
		Log:  io.Discard, Output: io.Discard})
	if res.Plan != nil {
		for _, s := range res.Plan.Steps {
			w.log = append(w.log, "      "+s.Symbol()+" "+planner.Headline(s))
		}
	}
	return err
}

// step applies the model's files, maybe interrupting a first apply at a
// random point, and checks the invariants.
func (w *world) step(r *rand.Rand, m *model, migrate string) {
	t := w.t
	if err := os.WriteFile(filepath.Join(w.dir, "topology.pgms.hcl"), []byte(m.hcl(w.dsns, migrate)), 0o644); err != nil {
		t.Fatal(err)
	}
	for s := range m.removed {
		delete(w.acked, s) // dropped on purpose
	}
	if m.cleanup {
		m.cleanup = false
		w.cleanup()
	}
	if r.IntN(4) == 0 {
		point := interruptPoints[r.IntN(len(interruptPoints))]
		ctx, cancel := context.WithCancel(context.Background())
		ctx = fault.WithHook(ctx, func(p string) error {
			if p == point {
				cancel()
				return errors.New("interrupted by the model test")
			}
			return nil
		})
		err := w.apply(ctx)
		cancel()
		w.log = append(w.log, fmt.Sprintf("  interrupted apply at %s: %v", point, errText(err)))
		w.check(false)
	}
	if err := w.apply(context.Background()); err != nil {
		t.Fatalf("apply: %v\n%s", err, strings.Join(w.log, "\n"))
	}
	for n := range m.inFiles {
		if m.inFiles[n] {
			m.registered[n] = true
		}
	}
	for n := range m.retired {
		if m.retired[n] {
			m.registered[n] = false
		}
	}
	w.check(true)
	w.write(m)
}

func errText(err error) string {
	if err == nil {
		return "finished"
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

// homes reads where each shard is active, and its schema's nodes.
func (w *world) homes() (active map[int][]string, present map[int][]string) {
	active, present = map[int][]string{}, map[int][]string{}
	for _, n := range modelNodes {
		c := w.conns[n]
		var names []string
		var lib bool
		if err := c.QueryRow(context.Background(), "SELECT to_regnamespace('microsharding') IS NOT NULL").Scan(&lib); err != nil {
			w.t.Fatal(err)
		}
		if lib {
			if err := c.QueryRow(context.Background(), "SELECT microsharding.microsharding_list_active_shards()::text[]").Scan(&names); err != nil {
				w.t.Fatal(err)
			}
		}
		for _, s := range names {
			var shard int
			fmt.Sscanf(s, "sh%d", &shard)
			active[shard] = append(active[shard], n)
		}
		rows, err := c.Query(context.Background(), `SELECT nspname::text FROM pg_namespace WHERE nspname ~ '^sh[0-9]{4}$'
			AND NOT starts_with(COALESCE(obj_description(oid, 'pg_namespace'), ''), 'pgms: unfinished copy')`)
		if err != nil {
			w.t.Fatal(err)
		}
		schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			w.t.Fatal(err)
		}
		for _, s := range schemas {
			var shard int
			fmt.Sscanf(s, "sh%d", &shard)
			present[shard] = append(present[shard], n)
		}
	}
	return active, present
}

// check verifies the invariants; settled says a successful apply just
// ended, so the plan must show nothing to do.
func (w *world) check(settled bool) {
	t := w.t
	active, present := w.homes()
	for s, on := range active {
		if len(on) > 1 {
			t.Fatalf("shard %d active on %v\n%s", s, on, strings.Join(w.log, "\n"))
		}
	}
	for s, ids := range w.acked {
		if len(ids) == 0 {
			continue
		}
		home := present[s]
		if len(home) != 1 {
			if settled {
				t.Fatalf("shard %d with acknowledged rows is on %v\n%s", s, home, strings.Join(w.log, "\n"))
			}
			continue // mid-move after an interruption: the source was renamed
		}
		var n int
		err := w.conns[home[0]].QueryRow(context.Background(), fmt.Sprintf("SELECT count(*) FROM sh%04d.users WHERE id = ANY($1)", s), ids).Scan(&n)
		if err != nil || n != len(ids) {
			t.Fatalf("shard %d on %s holds %d of %d acknowledged rows (%v)\n%s", s, home[0], n, len(ids), err, strings.Join(w.log, "\n"))
		}
	}
	if !settled {
		return
	}
	top, diags := config.Load(w.dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	p, _ := Plan(context.Background(), top, time.Now())
	if p.HasErrors() || p.HasChanges() || len(p.InProgress) > 0 {
		var b strings.Builder
		for _, s := range p.Steps {
			fmt.Fprintf(&b, "  %s %s (%s)\n", s.Kind, s.Object+fmt.Sprint(s.Shards), s.Reason)
		}
		for _, e := range p.Errors {
			fmt.Fprintf(&b, "  error: %s: %s\n", e.Summary, e.Detail)
		}
		t.Fatalf("after a successful apply the plan is not empty:\n%s\n%s", b.String(), strings.Join(w.log, "\n"))
	}
}

// cleanup drops every leftover of every node the files or the registry
// know, as pgms cleanup --retain 0 --yes does.
func (w *world) cleanup() {
	top, diags := config.Load(w.dir)
	if diags.HasErrors() {
		w.t.Fatal(diags)
	}
	live := Refresh(context.Background(), top, false)
	verdicts := live.Triage(state.CleanupPolicy{RetainOld: 0})
	nodes := map[string]*pgutil.Node{}
	for _, f := range FleetOf(top, live).Nodes {
		n, err := pgutil.Connect(context.Background(), f.DSN)
		if err != nil {
			w.t.Fatal(err)
		}
		n.Name = f.Name
		defer n.Close()
		nodes[f.Name] = n
	}
	if _, err := executor.CleanupAll(context.Background(), nodes, verdicts, executor.CleanupSpec{}); err != nil {
		w.t.Fatalf("cleanup: %v\n%s", err, strings.Join(w.log, "\n"))
	}
}

// write inserts a row into every active shard, through its home, and
// remembers it as acknowledged.
func (w *world) write(m *model) {
	active, _ := w.homes()
	for s := range modelShards {
		if m.removed[s] {
			delete(w.acked, s)
		}
	}
	for s, on := range active {
		var id int64
		// The application's own migration, when the files run none.
		_, err := w.conns[on[0]].Exec(context.Background(), fmt.Sprintf("CREATE TABLE IF NOT EXISTS sh%04d.users (id bigserial PRIMARY KEY, name text, email text)", s))
		if err == nil {
			err = w.conns[on[0]].QueryRow(context.Background(), fmt.Sprintf("INSERT INTO sh%04d.users (name, email) VALUES ('m', 'm@x') RETURNING id", s)).Scan(&id)
		}
		if err != nil {
			w.t.Fatalf("write to shard %d on %s: %v", s, on[0], err)
		}
		w.acked[s] = append(w.acked[s], id)
	}
}

func TestModel(t *testing.T) {
	// Most sequences run no migrate command (the model's writer creates
	// its table): a command per allocation costs a shell and a psql.
	migrate, err := filepath.Abs("../examples/demo/migrate.sh")
	if err != nil {
		t.Fatal(err)
	}
	seeds := make([]uint64, 0, *modelSequences)
	if *modelSeed != 0 {
		seeds = append(seeds, *modelSeed)
	} else {
		base := uint64(time.Now().UnixNano())
		if env := os.Getenv("PGMS_MODEL_SEED"); env != "" {
			fmt.Sscan(env, &base)
		}
		for i := range *modelSequences {
			seeds = append(seeds, base+uint64(i))
		}
	}
	began := time.Now()
	var mu sync.Mutex
	steps := 0
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(seed, 0x70676d73))
			dbs := pgtest.Databases(t, 4)
			w := &world{t: t, dir: t.TempDir(), dsns: map[string]string{}, conns: map[string]*pgx.Conn{}, acked: map[int][]int64{}}
			for i, n := range modelNodes {
				w.dsns[n], w.conns[n] = dbs[i].DSN, pgtest.Connect(t, dbs[i].DSN)
			}
			m := newModel()
			migrate := migrate
			if seed%8 != 0 {
				migrate = ""
			}
			w.log = append(w.log, fmt.Sprintf("seed %d (rerun: go test ./runner -run 'TestModel/%d' -model.seed=%d)", seed, seed, seed), "  start: shards 0-1 on a, 2-3 on b")
			w.step(r, m, migrate)
			for range *modelSteps {
				w.log = append(w.log, "  "+m.edit(r))
				w.step(r, m, migrate)
			}
			mu.Lock()
			steps += *modelSteps + 1
			mu.Unlock()
		})
	}
	t.Cleanup(func() {
		t.Logf("%d sequences, %d steps in %v", len(seeds), steps, time.Since(began).Round(time.Millisecond))
	})
}
