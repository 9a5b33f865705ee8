package executor

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/bench/move/workload"
	"github.com/pgms-dev/pgms/internal/netfault"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/sql"
)

// The partition tests put a fault proxy between pgms and a node, or on
// the replication link between the nodes, and switch it at a named point
// of the move: pass, reset, or blackhole (bytes held, nothing errors, as
// in a real partition). They run on servers of their own, because some
// stop, promote or slow a server down.

// isolated starts two servers of its own for one test, each with a
// database "app" holding the library.
func isolated(t *testing.T) (src, dst *pgtest.Server) {
	t.Helper()
	cl, err := pgtest.Start(context.Background(), 2, pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	for _, s := range cl.Servers {
		admin := pgtest.Connect(t, s.DSN("postgres"))
		pgtest.Exec(t, admin, "CREATE DATABASE app")
		if _, err := sql.Install(context.Background(), pgtest.Connect(t, s.DSN("app")), sql.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	return cl.Servers[0], cl.Servers[1]
}

// proxied starts a fault proxy in front of a server and returns it with
// the DSN of database app through it.
func proxied(t *testing.T, s *pgtest.Server) (*netfault.Proxy, string) {
	t.Helper()
	p, err := netfault.Start(s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	u, _ := url.Parse(s.DSN("app"))
	u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port()))
	return p, u.String()
}

// shortTimeouts makes the move's own deadlines short enough for tests.
func shortTimeouts(t *testing.T) {
	q, st := queryTimeout, stepTimeout
	queryTimeout, stepTimeout = 3*time.Second, 6*time.Second
	t.Cleanup(func() { queryTimeout, stepTimeout = q, st })
}

type partitioned struct {
	t          *testing.T
	src, dst   *pgtest.Server
	a, b       *pgx.Conn
	srcDSN     string // how pgms reaches the source (maybe through a proxy)
	dstDSN     string
	publisher  string // how the destination reaches the source
	w          *workload.Writer
	shard      int
	schemaName string
}

func newPartitioned(t *testing.T, src, dst *pgtest.Server) *partitioned {
	p := &partitioned{t: t, src: src, dst: dst, srcDSN: src.DSN("app"), dstDSN: dst.DSN("app"), shard: 1, schemaName: "sh0001"}
	p.a, p.b = pgtest.Connect(t, src.DSN("app")), pgtest.Connect(t, dst.DSN("app"))
	pgtest.Exec(t, p.a, "SELECT microsharding.microsharding_ensure_exist(1)")
	pgtest.Exec(t, p.a, "SET search_path = sh0001; "+writerTable+"; RESET search_path")
	pgtest.Exec(t, p.a, "SELECT microsharding.microsharding_ensure_active(1)")
	return p
}

func (p *partitioned) write() {
	w, err := workload.Start(context.Background(), workload.Config{
		DSNs: []string{p.src.DSN("app"), p.dst.DSN("app")}, Schema: p.schemaName, Table: "items", Interval: 3 * time.Millisecond, UpdateShare: 0.4,
	})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { w.Stop() })
	time.Sleep(100 * time.Millisecond)
	p.w = w
}

func (p *partitioned) spec() MoveSpec {
	return MoveSpec{Shard: p.shard, Activate: true,
		From: Endpoint{Name: "a", DSN: p.srcDSN, PublisherDSN: p.publisher},
		To:   Endpoint{Name: "b", DSN: p.dstDSN},
		Options: MoveOptions{PollInterval: 50 * time.Millisecond, MaxPause: time.Second,
			StandbyTimeout: 3 * time.Second, StallTimeout: 60 * time.Second}}
}

// check verifies every acknowledged write on the destination and the end
// state of a finished move.
func (p *partitioned) check() workload.Stats {
	p.t.Helper()
	st := checkWriter(p.t, p.w, pgtest.Connect(p.t, p.dst.DSN("app")))
	c := &cluster{t: p.t, a: pgtest.Connect(p.t, p.src.DSN("app")), b: pgtest.Connect(p.t, p.dst.DSN("app"))}
	if got := c.active(c.a); len(got) != 0 {
		p.t.Errorf("source serves %v", got)
	}
	if got := c.active(c.b); len(got) != 1 {
		p.t.Errorf("destination serves %v", got)
	}
	c.noArtifacts()
	return st
}

// TestAmbiguousCommitIsFoundOut: pgms loses the source right after the
// cutover's COMMIT went out. The move does not guess: it finds out, once
// the source answers again, that the commit took effect, and finishes.
// When the source stays silent past CommitResolveTimeout, the move stops
// undoing nothing, and a later run finishes it.
func TestAmbiguousCommitIsFoundOut(t *testing.T) {
	shortTimeouts(t)
	for _, heals := range []bool{true, false} {
		t.Run(map[bool]string{true: "heals", false: "stays_silent"}[heals], func(t *testing.T) {
			src, dst := isolated(t)
			proxy, viaProxy := proxied(t, src)
			p := newPartitioned(t, src, dst)
			p.srcDSN, p.publisher = viaProxy, src.DSN("app")
			p.write()
			spec := p.spec()
			spec.Options.CommitResolveTimeout = 60 * time.Second
			heal := 5 * time.Second
			if !heals {
				spec.Options.CommitResolveTimeout, heal = 2*time.Second, 12*time.Second
			}
			ev := newEvents()
			ctx := hookAt("move.cutover.before-commit", func() error {
				// The COMMIT travels with the read of the WAL position, in one
				// message: blackhole right after its end.
				fired := proxy.SwitchAfter(netfault.Upstream, []byte("pg_current_wal_insert_lsn()::text\x00"), netfault.Blackhole)
				go func() {
					<-fired
					time.Sleep(heal)
					proxy.Set(netfault.Pass)
				}()
				return nil
			})
			_, err := Move(ctx, spec, nil, ev)
			events := ev.text()
			if heals {
				if err != nil {
					t.Fatalf("move: %v\n%s", err, events)
				}
				if !strings.Contains(events, "the reply to the cutover's COMMIT on a was lost") || !strings.Contains(events, "had taken effect") || strings.Contains(events, "undo") {
					t.Errorf("events:\n%s", events)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), "whether it took effect could not be learned") || !strings.Contains(err.Error(), "Nothing was undone") {
					t.Fatalf("move: %v\n%s", err, events)
				}
				if strings.Contains(events, "undo") {
					t.Errorf("undone on a guess:\n%s", events)
				}
				time.Sleep(heal) // the partition heals
				if _, err := Move(context.Background(), spec, nil, nil); err != nil {
					t.Fatalf("rerun: %v", err)
				}
			}
			p.check()
		})
	}
}

// TestSourceLockReleasedWithinBudget: pgms loses the source while it holds
// the cutover lock; the server ends the session, releasing the lock,
// within the pause budget, so writers are blocked about that long and no
// longer; the move then tries again and finishes once the source answers.
func TestSourceLockReleasedWithinBudget(t *testing.T) {
	shortTimeouts(t)
	src, dst := isolated(t)
	proxy, viaProxy := proxied(t, src)
	p := newPartitioned(t, src, dst)
	p.srcDSN, p.publisher = viaProxy, src.DSN("app")
	p.write()
	var before int
	ctx := hookAt("move.cutover.locked", func() error {
		before = p.w.Written()
		proxy.Set(netfault.Blackhole)
		go func() {
			time.Sleep(6 * time.Second)
			proxy.Set(netfault.Pass)
		}()
		return nil
	})
	spec := p.spec()
	res, err := Move(ctx, spec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var worst time.Duration
	for _, l := range p.w.LatenciesFrom(before) {
		worst = max(worst, l)
	}
	limit := spec.Options.MaxPause + 700*time.Millisecond
	if worst > limit {
		t.Errorf("a write was blocked %v with pgms cut off under the lock (budget %v)", worst, spec.Options.MaxPause)
	}
	t.Logf("writers blocked at most %v while pgms was cut off; %d retries", worst, res.Retries)
	p.check()
}

// TestActivationAfterCommitIsBounded: the destination stops answering
// pgms right after the commit; activation attempts are bounded and
// retried, and the move reports the outage once it got through.
func TestActivationAfterCommitIsBounded(t *testing.T) {
	shortTimeouts(t)
	src, dst := isolated(t)
	proxy, viaProxy := proxied(t, dst)
	p := newPartitioned(t, src, dst)
	p.dstDSN = viaProxy
	p.write()
	ev := newEvents()
	ctx := hookAt("move.cutover.committed", func() error {
		proxy.Set(netfault.Blackhole)
		go func() {
			time.Sleep(4 * time.Second)
			proxy.Set(netfault.Pass)
		}()
		return nil
	})
	res, err := Move(ctx, p.spec(), nil, ev)
	if err != nil {
		t.Fatalf("move: %v\n%s", err, ev.text())
	}
	if res.Outage < 3*time.Second || res.Outage > 20*time.Second || !strings.Contains(ev.text(), "served by no node for") {
		t.Errorf("outage %v\n%s", res.Outage, ev.text())
	}
	t.Logf("served by no node for %v", res.Outage)
	p.check()
}

// TestBlackholeDuringCopy: the source goes silent during the copy. The
// copy notices within its stall timeout, and the move undoes itself once
// the source answers again, instead of hanging as long as the partition
// lasts.
func TestBlackholeDuringCopy(t *testing.T) {
	shortTimeouts(t)
	src, dst := isolated(t)
	proxy, viaProxy := proxied(t, src)
	p := newPartitioned(t, src, dst)
	pgtest.Exec(t, p.a, "INSERT INTO sh0001.items (val) SELECT g FROM generate_series(1, 200000) g")
	p.srcDSN, p.publisher = viaProxy, src.DSN("app")
	spec := p.spec()
	spec.Options.StallTimeout = 2 * time.Second
	ev := newEvents()
	ctx := hookAt("move.replicate.end", func() error {
		proxy.Set(netfault.Blackhole)
		go func() {
			time.Sleep(4 * time.Second)
			proxy.Set(netfault.Pass)
		}()
		return nil
	})
	began := time.Now()
	_, err := Move(ctx, spec, nil, ev)
	if err == nil || !strings.Contains(err.Error(), "moved no data for 2s") {
		t.Fatalf("move: %v\n%s", err, ev.text())
	}
	if took := time.Since(began); took > 60*time.Second {
		t.Errorf("took %v", took)
	}
	if !strings.Contains(ev.text(), "undone: sh0001 is on a as before") {
		t.Errorf("events:\n%s", ev.text())
	}
	c := &cluster{t: t, a: p.a, b: p.b}
	c.noArtifacts()
	// Run again, unharmed.
	if _, err := Move(context.Background(), p.spec(), nil, nil); err != nil {
		t.Fatal(err)
	}
}

// TestCutoverWaitsForLiveStream: the replication link between the nodes
// is cut during the catch-up. No lock is taken while the stream cannot
// confirm (writers are not stalled), and the move finishes once the link
// heals.
func TestCutoverWaitsForLiveStream(t *testing.T) {
	shortTimeouts(t)
	src, dst := isolated(t)
	link, viaLink := proxied(t, src)
	p := newPartitioned(t, src, dst)
	p.publisher = viaLink
	p.write()
	ev := newEvents()
	var before int
	ctx := hookAt("move.catch-up.end", func() error {
		before = p.w.Written()
		link.Set(netfault.Blackhole)
		go func() {
			time.Sleep(5 * time.Second)
			link.Set(netfault.Pass)
		}()
		return nil
	})
	res, err := Move(ctx, p.spec(), nil, ev)
	if err != nil {
		t.Fatalf("move: %v\n%s", err, ev.text())
	}
	var worst time.Duration
	for _, l := range p.w.LatenciesFrom(before) {
		worst = max(worst, l)
	}
	if !strings.Contains(ev.text(), "not taking the lock") || worst > 300*time.Millisecond {
		t.Errorf("writers blocked at most %v; events:\n%s", worst, ev.text())
	}
	t.Logf("writers blocked at most %v during a 5 s cut of the replication link; %d lock attempts failed", worst, res.Retries)
	p.check()
}

// TestStandbysHoldTheActivation: the source has a synchronous standby whose
// link is cut at the cutover. The COMMIT's wait for it is cut short at the
// pause budget (writers are not blocked longer), and the destination is
// not activated while the standby lacks the commit: promoted, it would
// serve the shard too. Once the standby catches up, the move finishes; the
// standby, promoted then, does not serve the shard.
func TestStandbysHoldTheActivation(t *testing.T) {
	shortTimeouts(t)
	for _, sync := range []bool{true, false} {
		t.Run(map[bool]string{true: "synchronous", false: "asynchronous"}[sync], func(t *testing.T) {
			src, dst := isolated(t)
			link, err := netfault.Start(src.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer link.Close()
			standby, err := src.StartStandby(context.Background(), pgtest.StandbyOptions{ApplicationName: "sb", Via: link.Addr()})
			if err != nil {
				t.Fatal(err)
			}
			if sync {
				if err := src.SetSynchronousStandbys(context.Background(), "sb"); err != nil {
					t.Fatal(err)
				}
			}
			p := newPartitioned(t, src, dst)
			p.write()
			var before int
			ctx := hookAt("move.cutover.locked", func() error {
				before = p.w.Written()
				link.Set(netfault.Blackhole)
				return nil
			})
			spec := p.spec()
			_, err = Move(ctx, spec, nil, nil)
			if err == nil || !strings.Contains(err.Error(), `activation held: standby "sb"`) || !strings.Contains(err.Error(), "run the same move again") {
				t.Fatalf("move: %v", err)
			}
			var worst time.Duration
			for _, l := range p.w.LatenciesFrom(before) {
				if l < 2*time.Second+spec.Options.StandbyTimeout { // the hold itself is an outage, reported
					worst = max(worst, l)
				}
			}
			if sync && worst > spec.Options.MaxPause+spec.Options.StandbyTimeout+time.Second {
				t.Errorf("writers blocked %v", worst)
			}
			c := &cluster{t: t, a: p.a, b: p.b}
			if got := c.active(c.b); len(got) != 0 {
				t.Fatalf("activated on the destination while the standby lacked the cutover: %v", got)
			}
			link.Set(netfault.Pass)
			// The standby reconnects and catches up; the rerun waits for it
			// as long as an operator's would.
			spec.Options.StandbyTimeout = 60 * time.Second
			if _, err := Move(context.Background(), spec, nil, nil); err != nil {
				t.Fatalf("rerun: %v", err)
			}
			p.check()
			// Failover now: the promoted standby has the rename.
			if sync {
				src.SetSynchronousStandbys(context.Background(), "")
			}
			if err := src.StopImmediate(); err != nil {
				t.Fatal(err)
			}
			if err := standby.Promote(context.Background()); err != nil {
				t.Fatal(err)
			}
			promoted := pgtest.Connect(t, standby.DSN("app"))
			var active []string
			if err := promoted.QueryRow(context.Background(), "SELECT microsharding.microsharding_list_active_shards()::text[]").Scan(&active); err != nil {
				t.Fatal(err)
			}
			if len(active) != 0 {
				t.Errorf("the promoted standby serves %v: two homes", active)
			}
		})
	}
}
