package workload

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgutil"
)

// Churn changes many tables of a shard on one node, for tests that compare
// a copy with its source: it runs statements drawn at random from a list,
// each given one random bigint ($1) in [1, MaxArg], in its own transaction.
// Unlike Writer it does not route: it writes to the one node until a
// statement fails because the shard's tables went away there (a cutover
// renamed them) or it is stopped, so the source's renamed schema ends up
// holding exactly what the copy must hold.
type Churn struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	ops    int
	errs   map[string]int
}

// ChurnConfig describes the changes.
type ChurnConfig struct {
	DSN        string
	Statements []string
	MaxArg     int64
	Interval   time.Duration
}

// StartChurn connects and begins changing.
func StartChurn(ctx context.Context, cfg ChurnConfig) (*Churn, error) {
	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &Churn{cancel: cancel, done: make(chan struct{}), errs: map[string]int{}}
	go func() {
		defer close(c.done)
		defer conn.Close(context.Background())
		for cctx.Err() == nil {
			q := cfg.Statements[rand.IntN(len(cfg.Statements))]
			// Not cancelled by Stop: a cancelled statement may have
			// committed without the churn knowing; the loop stops between
			// statements instead.
			_, err := conn.Exec(context.Background(), q, 1+rand.Int64N(max(cfg.MaxArg, 1)))
			c.mu.Lock()
			if err != nil {
				c.errs[err.Error()]++
			} else {
				c.ops++
			}
			c.mu.Unlock()
			if pgutil.SQLState(err) == pgutil.CodeUndefinedTable { // the shard moved away
				return
			}
			select {
			case <-cctx.Done():
			case <-time.After(cfg.Interval):
			}
		}
	}()
	return c, nil
}

// Ops returns how many statements succeeded so far.
func (c *Churn) Ops() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops
}

// Stop ends the changes; it returns the statements that succeeded and the
// errors seen, with their counts.
func (c *Churn) Stop() (int, map[string]int) {
	c.cancel()
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops, c.errs
}
