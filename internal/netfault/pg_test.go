package netfault

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

// The tests against PostgreSQL share one server; the others ignore it.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, 1)) }

// connectVia opens a connection to db through the proxy.
func connectVia(ctx context.Context, p *Proxy, db pgtest.DB) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(db.DSN)
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port = "127.0.0.1", uint16(p.Port())
	cfg.ConnectTimeout = 5 * time.Second
	return pgx.ConnectConfig(ctx, cfg)
}

func mustConnectVia(t *testing.T, p *Proxy, db pgtest.DB) *pgx.Conn {
	t.Helper()
	conn, err := connectVia(context.Background(), p, db)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// result is what a query run in the background returned, and when.
type result struct {
	err  error
	tag  string
	took time.Duration
}

// background runs f on its own goroutine.
func background(f func() (string, error)) <-chan result {
	ch := make(chan result, 1)
	go func() {
		begin := time.Now()
		tag, err := f()
		ch <- result{err: err, tag: tag, took: time.Since(begin)}
	}()
	return ch
}

func TestPostgresThroughProxy(t *testing.T) {
	db := pgtest.Database(t)
	p := startProxy(t, db.Server.Addr())
	conn := mustConnectVia(t, p, db)
	var port int
	if err := conn.QueryRow(context.Background(), "SELECT inet_server_port()").Scan(&port); err != nil {
		t.Fatal(err)
	}
	if port != db.Server.Port {
		t.Fatalf("answered by port %d, want the server's %d", port, db.Server.Port)
	}
	if s := p.Stats(); s.Accepted != 1 || s.Upstream == 0 || s.Downstream == 0 || p.Conns() != 1 {
		t.Fatalf("stats %+v, %d open", s, p.Conns())
	}
}

func TestPostgresResetFailsRunningQuery(t *testing.T) {
	db := pgtest.Database(t)
	p := startProxy(t, db.Server.Addr())
	conn := mustConnectVia(t, p, db)
	direct := pgtest.Connect(t, db.DSN)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	done := background(func() (string, error) {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
		return "", err
	})
	eventually(t, "the query to run", func() bool {
		var n int
		direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'").Scan(&n)
		return n == 1
	})
	begin := time.Now()
	p.Set(Reset)
	r := <-done
	if r.err == nil || ctx.Err() != nil {
		t.Fatalf("query returned %v (context %v)", r.err, ctx.Err())
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Fatalf("the query failed %v after the reset", took)
	}
	t.Logf("query failed %v after the reset: %v", time.Since(begin).Round(time.Millisecond), r.err)

	if c, err := connectVia(ctx, p, db); err == nil {
		c.Close(ctx)
		t.Fatal("connected while resetting")
	}
	p.Set(Pass)
	mustConnectVia(t, p, db)
}

func TestPostgresBlackholeHangsThenHeals(t *testing.T) {
	db := pgtest.Database(t)
	p := startProxy(t, db.Server.Addr())
	lost := mustConnectVia(t, p, db)
	healed := mustConnectVia(t, p, db)
	p.Set(Blackhole)

	// Nothing errors: only the client's own deadline ends the wait.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	begin := time.Now()
	_, err := lost.Exec(ctx, "SELECT 1")
	cancel()
	if !pgconn.Timeout(err) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("query in a partition: %v, want the context's deadline", err)
	}
	if took := time.Since(begin); took < 300*time.Millisecond {
		t.Fatalf("query failed after %v, before its deadline", took)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := background(func() (string, error) {
		var answer string
		err := healed.QueryRow(ctx, "SELECT 'forty-two'").Scan(&answer)
		return answer, err
	})
	select {
	case r := <-done:
		t.Fatalf("query returned in a partition: %v", r.err)
	case <-time.After(300 * time.Millisecond):
	}
	p.Set(Pass)
	select {
	case r := <-done:
		if r.err != nil || r.tag != "forty-two" {
			t.Fatalf("query after healing: %q, %v", r.tag, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("query did not return after healing")
	}
}

// TestPostgresSwitchAfterCommit cuts the link right after the client's
// COMMIT reaches the server: the transaction commits, and the client either
// waits (blackhole) or loses the connection (reset) without learning it.
func TestPostgresSwitchAfterCommit(t *testing.T) {
	for _, mode := range []Mode{Blackhole, Reset} {
		t.Run(mode.String(), func(t *testing.T) {
			db := pgtest.Database(t)
			direct := pgtest.Connect(t, db.DSN)
			pgtest.Exec(t, direct, "CREATE TABLE t (id int)")
			p := startProxy(t, db.Server.Addr())
			conn := mustConnectVia(t, p, db)
			pgtest.Exec(t, conn, "BEGIN")
			pgtest.Exec(t, conn, "INSERT INTO t VALUES (1)")

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			fired := p.SwitchAfter(Upstream, PGQuery("COMMIT"), mode)
			done := background(func() (string, error) {
				tag, err := conn.Exec(ctx, "COMMIT")
				return tag.String(), err
			})
			select {
			case <-fired:
			case <-time.After(5 * time.Second):
				t.Fatal("the trigger did not fire")
			}
			eventually(t, "the row to be committed", func() bool {
				var n int
				direct.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n)
				return n == 1
			})
			if mode == Reset {
				r := <-done
				if r.err == nil {
					t.Fatal("COMMIT succeeded through a reset connection")
				}
				t.Logf("committed on the server; the client saw: %v", r.err)
				return
			}
			select {
			case r := <-done:
				t.Fatalf("COMMIT returned through a blackhole: %q, %v", r.tag, r.err)
			case <-time.After(200 * time.Millisecond):
			}
			p.Set(Pass)
			if r := <-done; r.err != nil || r.tag != "COMMIT" {
				t.Fatalf("COMMIT after healing: %q, %v", r.tag, r.err)
			}
		})
	}
}
