package executor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/state"
)

// undo removes everything an unfinished move made: the subscription and
// the marked copy on the destination, then the slot and the publication on
// the source. The source's schema and data are never touched. Each step
// looks before it acts, so undo may run any number of times.
//
// A session that dies during undo (a terminated backend, a server
// restart) is reopened and the step tried again. The source's objects are
// dropped even when the destination cannot be reached: its slot retains
// WAL for as long as it exists, while a subscription left on an
// unreachable destination harms nothing until it is cleaned up.
func (m *move) undo(ctx context.Context) error {
	dstErr := m.retrying(ctx, "the destination's side", func(ctx context.Context) error {
		if err := m.dropSubscription(ctx); err != nil {
			return err
		}
		if err := m.dropMarkedCopy(ctx); err != nil {
			return err
		}
		if m.spec.Rollback {
			return nil
		}
		return m.dropWindowPrep(ctx)
	})
	if errors.Is(dstErr, state.ErrClaimLost) {
		return dstErr
	}
	srcErr := m.retrying(ctx, "the source's side", func(ctx context.Context) error {
		if err := m.dropSlot(ctx); err != nil {
			return err
		}
		return m.dropPublication(ctx)
	})
	if dstErr != nil {
		dstErr = fmt.Errorf("%w; the destination's copy %s and subscription %s may remain on %s", dstErr, m.schema, m.sub, m.dst.Name)
	}
	if srcErr != nil {
		srcErr = fmt.Errorf("%w; slot %s (which retains WAL) and publication %s may remain on %s", srcErr, m.slot, m.pub, m.src.Name)
	}
	return errors.Join(dstErr, srcErr)
}

// stepTimeout bounds one attempt of an undo or cleanup step: a node that
// stops answering fails the attempt instead of hanging it. (A variable for
// the fault tests, which shorten it.)
var stepTimeout = 30 * time.Second

// retrying runs step, reopening the move's sessions and trying again when
// a connection failed or an attempt ran out of time; it gives up after a
// few attempts or when the context ends.
func (m *move) retrying(ctx context.Context, what string, step func(context.Context) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, stepTimeout)
		if err = m.revive(actx); err == nil {
			err = step(actx)
		}
		if err != nil && actx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%s did not answer within %v: %w", what, stepTimeout, err)
		}
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, state.ErrClaimLost) || !connectionLost(err) || attempt >= 4 || ctx.Err() != nil {
			return err
		}
		m.event(PhaseUndo, EventWarning, fmt.Sprintf("%s: %s; reconnecting and trying again", what, pgutil.Describe(err)))
		if serr := sleep(ctx, backoff(attempt+2)); serr != nil {
			return err
		}
	}
}

// connectionLost reports errors after which the same statement may
// succeed on a new session: the connection broke, or the server ended the
// session (terminated backend, shutdown, crash recovery).
func connectionLost(err error) bool {
	if err == nil {
		return false
	}
	switch pgutil.SQLState(err) {
	case pgutil.CodeAdminShutdown, pgutil.CodeCrashShutdown, pgutil.CodeCannotConnectNow,
		pgutil.CodeConnectionException, pgutil.CodeConnectionDoesNotExist, pgutil.CodeConnectionFailure,
		pgutil.CodeSQLClientUnableToEstablishConn, pgutil.CodeSQLServerRejectedEstablishment:
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Severity == "FATAL"
	}
	// Anything else that is not a server error is the connection: closed,
	// reset, timed out, refused.
	return !errors.Is(err, context.Canceled)
}

// verifyUndone reads back what undo claims: the source still has the
// shard, nothing of the move is left. It says only what it saw.
func (m *move) verifyUndone(ctx context.Context) string {
	var srcHas, srcActive bool
	var pub, slot bool
	err := m.src.Conn.QueryRow(ctx, `SELECT to_regnamespace($1) IS NOT NULL,
		  EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $2),
		  EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $3)`, pgutil.Quote(m.schema), m.pub, m.slot).Scan(&srcHas, &pub, &slot)
	if err == nil && srcHas {
		var active []string
		if active, err = state.ListActiveShards(ctx, m.src.Conn, m.lib); err == nil {
			for _, a := range active {
				srcActive = srcActive || a == m.schema
			}
		}
	}
	var dstCopy, sub bool
	derr := m.dst.Conn.QueryRow(ctx, `SELECT
		  EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1 AND starts_with(COALESCE(obj_description(oid, 'pg_namespace'), ''), $3)),
		  EXISTS (SELECT 1 FROM pg_catalog.pg_subscription WHERE subname = $2)`, m.schema, m.sub, names.CopyMarkPrefix).Scan(&dstCopy, &sub)
	switch {
	case err != nil || derr != nil:
		return fmt.Sprintf("undone, but the result could not be read back (%s)", pgutil.Describe(errors.Join(err, derr)))
	case !srcHas:
		return fmt.Sprintf("undone, but %s is not on %s: check both nodes", m.schema, m.src.Name)
	case pub || slot || dstCopy || sub:
		return fmt.Sprintf("undone, but something is left (publication %t, slot %t on %s; copy %t, subscription %t on %s): run pgms cleanup", pub, slot, m.src.Name, dstCopy, sub, m.dst.Name)
	}
	state := "inactive"
	if srcActive {
		state = "active"
	}
	return fmt.Sprintf("undone: %s is on %s as before (%s), and nothing of the move is left on either node", m.schema, m.src.Name, state)
}

// cleanupArtifacts drops the replication objects after a finished move.
func (m *move) cleanupArtifacts(ctx context.Context) error {
	if err := m.phase(ctx, PhaseCleanup, "dropping subscription, slot and publication"); err != nil {
		return err
	}
	err := m.retrying(ctx, "cleanup", func(ctx context.Context) error {
		if err := m.dropSubscription(ctx); err != nil {
			return err
		}
		if err := m.dropSlot(ctx); err != nil {
			return err
		}
		return m.dropPublication(ctx)
	})
	if err != nil {
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
		if connectionLost(err) && ctx.Err() == nil && dctx.Err() == nil {
			return pgutil.Wrap(err, "node %s: drop subscription %s", m.dst.Name, m.sub)
		}
		m.event(PhaseCleanup, EventWarning, fmt.Sprintf("DROP SUBSCRIPTION %s on %s failed (%s); detaching it from its slot instead", m.sub, m.dst.Name, pgutil.Describe(err)))
		if err := m.revive(ctx); err != nil {
			return err
		}
		_, err = execSimple(ctx, m.dst.Conn, "ALTER SUBSCRIPTION "+q+" DISABLE; ALTER SUBSCRIPTION "+q+" SET (slot_name = NONE); DROP SUBSCRIPTION "+q)
		if err != nil {
			return pgutil.Wrap(err, "node %s: drop subscription %s", m.dst.Name, m.sub)
		}
	}
	return m.dropSlots(ctx, `s.slot_name LIKE $1`, fmt.Sprintf(`pg\_%d\_sync\_%%`, subid))
}

// dropMarkedCopy drops the destination's schema if, and only if, it is an
// inactive copy marked as unfinished, and the source still has the shard
// under its own name: were the source renamed, the cutover may have
// committed and the copy would be the shard's only home.
func (m *move) dropMarkedCopy(ctx context.Context) error {
	var comment *string
	err := m.dst.Conn.QueryRow(ctx, `SELECT obj_description(oid, 'pg_namespace') FROM pg_catalog.pg_namespace WHERE nspname = $1`, m.schema).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return pgutil.Wrap(err, "node %s: look for the copy of %s", m.dst.Name, m.schema)
	}
	if comment == nil || !names.IsCopyMark(*comment) {
		return nil
	}
	var srcHas bool
	if err := m.src.Conn.QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL", pgutil.Quote(m.schema)).Scan(&srcHas); err != nil {
		return pgutil.Wrap(err, "node %s: check that it still has %s before dropping the copy on %s", m.src.Name, m.schema, m.dst.Name)
	}
	if !srcHas {
		return fmt.Errorf("node %s no longer has %s, so the cutover may have committed and the copy on %s may be the shard's only home: it is kept; run the same move again to finish it", m.src.Name, m.schema, m.dst.Name)
	}
	_, err = m.dst.Conn.Exec(ctx, "DROP SCHEMA "+pgutil.Quote(m.schema)+" CASCADE")
	return pgutil.Wrap(err, "node %s: drop the unfinished copy %s", m.dst.Name, m.schema)
}

// dropSlot drops the move's slot on the source, under its name or the name
// older pgms versions gave it.
func (m *move) dropSlot(ctx context.Context) error {
	return m.dropSlots(ctx, "s.slot_name IN ($1, $2)", m.slot, names.LegacyMoveSlot(m.schema))
}

// dropSlots drops the source's slots matching a condition. A slot still in
// use by a walsender whose subscriber is gone is freed by ending that
// walsender after a grace period: the move holds the shard's claim, so no
// other run streams from it.
func (m *move) dropSlots(ctx context.Context, cond string, args ...any) error {
	// Slots are named in one namespace for the whole server; only this
	// database's are the move's.
	slots, err := dropReplicationSlots(ctx, m.src, "s.database = current_database() AND ("+cond+")", args, slotPolicy{wait: 15 * time.Second, poll: 50 * time.Millisecond,
		holder: func(_ heldSlot, held time.Duration) (string, bool) { return "", held > 2*time.Second }})
	if err != nil {
		return err
	}
	for _, s := range slots {
		switch {
		case s.err != nil:
			return pgutil.Wrap(s.err, "node %s: drop replication slot", m.src.Name)
		case s.holder.pid != 0:
			return pgutil.Wrap(fmt.Errorf("slot %s is in use by process %d", s.name, s.holder.pid), "node %s: drop replication slot", m.src.Name)
		}
	}
	return nil
}

func (m *move) dropPublication(ctx context.Context) error {
	_, err := m.src.Conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgutil.Quote(m.pub))
	return pgutil.Wrap(err, "node %s: drop publication %s", m.src.Name, m.pub)
}
