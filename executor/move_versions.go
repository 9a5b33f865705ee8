package executor

import (
	"context"
	"fmt"

	"github.com/pgms-dev/pgms/internal/pgutil"
)

// What newer PostgreSQL versions change for a move, apart from the views
// read only where they exist (pg_stat_progress_copy from 14,
// pg_stat_subscription_stats from 15) and pg_dump's settings.

// noteFailoverSlots says, on sources of PostgreSQL 17 and later that have
// physical standbys, what becomes of the move's slot on a failover.
// PostgreSQL 17 can keep logical slots on standbys (failover slots: a slot
// created with failover = true, standbys with sync_replication_slots), but
// the move's slot is not one: a failover slot also makes the walsender
// wait for the standbys named in synchronized_standby_slots before it
// sends anything, which would lengthen the cutover's pause, and the move
// would still have to find the promoted server under the source's name. So
// a failover during the copy loses the slot, and the move, run again
// against the promoted server, starts the copy over; the cutover waits for
// the standbys as on every version (move_standby.go).
func (m *move) noteFailoverSlots(ctx context.Context) error {
	if m.srcMajor < 17 {
		return nil
	}
	var standbys bool
	var synchronized string
	err := m.src.Conn.QueryRow(ctx, `SELECT current_setting('synchronized_standby_slots'),
		  EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_type = 'physical')
		  OR EXISTS (SELECT 1 FROM pg_catalog.pg_stat_replication r JOIN pg_catalog.pg_stat_activity a ON a.pid = r.pid WHERE a.datname IS NULL)`).
		Scan(&synchronized, &standbys)
	if err != nil {
		return pgutil.Wrap(err, "node %s: look for standbys", m.src.Name)
	}
	if !standbys {
		return nil
	}
	msg := fmt.Sprintf("%s has physical standbys: the move's slot %s is not a failover slot (PostgreSQL %d's failover = true), so a standby promoted during the copy does not have it; the move then stops, and run again against the promoted server it copies afresh",
		m.src.Name, m.slot, m.srcMajor)
	if synchronized != "" {
		msg += fmt.Sprintf(". synchronized_standby_slots (%q) holds back failover slots only, not the move's stream", synchronized)
	}
	m.event(PhasePreflight, EventInfo, msg)
	return nil
}

// binaryInitialSync says whether the native copy's subscription copies
// the tables in binary. PostgreSQL 16 and later do so with binary = true
// (before 16 the option concerns only the changes streamed afterwards);
// on a 2-core machine that made the initial sync of a 150 MB shard into
// indexed tables 14–20% faster (BenchmarkNativeSync in executor/asused).
// The rule is the fast copy's for binary COPY (planCopy): the same major on
// both sides and every column of a built-in type or an enum, since other
// binary forms carry type ids that differ between databases and the copy
// would fail.
func (m *move) binaryInitialSync(ctx context.Context) (bool, error) {
	if m.srcMajor < 16 || m.dstMajor != m.srcMajor {
		return false, nil
	}
	p, err := m.planCopy(ctx)
	if err != nil {
		return false, err
	}
	if len(p.text) > 0 {
		return false, nil
	}
	for _, t := range p.tables {
		if !t.binary {
			return false, nil
		}
	}
	return true, nil
}
