package executor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pgms-dev/pgms/internal/pgutil"
)

// A source with physical standbys can fail over to one of them. A standby
// promoted without the cutover's commit still has the shard under its own
// name, active: with the destination activated too, the shard would have
// two homes, and writes acknowledged by either would be lost to the other.
// So before the destination is activated, every standby the source knows
// must have flushed the commit (a promoted standby replays everything it
// has flushed). A standby that cannot confirm in time holds the activation.
//
// What pgms cannot see: a standby that is disconnected from the source (it
// is not in pg_stat_replication) unless synchronous_standby_names names it
// or it left an inactive physical slot, and standbys of standbys (cascades
// report to their upstream standby, not to the source).

// standbyInfo is what the source reports about its physical standbys.
type standbyInfo struct {
	syncNames string   // synchronous_standby_names
	connected []string // application names of physical walsenders
	confirmed []bool   // index-aligned: flushed the target position
	syncOK    bool     // a connected standby has sync_state sync or quorum
	idleSlots []string // inactive physical slots
}

func (m *move) readStandbys(ctx context.Context, target string) (standbyInfo, error) {
	var s standbyInfo
	if target == "" {
		target = "0/0"
	}
	// Physical walsenders are the ones connected to no database.
	err := m.src.Conn.QueryRow(ctx, `SELECT current_setting('synchronous_standby_names'),
		  COALESCE(array_agg(r.application_name ORDER BY r.application_name) FILTER (WHERE r.pid IS NOT NULL), '{}'),
		  COALESCE(array_agg(COALESCE(r.flush_lsn >= $1::pg_lsn, false) ORDER BY r.application_name) FILTER (WHERE r.pid IS NOT NULL), '{}'),
		  COALESCE(bool_or(r.sync_state IN ('sync', 'quorum')), false),
		  ARRAY(SELECT slot_name::text FROM pg_catalog.pg_replication_slots WHERE slot_type = 'physical' AND NOT active ORDER BY 1)
		FROM pg_catalog.pg_stat_replication r JOIN pg_catalog.pg_stat_activity a ON a.pid = r.pid
		WHERE a.datname IS NULL AND r.state <> 'backup'`, target).Scan(&s.syncNames, &s.connected, &s.confirmed, &s.syncOK, &s.idleSlots)
	if err != nil {
		return s, pgutil.Wrap(err, "node %s: read its standbys", m.src.Name)
	}
	return s, nil
}

// checkSyncStandbys runs before each cutover attempt: it notes whether the
// source has standbys to wait for after the commit, and refuses to take
// the lock while the source waits for synchronous standbys of which none
// is connected (every commit there hangs, the cutover's too, with the
// lock held).
func (m *move) checkSyncStandbys(ctx context.Context) error {
	s, err := m.readStandbys(ctx, "")
	if err != nil {
		return err
	}
	m.standbys = len(s.connected) > 0 || s.syncNames != ""
	if s.syncNames != "" && !s.syncOK {
		return fmt.Errorf("%s waits for synchronous standbys (synchronous_standby_names = %q) and none is connected: its commits hang, the cutover's would too, with writers blocked", m.src.Name, s.syncNames)
	}
	return nil
}

// syncStandbyNames returns the standby names synchronous_standby_names
// lists ("*" stands for any and names nothing).
func syncStandbyNames(setting string) []string {
	s := strings.TrimSpace(setting)
	if i := strings.IndexByte(s, '('); i >= 0 && strings.HasSuffix(s, ")") {
		s = s[i+1 : len(s)-1]
	}
	var out []string
	for _, part := range strings.Split(s, ",") {
		name := strings.TrimSpace(part)
		if strings.HasPrefix(name, `"`) && strings.HasSuffix(name, `"`) && len(name) >= 2 {
			name = strings.ReplaceAll(name[1:len(name)-1], `""`, `"`)
		}
		if name != "" && name != "*" {
			out = append(out, name)
		}
	}
	return out
}

// waitStandbys holds the activation until every standby of the source has
// flushed the WAL up to target (the commit's position, or the current one
// when resuming), and every standby synchronous_standby_names names is
// among them. Skipped when the source had no standby at the cutover.
func (m *move) waitStandbys(ctx context.Context, target string, resumed bool) error {
	if !m.standbys && !resumed {
		return nil
	}
	if target == "" {
		if err := m.src.Conn.QueryRow(ctx, "SELECT pg_catalog.pg_current_wal_insert_lsn()::text").Scan(&target); err != nil {
			return pgutil.Wrap(err, "node %s: read its WAL position", m.src.Name)
		}
	}
	began := time.Now()
	warned := false
	for {
		s, err := m.readStandbys(ctx, target)
		if err != nil {
			return err
		}
		var missing []string
		for i, name := range s.connected {
			if !s.confirmed[i] {
				missing = append(missing, fmt.Sprintf("%q (connected, not flushed to %s yet)", name, target))
			}
		}
		for _, name := range syncStandbyNames(s.syncNames) {
			if !slices.Contains(s.connected, name) {
				missing = append(missing, fmt.Sprintf("%q (named in synchronous_standby_names, not connected)", name))
			}
		}
		if !warned && len(s.idleSlots) > 0 {
			warned = true
			m.event(PhaseFinish, EventWarning, fmt.Sprintf("%s has inactive physical replication slots (%s): a standby using one is disconnected and does not have the cutover; do not promote it without catching it up", m.src.Name, strings.Join(s.idleSlots, ", ")))
		}
		if len(missing) == 0 {
			if time.Since(began) > 100*time.Millisecond {
				m.event(PhaseFinish, EventInfo, fmt.Sprintf("the standbys of %s confirmed the cutover after %v", m.src.Name, time.Since(began).Round(time.Millisecond)))
			}
			return nil
		}
		if time.Since(began) > m.opts.StandbyTimeout {
			return fmt.Errorf("activation held: standby %s of %s did not confirm the cutover within %v; were it promoted, it would still serve %s, and with the shard active on %s too, writes to either would be lost to the other. %s is served by no node until they confirm: make them catch up (or take them out of replication on purpose), then run the same move again",
				strings.Join(missing, ", "), m.src.Name, m.opts.StandbyTimeout, m.schema, m.dst.Name, m.schema)
		}
		if err := sleep(ctx, time.Millisecond); err != nil {
			return err
		}
	}
}
