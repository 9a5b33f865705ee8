package executor

import (
	"context"
	"time"

	"github.com/pgms-dev/pgms/internal/pgutil"
)

// Replication slots are dropped in one place for the move engine (undo and
// finish) and for cleanup; how each treats a slot that a walsender still
// holds is its slotPolicy.

// heldSlot is a slot a walsender holds.
type heldSlot struct {
	name string
	pid  int
	// client is the walsender's application_name: a subscription's name
	// when the subscription streams from the slot.
	client string
}

// slotPolicy is how dropReplicationSlots treats slots that walsenders
// hold.
type slotPolicy struct {
	// wait bounds how long slots may stay held; the ones still held then
	// are given up on.
	wait time.Duration
	// poll is the pause between two looks.
	poll time.Duration
	// holder decides about the walsender holding a slot, held for so long
	// since the drop began: keep (a reason) gives the slot up at once,
	// end ends the walsender now, neither waits for it to leave.
	holder func(s heldSlot, held time.Duration) (keep string, end bool)
}

// droppedSlot is what became of one slot.
type droppedSlot struct {
	name    string
	dropped bool
	// retained is the WAL the slot retained just before its drop.
	retained int64
	// kept says why a slot was not dropped; holder is the walsender that
	// held it to the end, if one did; err why its last drop failed.
	kept   string
	holder heldSlot
	err    error
}

// dropReplicationSlots drops the slots of node that cond selects (a condition on
// pg_replication_slots s, with args) as soon as no walsender holds them.
// It looks again until every slot is gone or given up, or policy.wait
// has passed: a drop that fails is tried again meanwhile, unless the
// connection is lost, which fails it at once. It returns what became of
// each slot it saw.
func dropReplicationSlots(ctx context.Context, node *pgutil.Node, cond string, args []any, policy slotPolicy) ([]droppedSlot, error) {
	began := time.Now()
	results := map[string]*droppedSlot{}
	var order []string
	result := func(name string) *droppedSlot {
		if r, ok := results[name]; ok {
			return r
		}
		results[name] = &droppedSlot{name: name}
		order = append(order, name)
		return results[name]
	}
	done := func() []droppedSlot {
		out := make([]droppedSlot, 0, len(order))
		for _, n := range order {
			r := results[n]
			if !r.dropped && r.kept == "" && r.holder.pid == 0 && r.err == nil {
				r.kept = "already gone"
			}
			out = append(out, *r)
		}
		return out
	}
	for {
		rows, err := node.Conn.Query(ctx, `
			SELECT s.slot_name::text, COALESCE(s.active_pid, 0), COALESCE(a.application_name, ''),
			       COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn), 0)::bigint
			FROM pg_catalog.pg_replication_slots s
			LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = s.active_pid
			WHERE `+cond, args...)
		if err != nil {
			return done(), pgutil.Wrap(err, "node %s: list replication slots", node.Name)
		}
		type slot struct {
			heldSlot
			retained int64
		}
		var slots []slot
		for rows.Next() {
			var s slot
			if err := rows.Scan(&s.name, &s.pid, &s.client, &s.retained); err != nil {
				rows.Close()
				return done(), err
			}
			slots = append(slots, s)
		}
		if err := rows.Err(); err != nil {
			return done(), pgutil.Wrap(err, "node %s: list replication slots", node.Name)
		}
		// What held or failed a slot before counts only if it still does.
		for _, r := range results {
			r.holder, r.err = heldSlot{}, nil
		}
		left := 0
		for _, s := range slots {
			r := result(s.name)
			if r.kept != "" {
				continue
			}
			if s.pid != 0 {
				keep, end := policy.holder(s.heldSlot, time.Since(began))
				if keep != "" {
					r.kept = keep
					continue
				}
				if end {
					node.Conn.Exec(ctx, "SELECT pg_catalog.pg_terminate_backend($1)", s.pid) //nolint:errcheck // looked at again next round
				}
				r.holder = s.heldSlot
				left++
				continue
			}
			_, err := node.Conn.Exec(ctx, "SELECT pg_catalog.pg_drop_replication_slot($1)", s.name)
			switch {
			case err == nil:
				r.dropped, r.retained = true, s.retained
			case pgutil.SQLState(err) == pgutil.CodeUndefinedObject:
			case connectionLost(err):
				return done(), pgutil.Wrap(err, "node %s: drop replication slot %s", node.Name, s.name)
			default:
				// In use again between the look and the drop, or failed:
				// looked at again.
				if pgutil.SQLState(err) != pgutil.CodeObjectInUse {
					r.err = err
				}
				left++
			}
		}
		if left == 0 {
			return done(), nil
		}
		if time.Since(began) >= policy.wait {
			return done(), nil
		}
		if err := sleep(ctx, policy.poll); err != nil {
			return done(), err
		}
	}
}
