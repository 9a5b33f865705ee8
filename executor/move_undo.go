package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/pgutil"
)

// undo removes everything an unfinished move made: the subscription and
// the marked copy on the destination, then the slot and the publication on
// the source. The source's schema and data are never touched. Each step
// looks before it acts, so undo may run any number of times.
func (m *move) undo(ctx context.Context) error {
	if err := m.revive(ctx); err != nil {
		return err
	}
	if err := m.dropSubscription(ctx); err != nil {
		return err
	}
	if err := m.dropMarkedCopy(ctx); err != nil {
		return err
	}
	if err := m.dropSlot(ctx); err != nil {
		return err
	}
	return m.dropPublication(ctx)
}

// cleanupArtifacts drops the replication objects after a finished move.
func (m *move) cleanupArtifacts(ctx context.Context) error {
	if err := m.phase(ctx, PhaseCleanup, "dropping subscription, slot and publication"); err != nil {
		return err
	}
	if err := m.revive(ctx); err != nil {
		return err
	}
	if err := m.dropSubscription(ctx); err != nil {
		return err
	}
	if err := m.dropSlot(ctx); err != nil {
		return err
	}
	if err := m.dropPublication(ctx); err != nil {
		return err
	}
	return fault.Point(ctx, "move.cleanup.end")
}

// dropSubscription drops the move's subscription on the destination. The
// plain DROP SUBSCRIPTION also drops, on the source, the slot and the slots
// of unfinished table synchronisations; if the destination cannot reach
// the source for that, the subscription is detached from its slots and
// they are dropped from here.
func (m *move) dropSubscription(ctx context.Context) error {
	var subid uint32
	err := m.dst.Conn.QueryRow(ctx, `SELECT oid FROM pg_catalog.pg_subscription
		WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())`, m.sub).Scan(&subid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return pgutil.Wrap(err, "node %s: look for subscription %s", m.dst.Name, m.sub)
	}
	q := pgutil.Quote(m.sub)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = m.dst.Conn.Exec(dctx, "DROP SUBSCRIPTION "+q)
	cancel()
	if err != nil {
		m.event(PhaseCleanup, EventWarning, fmt.Sprintf("DROP SUBSCRIPTION %s on %s failed (%s); detaching it from its slot instead", m.sub, m.dst.Name, pgutil.Describe(err)))
		if err := m.revive(ctx); err != nil {
			return err
		}
		_, err = execSimple(ctx, m.dst.Conn, "ALTER SUBSCRIPTION "+q+" DISABLE; ALTER SUBSCRIPTION "+q+" SET (slot_name = NONE); DROP SUBSCRIPTION "+q)
		if err != nil {
			return pgutil.Wrap(err, "node %s: drop subscription %s", m.dst.Name, m.sub)
		}
	}
	return m.dropSlots(ctx, fmt.Sprintf(`slot_name LIKE 'pg\_%d\_sync\_%%'`, subid))
}

// dropMarkedCopy drops the destination's schema if, and only if, it is an
// inactive copy marked as unfinished.
func (m *move) dropMarkedCopy(ctx context.Context) error {
	var comment *string
	err := m.dst.Conn.QueryRow(ctx, `SELECT obj_description(oid, 'pg_namespace') FROM pg_catalog.pg_namespace WHERE nspname = $1`, m.schema).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return pgutil.Wrap(err, "node %s: look for the copy of %s", m.dst.Name, m.schema)
	}
	if comment == nil || !strings.HasPrefix(*comment, copyMarkPrefix) {
		return nil
	}
	_, err = m.dst.Conn.Exec(ctx, "DROP SCHEMA "+pgutil.Quote(m.schema)+" CASCADE")
	return pgutil.Wrap(err, "node %s: drop the unfinished copy %s", m.dst.Name, m.schema)
}

// dropSlot drops the move's slot on the source.
func (m *move) dropSlot(ctx context.Context) error {
	return m.dropSlots(ctx, "slot_name = "+quoteLiteral(m.slot))
}

// dropSlots drops the source's slots matching a condition. A slot still in
// use by a walsender whose subscriber is gone is freed by ending that
// walsender after a grace period.
func (m *move) dropSlots(ctx context.Context, where string) error {
	deadline := time.Now().Add(15 * time.Second)
	grace := time.Now().Add(2 * time.Second)
	for {
		rows, err := m.src.Conn.Query(ctx, "SELECT slot_name::text, active_pid FROM pg_catalog.pg_replication_slots WHERE "+where)
		if err != nil {
			return pgutil.Wrap(err, "node %s: list replication slots", m.src.Name)
		}
		type slot struct {
			name string
			pid  *int
		}
		var slots []slot
		for rows.Next() {
			var s slot
			if err := rows.Scan(&s.name, &s.pid); err != nil {
				rows.Close()
				return err
			}
			slots = append(slots, s)
		}
		if err := rows.Err(); err != nil {
			return pgutil.Wrap(err, "node %s: list replication slots", m.src.Name)
		}
		if len(slots) == 0 {
			return nil
		}
		var lastErr error
		for _, s := range slots {
			if s.pid != nil {
				if time.Now().After(grace) {
					m.src.Conn.Exec(ctx, "SELECT pg_catalog.pg_terminate_backend($1)", *s.pid) //nolint:errcheck // re-checked next round
				}
				lastErr = fmt.Errorf("slot %s is in use by process %d", s.name, *s.pid)
				continue
			}
			if _, err := m.src.Conn.Exec(ctx, "SELECT pg_catalog.pg_drop_replication_slot($1)", s.name); err != nil {
				lastErr = err
			}
		}
		if time.Now().After(deadline) {
			return pgutil.Wrap(lastErr, "node %s: drop replication slot", m.src.Name)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func (m *move) dropPublication(ctx context.Context) error {
	_, err := m.src.Conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgutil.Quote(m.pub))
	return pgutil.Wrap(err, "node %s: drop publication %s", m.src.Name, m.pub)
}
