package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/state"
)

// The rollback window. Logical replication matches tables by their
// schema-qualified names, so a source renamed at the cutover could not
// receive the new home's changes. A move with a window therefore keeps the
// source under its own name: the cutover deactivates it and, under the same
// lock, fences its tables with a trigger that refuses writes, instead of
// renaming it. The new home publishes the shard back to it, from the WAL
// position of the activation on, and the old home subscribes. The fence is
// an ordinary trigger, which the subscription's apply worker (running with
// session_replication_role = replica) does not fire.
//
// A rollback is then a move back whose copy is already streaming: it
// resumes at the catch-up, and the cutover, its bounded pause and its
// recovery from crashes are the move's own. Closing the window drops the
// reverse stream and renames the source as a move without a window does.
//
// The slot on the new home is made before the cutover, while the shard is
// not served there: creating a slot waits for running transactions, which
// must not happen inside the pause. The stream skips what the slot decodes
// before the activation (the forward stream's own changes, which the old
// home has) by starting at the position the activation records.

// windowing reports whether this move opens a rollback window at its
// cutover.
func (m *move) windowing() bool {
	return m.opts.RollbackWindow > 0 && !m.spec.Rollback && m.spec.Activate && !m.spec.KeepInactive
}

// fenceFunctionSQL creates the fence's trigger function in the library
// schema. Its message names the new home (the trigger's argument) and how
// to find it.
func fenceFunctionSQL(lib string) string {
	return "CREATE OR REPLACE FUNCTION " + pgutil.Quote(lib, names.FenceFunction) + `() RETURNS trigger LANGUAGE plpgsql AS $fence$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction',
    MESSAGE = pg_catalog.format('shard %s moved to %s: this copy takes no writes during its rollback window', TG_TABLE_SCHEMA, TG_ARGV[0]),
    HINT = 'Find the shard through microsharding_list_active_shards().';
END
$fence$`
}

// ensureFenceFunction creates the fence's function on node unless it is
// there. Moves from one node may prepare their windows at once: one of two
// concurrent creations fails, and finds the function made by the other.
func (m *move) ensureFenceFunction(ctx context.Context, node *pgutil.Node) error {
	fn := pgutil.Quote(m.lib, names.FenceFunction)
	exists := func() (bool, error) {
		var ok bool
		err := node.Conn.QueryRow(ctx, "SELECT to_regprocedure($1) IS NOT NULL", fn+"()").Scan(&ok)
		return ok, err
	}
	if ok, err := exists(); err != nil || ok {
		return pgutil.Wrap(err, "node %s: look for the fence function %s", node.Name, fn)
	}
	_, cerr := node.Conn.Exec(ctx, fenceFunctionSQL(m.lib))
	if cerr == nil {
		return nil
	}
	if ok, err := exists(); err == nil && ok {
		return nil
	}
	return pgutil.Wrap(cerr, "node %s: create the fence function %s", node.Name, fn)
}

// dropWindowPrep drops what prepareWindow made on the destination of a
// move that did not switch: the stream's publication (only if it is one)
// and its slot.
func (m *move) dropWindowPrep(ctx context.Context) error {
	var comment *string
	err := m.dst.Conn.QueryRow(ctx, "SELECT obj_description(oid, 'pg_publication') FROM pg_catalog.pg_publication WHERE pubname = $1", m.pub).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && (comment == nil || !strings.HasPrefix(*comment, names.StreamMarkPrefix)) {
		return nil
	}
	if err != nil {
		return pgutil.Wrap(err, "node %s: read publication %s", m.dst.Name, m.pub)
	}
	slot, err := m.backSlot(ctx, m.dst)
	if err != nil {
		return err
	}
	return m.dropStream(ctx, m.dst, m.src, slot)
}

// fenceSQL fences one table of schema; to names the new home in the
// message.
func (m *move) fenceSQL(schema, tbl, to string) string {
	return "CREATE TRIGGER " + pgutil.Quote(names.FenceTrigger) + " BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON " + pgutil.Quote(schema, tbl) +
		" FOR EACH STATEMENT EXECUTE FUNCTION " + pgutil.Quote(m.lib, names.FenceFunction) + "(" + quoteLiteral(to) + ")"
}

// unfenceSQL removes the fence from every table of schema.
func unfenceSQL(schema string, tables []string) []string {
	out := make([]string, len(tables))
	for i, t := range tables {
		out[i] = "DROP TRIGGER IF EXISTS " + pgutil.Quote(names.FenceTrigger) + " ON " + pgutil.Quote(schema, t)
	}
	return out
}

func tableNames(ts []table) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

// fencedTables lists the tables of the shard that node fences.
func (m *move) fencedTables(ctx context.Context, node *pgutil.Node) ([]string, error) {
	rows, err := node.Conn.Query(ctx, `SELECT c.relname::text FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
		WHERE t.tgname = $1 AND c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $2) ORDER BY 1`, names.FenceTrigger, m.schema)
	if err != nil {
		return nil, pgutil.Wrap(err, "node %s: list the fenced tables of %s", node.Name, m.schema)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return out, pgutil.Wrap(err, "node %s: list the fenced tables of %s", node.Name, m.schema)
}

// backSlot names the reverse stream's slot on the new home.
func (m *move) backSlot(ctx context.Context, home *pgutil.Node) (string, error) {
	var db uint32
	if err := home.Conn.QueryRow(ctx, "SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()").Scan(&db); err != nil {
		return "", pgutil.Wrap(err, "node %s: read the database's oid", home.Name)
	}
	return names.MoveSlot(m.schema, db), nil
}

// prepareWindow makes, before the cutover, what the window needs: the
// fence's function on the source, and on the destination the publication
// of the shard's tables and then its slot.
func (m *move) prepareWindow(ctx context.Context) error {
	m.event(PhaseCutover, EventInfo, fmt.Sprintf("preparing the rollback window (%v): publication and slot on %s for the stream back to %s", m.opts.RollbackWindow, m.dst.Name, m.src.Name))
	if err := m.ensureFenceFunction(ctx, m.src); err != nil {
		return err
	}
	var has bool
	if err := m.dst.Conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = $1)", m.pub).Scan(&has); err != nil {
		return pgutil.Wrap(err, "node %s: look for publication %s", m.dst.Name, m.pub)
	}
	if !has {
		stmts := []string{"CREATE PUBLICATION " + pgutil.Quote(m.pub)}
		if leaves := m.leafTables(); len(leaves) > 0 {
			list := make([]string, len(leaves))
			for i, t := range leaves {
				list[i] = pgutil.Quote(m.schema, t.Name)
			}
			stmts[0] += " FOR TABLE " + strings.Join(list, ", ")
		}
		stmts = append(stmts, "COMMENT ON PUBLICATION "+pgutil.Quote(m.pub)+" IS "+quoteLiteral(names.StreamMark(m.schema, m.spec.From.Name, "")))
		if _, err := execSimple(ctx, m.dst.Conn, strings.Join(stmts, ";\n")); err != nil {
			return pgutil.Wrap(err, "node %s: create publication %s for the rollback window", m.dst.Name, m.pub)
		}
	}
	slot, err := m.backSlot(ctx, m.dst)
	if err != nil {
		return err
	}
	if err := m.dst.Conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_catalog.pg_replication_slots WHERE slot_name = $1)", slot).Scan(&has); err != nil {
		return pgutil.Wrap(err, "node %s: look for slot %s", m.dst.Name, slot)
	}
	if !has {
		if _, err := m.dst.Conn.Exec(ctx, "SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')", slot); err != nil {
			return m.interrupted(ctx, pgutil.Wrap(err, "node %s: create replication slot %s for the rollback window", m.dst.Name, slot))
		}
	}
	return fault.Point(ctx, "move.window.prepared")
}

// windowCutoverSQL is what the cutover does to the source instead of
// renaming it: fence its tables and mark it, in the locked transaction.
func (m *move) windowCutoverSQL(now time.Time) []string {
	var stmts []string
	for _, t := range m.tables {
		stmts = append(stmts, m.fenceSQL(m.schema, t.Name, m.spec.To.Name))
	}
	mark := names.WindowMark(names.Window{Schema: m.schema, To: m.spec.To.Name, Since: now, Until: now.Add(m.opts.RollbackWindow), Comment: m.comment})
	return append(stmts, "COMMENT ON SCHEMA "+pgutil.Quote(m.schema)+" IS "+quoteLiteral(mark))
}

// streamStartSQL records, in the activation's transaction on the new home,
// the WAL position from which the reverse stream carries changes: every
// application write there commits after it, and everything the forward
// stream applied committed before it.
func (m *move) streamStartSQL() string {
	return fmt.Sprintf("DO $pgms_window$ BEGIN EXECUTE pg_catalog.format('COMMENT ON PUBLICATION %%I IS %%L', %s, %s || pg_catalog.pg_current_wal_insert_lsn()::text); END $pgms_window$",
		quoteLiteral(m.pub), quoteLiteral(names.StreamMarkPrefix+m.schema+" to "+m.spec.From.Name+" from "))
}

// openWindow starts the reverse stream after a windowed cutover: the
// forward stream is gone by then, so that no change can loop. The slot is
// advanced to the position the activation recorded, and the old home
// subscribes from there.
func (m *move) openWindow(ctx context.Context) error {
	if err := m.phase(ctx, PhaseWindow, fmt.Sprintf("opening the rollback window: %s streams %s back to %s", m.dst.Name, m.schema, m.src.Name)); err != nil {
		return err
	}
	return m.retrying(ctx, "open the rollback window", func(ctx context.Context) error {
		var exists bool
		if err := m.src.Conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_catalog.pg_subscription WHERE oid = "+subscriptionOID+")", m.sub).Scan(&exists); err != nil {
			return pgutil.Wrap(err, "node %s: look for subscription %s", m.src.Name, m.sub)
		}
		if exists {
			return nil
		}
		var comment *string
		err := m.dst.Conn.QueryRow(ctx, "SELECT obj_description(oid, 'pg_publication') FROM pg_catalog.pg_publication WHERE pubname = $1", m.pub).Scan(&comment)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return pgutil.Wrap(err, "node %s: read publication %s", m.dst.Name, m.pub)
		}
		from := ""
		if comment != nil {
			from, _ = names.ParseStreamMark(*comment)
		}
		slot, err := m.backSlot(ctx, m.dst)
		if err != nil {
			return err
		}
		var confirmed *string
		var behind bool
		err = m.dst.Conn.QueryRow(ctx, `SELECT confirmed_flush_lsn::text, confirmed_flush_lsn < $2::pg_lsn FROM pg_catalog.pg_replication_slots
			WHERE slot_name = $1 AND database = current_database()`, slot, nullIfEmpty(from)).Scan(&confirmed, &behind)
		switch {
		case errors.Is(err, pgx.ErrNoRows) || from == "":
			return m.abandonWindow(ctx, fmt.Sprintf("the reverse stream's publication %s or slot %s on %s is missing or never recorded where the application's writes begin", m.pub, slot, m.dst.Name))
		case err != nil:
			return pgutil.Wrap(err, "node %s: read slot %s", m.dst.Name, slot)
		}
		if behind {
			if _, err := m.dst.Conn.Exec(ctx, "SELECT pg_catalog.pg_replication_slot_advance($1, $2::pg_lsn)", slot, from); err != nil {
				return pgutil.Wrap(err, "node %s: advance slot %s to %s", m.dst.Name, slot, from)
			}
		}
		conninfo, err := serverConninfo(m.spec.To, "destination")
		if err != nil {
			return err
		}
		if err := fault.Point(ctx, "move.window.advanced"); err != nil {
			return err
		}
		q := fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (create_slot = false, slot_name = %s, copy_data = false, synchronous_commit = 'on', enabled = true)",
			pgutil.Quote(m.sub), quoteLiteral(conninfo), pgutil.Quote(m.pub), quoteLiteral(slot))
		err = withoutStatementLog(ctx, m.src, m.srcMajor, conninfo, func() error {
			_, err := m.src.Conn.Exec(ctx, q)
			return err
		})
		if err != nil {
			return pgutil.Wrap(err, "node %s: create subscription %s for the rollback window", m.src.Name, m.sub)
		}
		m.event(PhaseWindow, EventInfo, fmt.Sprintf("rollback window open until %s: %s streams %s back to %s from %s; pgms rollback --shard=%d switches back",
			time.Now().Add(m.opts.RollbackWindow).UTC().Format("2006-01-02 15:04:05 UTC"), m.dst.Name, m.schema, m.src.Name, from, m.spec.Shard))
		return fault.Point(ctx, "move.window.end")
	})
}

func nullIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// abandonWindow closes a window that cannot be opened safely: a stream
// that might miss a write would make a rollback lose it.
func (m *move) abandonWindow(ctx context.Context, why string) error {
	m.event(PhaseWindow, EventWarning, "no rollback window: "+why+"; the source is renamed as without a window")
	slot, err := m.backSlot(ctx, m.dst)
	if err != nil {
		return err
	}
	if err := m.dropStream(ctx, m.dst, m.src, slot); err != nil {
		return err
	}
	_, err = m.retireSource(ctx, m.src)
	return err
}

// dropStream drops the reverse stream: the subscription on the old home,
// detached first so that dropping it needs no connection to the new home,
// then the slot and the publication there.
func (m *move) dropStream(ctx context.Context, home, old *pgutil.Node, slot string) error {
	var exists bool
	if err := old.Conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_catalog.pg_subscription WHERE oid = "+subscriptionOID+")", m.sub).Scan(&exists); err != nil {
		return pgutil.Wrap(err, "node %s: look for subscription %s", old.Name, m.sub)
	}
	if exists {
		q := pgutil.Quote(m.sub)
		if _, err := execSimple(ctx, old.Conn, "ALTER SUBSCRIPTION "+q+" DISABLE; ALTER SUBSCRIPTION "+q+" SET (slot_name = NONE); DROP SUBSCRIPTION "+q); err != nil {
			return pgutil.Wrap(err, "node %s: drop subscription %s", old.Name, m.sub)
		}
	}
	if err := fault.Point(ctx, "window.close.subscription"); err != nil {
		return err
	}
	slots, err := dropReplicationSlots(ctx, home, "s.database = current_database() AND s.slot_name = $1", []any{slot}, slotPolicy{wait: 15 * time.Second, poll: 50 * time.Millisecond,
		holder: func(_ heldSlot, held time.Duration) (string, bool) { return "", held > 2*time.Second }})
	if err != nil {
		return pgutil.Wrap(err, "node %s: drop slot %s", home.Name, slot)
	}
	for _, s := range slots {
		if s.err != nil || s.holder.pid != 0 {
			return pgutil.Wrap(errors.Join(s.err, fmt.Errorf("slot %s still in use", s.name)), "node %s: drop slot %s", home.Name, slot)
		}
	}
	if _, err := home.Conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgutil.Quote(m.pub)); err != nil {
		return pgutil.Wrap(err, "node %s: drop publication %s", home.Name, m.pub)
	}
	return nil
}

// retireSource ends the window on the old home: the fence goes and the
// source is renamed as a move without a window renames it, in one
// transaction, with the user's deactivation SQL. It returns the new name
// ("" when there was no window to close).
func (m *move) retireSource(ctx context.Context, old *pgutil.Node) (string, error) {
	var comment *string
	err := old.Conn.QueryRow(ctx, "SELECT obj_description(oid, 'pg_namespace') FROM pg_catalog.pg_namespace WHERE nspname = $1", m.schema).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && (comment == nil || !names.IsWindowMark(*comment)) {
		return "", nil
	}
	if err != nil {
		return "", pgutil.Wrap(err, "node %s: read the comment of %s", old.Name, m.schema)
	}
	w, _ := names.ParseWindowMark(*comment)
	own := w.Comment
	rows, err := old.Conn.Query(ctx, `SELECT relname::text FROM pg_catalog.pg_class
		WHERE relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) AND relkind IN ('r', 'p') ORDER BY relname`, m.schema)
	if err != nil {
		return "", pgutil.Wrap(err, "node %s: list the tables of %s", old.Name, m.schema)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", pgutil.Wrap(err, "node %s: list the tables of %s", old.Name, m.schema)
	}
	renamed := names.OldSchema(m.schema, time.Now())
	stmts := []string{"BEGIN", activeListLock}
	stmts = append(stmts, unfenceSQL(m.schema, tables)...)
	c := "NULL"
	if own != nil {
		c = quoteLiteral(*own)
	}
	stmts = append(stmts,
		"COMMENT ON SCHEMA "+pgutil.Quote(m.schema)+" IS "+c,
		fmt.Sprintf("SELECT * FROM %s(%d)", pgutil.Quote(m.lib, "microsharding_ensure_inactive"), m.spec.Shard),
		"ALTER SCHEMA "+pgutil.Quote(m.schema)+" RENAME TO "+pgutil.Quote(renamed))
	if m.opts.DeactivateSQL != "" {
		for _, t := range tables {
			stmts = append(stmts, strings.ReplaceAll(m.opts.DeactivateSQL, "$1", quoteLiteral(pgutil.Quote(renamed, t))))
		}
	}
	stmts = append(stmts, "COMMIT")
	if _, err := execSimple(ctx, old.Conn, strings.Join(stmts, ";\n")); err != nil {
		execSimple(context.WithoutCancel(ctx), old.Conn, "ROLLBACK") //nolint:errcheck // the next attempt begins afresh
		return "", pgutil.Wrap(err, "node %s: close the rollback window of %s (rename it to %s)", old.Name, m.schema, renamed)
	}
	m.event(PhaseWindow, EventInfo, fmt.Sprintf("rollback window of %s closed: the reverse stream is dropped and the source on %s is renamed to %s", m.schema, old.Name, renamed))
	return renamed, nil
}

// CloseWindow ends the rollback window of spec's shard now: spec.From is
// the node that serves the shard (where the move went), spec.To the old
// home holding the fenced source. The reverse stream is dropped and the
// source renamed to <schema>old<time>, kept for cleanup_after like any
// renamed source. It returns that name ("" when no window was open).
func CloseWindow(ctx context.Context, spec MoveSpec, journal *state.Journal, rep Reporter) (string, error) {
	spec.Rollback = true
	m, err := newMove(spec, rep)
	if err != nil {
		return "", err
	}
	m.kind = "close-window"
	err = m.begin(ctx, journal)
	renamed := ""
	if err == nil {
		m.setPhase(ctx, PhaseWindow, fmt.Sprintf("closing the rollback window of %s on %s", m.schema, m.dst.Name))
		err = m.retrying(ctx, "close the rollback window", func(ctx context.Context) error {
			if err := m.dropStream(ctx, m.src, m.dst, m.slot); err != nil {
				return err
			}
			var rerr error
			renamed, rerr = m.retireSource(ctx, m.dst)
			return rerr
		})
	}
	m.release(ctx)
	m.endStep(ctx, err)
	if err != nil {
		return "", fmt.Errorf("close the rollback window of shard %d (%s) on %s: %w", spec.Shard, orShard(m.schema, spec.Shard), m.spec.To.Name, err)
	}
	return renamed, nil
}
