package executor

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/internal/pgutil"
)

// pauser stops a move at a fault point until the test lets it go on.
type pauser struct {
	point   string
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

// pauseAt returns a context whose move stops at point, and the pauser to
// wait for it and release it.
func pauseAt(point string) (context.Context, *pauser) {
	p := &pauser{point: point, reached: make(chan struct{}), release: make(chan struct{})}
	ctx := fault.WithHook(context.Background(), func(name string) error {
		if name != p.point {
			return nil
		}
		first := false
		p.once.Do(func() { first = true })
		if !first {
			return nil
		}
		close(p.reached)
		<-p.release
		return nil
	})
	return ctx, p
}

func (p *pauser) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.reached:
	case <-time.After(60 * time.Second):
		t.Fatalf("the move never reached %s", p.point)
	}
}

func (p *pauser) go_() { close(p.release) }

// hookAt returns a context that runs f once at point; f's error is the
// point's.
func hookAt(point string, f func() error) context.Context {
	var once sync.Once
	return fault.WithHook(context.Background(), func(name string) error {
		var err error
		if name == point {
			once.Do(func() { err = f() })
		}
		return err
	})
}

// runMove runs a move in the background.
func runMove(ctx context.Context, spec MoveSpec, rep Reporter) chan moveOutcome {
	done := make(chan moveOutcome, 1)
	go func() {
		res, err := Move(ctx, spec, nil, rep)
		done <- moveOutcome{res, err}
	}()
	return done
}

type moveOutcome struct {
	res MoveResult
	err error
}

func (o moveOutcome) must(t *testing.T) MoveResult {
	t.Helper()
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.res
}

// pgmsSessions lists this process's sessions on the database conn is
// connected to whose query matches like ("%" for all).
func pgmsSessions(t *testing.T, conn *pgx.Conn, like string) []int32 {
	t.Helper()
	var pids []int32
	err := conn.QueryRow(context.Background(), `SELECT COALESCE(array_agg(pid), '{}') FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database() AND query LIKE $2 AND pid <> pg_backend_pid()`,
		pgutil.SessionName(), like).Scan(&pids)
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

func terminate(t *testing.T, conn *pgx.Conn, pids []int32) {
	t.Helper()
	for _, pid := range pids {
		pgtest.Exec(t, conn, "SELECT pg_terminate_backend($1)", pid)
	}
}
