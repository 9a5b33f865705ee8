package executor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
)

// The catch-up waits until the destination has applied almost everything
// the source wrote, so that the cutover's lock is held for milliseconds.
// It also watches that the stream is healthy: a slot the source
// invalidated, an apply worker that keeps failing, or a stream that
// confirms nothing (a cut replication link) end the wait with a clear
// message instead of a lag that grows for ever.

// errStalled marks a stream that confirmed nothing for StallTimeout: the
// move stops, keeping its copy, so that running it again continues.
var errStalled = errors.New("the replication stream stalled")

// errSlotLost marks a slot the source invalidated (max_slot_wal_keep_size):
// the changes it should have kept are gone, so the copy cannot catch up
// and the move starts over.
var errSlotLost = errors.New("the replication slot was invalidated")

// queryTimeout bounds a catalog query or a poll of a move: one that gets
// no answer in this time means the node, or the way to it, is gone. (A
// variable for the fault tests, which shorten it.)
var queryTimeout = 15 * time.Second

// bounded returns ctx limited to queryTimeout.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, queryTimeout)
}

// slotState is what the source says about the move's slot.
type slotState struct {
	lag       int64 // bytes the slot's confirmed position trails the WAL
	confirmed string
	walStatus string // reserved, extended, unreserved, lost
}

// readSlot reads the slot's lag and health on the source.
func (m *move) readSlot(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (slotState, error) {
	var st slotState
	var lag *int64
	var confirmed, walStatus *string
	qctx, cancel := bounded(ctx)
	defer cancel()
	err := q.QueryRow(qctx, `SELECT pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
		  confirmed_flush_lsn::text, wal_status
		FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, m.slot).Scan(&lag, &confirmed, &walStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, fmt.Errorf("node %s: replication slot %s disappeared (dropped by hand, or by another tool); the move cannot continue: run it again to start over", m.src.Name, m.slot)
	}
	if err != nil {
		return st, m.interrupted(ctx, pgutil.Wrap(err, "node %s: read the state of slot %s", m.src.Name, m.slot))
	}
	if walStatus != nil {
		st.walStatus = *walStatus
	}
	if st.walStatus == "lost" {
		return st, fmt.Errorf("node %s: %w: slot %s lost WAL it needed (wal_status = lost), because it retained more than max_slot_wal_keep_size allows; the move starts over when run again (raise max_slot_wal_keep_size, or move when writes are lighter)", m.src.Name, errSlotLost, m.slot)
	}
	if confirmed != nil {
		st.confirmed = *confirmed
	}
	st.lag = 1 << 62 // nothing confirmed yet
	if lag != nil {
		st.lag = *lag
	}
	return st, nil
}

// lag returns how far the slot's confirmed position trails the source's
// WAL, in bytes, failing on an unhealthy slot.
func (m *move) lag(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int64, error) {
	st, err := m.readSlot(ctx, q)
	return st.lag, err
}

// subHealth is what the destination says about the move's subscription.
type subHealth struct {
	workers int   // apply worker running (1) or not (0)
	errors  int64 // apply errors so far
	syncErr int64 // table synchronisation errors so far
}

func (m *move) readSubscription(ctx context.Context) (subHealth, error) {
	var h subHealth
	qctx, cancel := bounded(ctx)
	defer cancel()
	// pg_stat_subscription_stats is new in PostgreSQL 15: before, errors
	// are not counted, and only the apply worker's presence tells.
	counts := `COALESCE((SELECT apply_error_count FROM pg_catalog.pg_stat_subscription_stats WHERE subid = ` + subscriptionOID + `), 0),
		  COALESCE((SELECT sync_error_count FROM pg_catalog.pg_stat_subscription_stats WHERE subid = ` + subscriptionOID + `), 0)`
	if m.dstMajor < 15 {
		counts = "0::bigint, 0::bigint"
	}
	err := m.dst.Conn.QueryRow(qctx, `SELECT
		  (SELECT count(*) FROM pg_catalog.pg_stat_subscription WHERE subid = `+subscriptionOID+` AND relid IS NULL AND pid IS NOT NULL)::int,
		  `+counts, m.sub).Scan(&h.workers, &h.errors, &h.syncErr)
	if err != nil {
		return h, m.interrupted(ctx, pgutil.Wrap(err, "node %s: read the state of subscription %s", m.dst.Name, m.sub))
	}
	return h, nil
}

// waitLag waits until the replication lag is small enough to try the
// lock: switching while lag is high would turn the pause into a timeout.
//
// A subscription whose apply worker keeps failing never catches up: the
// wait gives up after maxReplicationErrors failures, naming a change of
// the shard's tables when that is the cause. A stream whose confirmed
// position has not moved for StallTimeout while there is lag to catch up
// (the link between the nodes is cut, or the destination stopped) ends the
// wait with errStalled; a warning comes after a few seconds.
func (m *move) waitLag(ctx context.Context) error {
	every := max(m.opts.PollInterval/10, 10*time.Millisecond)
	var recorded, checked time.Time
	firstErrors := int64(-1)
	lastConfirmed, movedAt := "", time.Now()
	warned := false
	for {
		st, err := m.readSlot(ctx, m.src.Conn)
		if err != nil {
			return err
		}
		lag := st.lag
		if st.confirmed != lastConfirmed {
			lastConfirmed, movedAt, warned = st.confirmed, time.Now(), false
		}
		if lag > m.opts.MaxLag && time.Since(checked) >= time.Second {
			checked = time.Now()
			h, err := m.readSubscription(ctx)
			if err != nil {
				return err
			}
			if firstErrors < 0 {
				firstErrors = h.errors
			}
			if h.errors-firstErrors >= maxReplicationErrors {
				return m.applyFailing(ctx, h.errors-firstErrors)
			}
			if stalled := time.Since(movedAt); stalled >= m.opts.StallTimeout {
				return fmt.Errorf("%w: subscription %s on %s confirmed nothing for %v while %s of the source's WAL waits (apply worker running: %t); the link between the nodes may be cut, or the destination stuck. The copy and the replication objects are kept: run the same move again to continue once the cause is fixed",
					errStalled, m.sub, m.dst.Name, stalled.Round(time.Second), units.FormatBytes(float64(lag)), h.workers > 0)
			} else if !warned && stalled >= 10*time.Second {
				warned = true
				m.event(PhaseCatchUp, EventWarning, fmt.Sprintf("subscription %s on %s has confirmed nothing for %v (lag %s, apply worker running: %t): is the link from %s to %s cut? The move stops after %v without progress",
					m.sub, m.dst.Name, stalled.Round(time.Second), units.FormatBytes(float64(lag)), h.workers > 0, m.dst.Name, m.src.Name, m.opts.StallTimeout))
			}
		}
		m.mu.Lock()
		m.progress.LagBytes = &lag
		prog := m.progress
		m.mu.Unlock()
		if lag <= m.opts.MaxLag {
			return fault.Point(ctx, "move.catch-up.end")
		}
		if time.Since(recorded) >= 5*time.Second {
			m.record(ctx, prog)
			recorded = time.Now()
		}
		m.rep.Report(Event{Time: time.Now(), Shard: m.spec.Shard, Schema: m.schema, Phase: PhaseCatchUp, Kind: EventProgress, LagBytes: lag})
		if err := sleep(ctx, every); err != nil {
			return fmt.Errorf("%w during the catch-up: %w", ErrInterrupted, err)
		}
	}
}

// applyFailing explains a subscription whose apply worker keeps failing:
// when the shard's tables changed on the source since the copy began, that
// is the cause.
func (m *move) applyFailing(ctx context.Context, n int64) error {
	changed, err := m.shapeChanged(ctx, m.src.Conn)
	switch {
	case err != nil || changed == "":
		return fmt.Errorf("node %s: subscription %s failed %d times applying the source's changes (see that server's log for the cause)", m.dst.Name, m.sub, n)
	case m.spec.Rollback:
		return fmt.Errorf("node %s: subscription %s failed %d times applying %s's changes, because %s. %s", m.dst.Name, m.sub, n, m.src.Name, changed, m.windowShapeFix())
	}
	return fmt.Errorf("node %s: subscription %s failed %d times applying the source's changes, because %s; run the move again: it starts over with the new definition", m.dst.Name, m.sub, n, changed)
}

// probe measures the stream as the cutover will use it, without the lock:
// it makes the source flush a marker and waits until the destination
// confirms it. A stream that does not confirm within limit is not healthy
// enough to take the lock for.
func (m *move) probe(ctx context.Context, limit time.Duration) (time.Duration, error) {
	began := time.Now()
	var target string
	pctx, cancel := context.WithTimeout(ctx, limit+5*time.Second)
	defer cancel()
	if err := m.flusher.Conn.QueryRow(pctx, `SELECT pg_catalog.pg_logical_emit_message(true, 'pgms', 'probe')::text`).Scan(&target); err != nil {
		return 0, m.interrupted(ctx, pgutil.Wrap(err, "node %s: write the catch-up probe", m.src.Name))
	}
	for {
		var ok *bool
		err := m.flusher.Conn.QueryRow(pctx, `SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_catalog.pg_replication_slots WHERE slot_name = $2`, target, m.slot).Scan(&ok)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("node %s: replication slot %s disappeared", m.src.Name, m.slot)
		}
		if err != nil {
			return 0, m.interrupted(ctx, pgutil.Wrap(err, "node %s: wait for the probe", m.src.Name))
		}
		if ok != nil && *ok {
			return time.Since(began), nil
		}
		if time.Since(began) > limit {
			return time.Since(began), fmt.Errorf("the destination did not confirm a probe within %v", limit)
		}
		if err := sleep(ctx, 200*time.Microsecond); err != nil {
			return 0, fmt.Errorf("%w while probing the stream: %w", ErrInterrupted, err)
		}
	}
}
