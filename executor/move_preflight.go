package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// situation is what the physical state of the two nodes says about a move.
type situation int

const (
	// situationFresh: the shard is on the source only.
	situationFresh situation = iota
	// situationCopying: a copy of ours is on the destination with its
	// subscription, slot and publication; the copy continues.
	situationCopying
	// situationStale: a copy of ours is on the destination but some of its
	// replication objects are gone; it is removed and the move starts over.
	situationStale
	// situationCommitted: the source schema is renamed and our copy waits,
	// inactive, on the destination; only finishing is left.
	situationCommitted
	// situationDone: the shard is active on the destination and gone from
	// the source.
	situationDone
)

// found is the physical state relevant to a move.
type found struct {
	situation situation

	srcHas, srcActive bool
	dstHas, dstActive bool
	dstMarked         bool

	pub, slot, sub bool
	subEnabled     bool
	oldSchema      string // the renamed source, when committed
	// window: the cutover kept the source under its name, fenced, for a
	// rollback window (oldSchema is then the shard's own name).
	window bool
}

func (f found) hasArtifacts() bool { return f.pub || f.slot || f.sub }

// leftBehind says what an earlier run of the move left and what happens
// to it. The move holds the shard's claims, so that run is over.
func (f found) leftBehind(m *move) string {
	var have, missing []string
	for _, o := range []struct {
		ok   bool
		what string
	}{
		{f.dstHas && f.dstMarked, "the unfinished copy on " + m.dst.Name},
		{f.sub, "subscription " + m.sub + " on " + m.dst.Name},
		{f.slot, "slot " + m.slot + " on " + m.src.Name},
		{f.pub, "publication " + m.pub + " on " + m.src.Name},
	} {
		if o.ok {
			have = append(have, o.what)
		} else {
			missing = append(missing, o.what)
		}
	}
	msg := "an earlier run of this move, which no longer holds the shard, left " + strings.Join(have, ", ")
	if len(missing) > 0 {
		msg += " (but not " + strings.Join(missing, ", ") + ")"
	}
	if f.dstHas {
		msg += "; a copy cannot continue without the snapshot its run held, so it is removed and the copy starts over"
	} else {
		msg += "; they are removed first"
	}
	return msg
}

// nodeFacts are read from each node at preflight.
type nodeFacts struct {
	standby   bool
	major     int
	walLevel  string
	library   int
	shardName string
	active    []string
	schema    bool
	comment   *string
	err       error
}

func (m *move) readFacts(ctx context.Context, n *pgutil.Node) nodeFacts {
	var f nodeFacts
	var versionNum int
	err := n.Conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), current_setting('server_version_num')::int, current_setting('wal_level')`).
		Scan(&f.standby, &versionNum, &f.walLevel)
	if err != nil {
		f.err = pgutil.Wrap(err, "node %s", n.Name)
		return f
	}
	f.major = versionNum / 10000
	if f.standby {
		f.err = fmt.Errorf("node %s is a standby (in recovery); moves need primaries on both sides", n.Name)
		return f
	}
	if f.library, err = sql.InstalledVersion(ctx, n.Conn, m.lib); err != nil {
		f.err = pgutil.Wrap(err, "node %s", n.Name)
		return f
	}
	if f.library < 0 {
		f.err = fmt.Errorf("node %s: the microsharding library is not installed in schema %q; run pgms install", n.Name, m.lib)
		return f
	}
	if err := n.Conn.QueryRow(ctx, "SELECT "+pgutil.Quote(m.lib, "microsharding_schema_name_")+"($1)", m.spec.Shard).Scan(&f.shardName); err != nil {
		f.err = pgutil.Wrap(err, "node %s: name of shard %d", n.Name, m.spec.Shard)
		return f
	}
	if f.active, err = state.ListActiveShards(ctx, n.Conn, m.lib); err != nil {
		f.err = pgutil.Wrap(err, "node %s: list active shards", n.Name)
		return f
	}
	err = n.Conn.QueryRow(ctx, `SELECT true, obj_description(oid, 'pg_namespace') FROM pg_catalog.pg_namespace WHERE nspname = $1`, m.schema).
		Scan(&f.schema, &f.comment)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		f.err = pgutil.Wrap(err, "node %s: look for schema %s", n.Name, m.schema)
	}
	return f
}

// preflight checks both nodes and reads the state the move is in.
func (m *move) preflight(ctx context.Context) (found, error) {
	var f found
	if err := m.checkNames(); err != nil {
		return f, err
	}
	var src, dst nodeFacts
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); src = m.readFacts(ctx, m.src) }()
	go func() { defer wg.Done(); dst = m.readFacts(ctx, m.dst) }()
	wg.Wait()
	if err := errors.Join(src.err, dst.err); err != nil {
		return f, err
	}
	m.srcMajor, m.dstMajor = src.major, dst.major
	if src.library != dst.library {
		return f, fmt.Errorf("library versions differ: %s has version %d, %s has version %d; run pgms install on both", m.src.Name, src.library, m.dst.Name, dst.library)
	}
	for _, n := range []struct {
		node string
		name string
	}{{m.src.Name, src.shardName}, {m.dst.Name, dst.shardName}} {
		if n.name != m.schema {
			return f, fmt.Errorf("node %s names shard %d %q, not %q: the nodes' shard naming (or --schema-prefix/--schema-digits) disagree", n.node, m.spec.Shard, n.name, m.schema)
		}
	}
	f.srcHas, f.srcActive = src.schema, slices.Contains(src.active, m.schema)
	f.dstHas, f.dstActive = dst.schema, slices.Contains(dst.active, m.schema)
	f.dstMarked = dst.comment != nil && names.IsCopyMark(*dst.comment)
	m.comment = src.comment
	srcWindow, srcInWindow := names.ParseWindowMark(ptrOr(src.comment, ""))
	dstWindow, dstInWindow := names.ParseWindowMark(ptrOr(dst.comment, ""))
	switch {
	case m.spec.Rollback && dstInWindow:
		// The old home's fenced source is the rollback's streaming copy.
		if dstWindow.To != m.spec.From.Name {
			m.event(PhasePreflight, EventWarning, fmt.Sprintf("the rollback window of %s on %s names %s as the shard's new home, not %s", m.schema, m.dst.Name, dstWindow.To, m.spec.From.Name))
		}
		f.dstMarked = true
	case m.spec.Rollback && !(f.dstActive && !f.srcHas):
		return f, fmt.Errorf("%s on %s has no open rollback window: nothing to roll back to (a window opens when a move runs with a rollback window, and closes when it expires or is closed)", m.schema, m.dst.Name)
	case srcInWindow && f.srcHas:
		// A windowed cutover committed: the source stays under its name.
		f.window, f.oldSchema = true, m.schema
		if err := m.readArtifacts(ctx, &f); err != nil {
			return f, err
		}
		switch {
		case f.dstActive:
			f.situation = situationDone
		case f.dstHas && f.dstMarked:
			f.situation = situationCommitted
		default:
			return f, fmt.Errorf("%s on %s is in the rollback window of a move to %s, but %s does not serve it and holds no copy of it: check both nodes", m.schema, m.src.Name, srcWindow.To, m.dst.Name)
		}
		return f, m.readSourceObjects(ctx)
	case dstInWindow || srcInWindow:
		w, on := dstWindow, m.dst.Name
		if srcInWindow {
			w, on = srcWindow, m.src.Name
		}
		return f, fmt.Errorf("%s on %s is in the rollback window of its move to %s (open until %s): roll back with pgms rollback --shard=%d, or close the window (pgms rollback --shard=%d --close) before moving it",
			m.schema, on, w.To, w.Until.Format("2006-01-02 15:04:05 UTC"), m.spec.Shard, m.spec.Shard)
	}
	if f.srcHas && src.comment != nil && names.IsCopyMark(*src.comment) {
		return f, fmt.Errorf("%s on %s is the unfinished copy of another move (%s), not the shard's home: it cannot be a move's source; plan again to see which move it belongs to", m.schema, m.src.Name, *src.comment)
	}
	if f.srcHas && f.dstHas && !f.dstMarked && !f.dstActive {
		adopted, err := m.adoptReferenceCopy(ctx)
		if err != nil {
			return f, err
		}
		f.dstMarked = adopted
	}
	if err := m.readArtifacts(ctx, &f); err != nil {
		return f, err
	}
	if f.pub && !m.spec.Rollback {
		// A publication of this name on the source may be a rollback
		// window's stream back to the old home: moving on would break it.
		var comment *string
		if err := m.src.Conn.QueryRow(ctx, "SELECT obj_description(oid, 'pg_publication') FROM pg_catalog.pg_publication WHERE pubname = $1", m.pub).Scan(&comment); err != nil {
			return f, pgutil.Wrap(err, "node %s: read publication %s", m.src.Name, m.pub)
		}
		if comment != nil {
			if _, ok := names.ParseStreamMark(*comment); ok {
				return f, fmt.Errorf("%s streams %s back to its old home for a rollback window (publication %s): roll back with pgms rollback --shard=%d, or close the window (pgms rollback --shard=%d --close) before moving it",
					m.src.Name, m.schema, m.pub, m.spec.Shard, m.spec.Shard)
			}
		}
	}

	switch {
	case !f.srcHas && !f.dstHas:
		return f, fmt.Errorf("schema %s exists on neither %s nor %s", m.schema, m.src.Name, m.dst.Name)
	case f.srcActive && f.dstActive:
		return f, fmt.Errorf("shard %s is active on both %s and %s; fix that by hand (microsharding_ensure_inactive on the node that must not serve it) before moving", m.schema, m.src.Name, m.dst.Name)
	case !f.srcHas && f.dstHas && f.dstMarked:
		f.situation = situationCommitted
		if from, ok := names.ParseCopyMark(ptrOr(dst.comment, "")); ok && m.otherSource(from) {
			return f, fmt.Errorf("the copy of %s on %s was made from %s, not %s: its move committed there, and finishing it takes the sequence values of %s's renamed source; run the move from %s (pgms apply plans it so)",
				m.schema, m.dst.Name, from, m.src.Name, from, from)
		}
		old, err := m.findOldSchema(ctx, f)
		if err != nil {
			return f, err
		}
		f.oldSchema = old
		return f, nil
	case !f.srcHas && (f.dstActive || f.dstHas && m.keepsInactive()):
		f.situation = situationDone
		return f, nil
	case !f.srcHas:
		return f, fmt.Errorf("schema %s is not on %s; %s has it but inactive, and not as a copy of an unfinished move: activate it there if it is meant to serve", m.schema, m.src.Name, m.dst.Name)
	case f.dstHas && !f.dstMarked:
		return f, fmt.Errorf("destination %s already has a schema %s (not a copy made by an unfinished move); check what it holds and drop it, or choose another destination", m.dst.Name, m.schema)
	case f.dstHas && f.pub && f.slot && f.sub:
		f.situation = situationCopying
	case f.dstHas && m.spec.Rollback:
		return f, fmt.Errorf("the rollback window's stream of %s is incomplete (%s): a rollback could lose writes, so it is refused; close the window (pgms rollback --shard=%d --close)", m.schema, f.leftBehind(m), m.spec.Shard)
	case f.dstHas:
		f.situation = situationStale
	default:
		f.situation = situationFresh
	}

	// The shard stays on the source: check what the copy needs there.
	if src.walLevel != "logical" {
		return f, fmt.Errorf("node %s has wal_level=%s; moves need wal_level=logical there (ALTER SYSTEM SET wal_level = logical, then restart it)", m.src.Name, src.walLevel)
	}
	if err := m.checkPrivileges(ctx); err != nil {
		return f, err
	}
	if err := m.noteFailoverSlots(ctx); err != nil {
		return f, err
	}
	if err := m.readSourceObjects(ctx); err != nil {
		return f, err
	}
	if err := m.checkReplicaIdentity(ctx, f.situation); err != nil {
		return f, err
	}
	if f.situation != situationCopying {
		if err := m.checkCapacity(ctx, f); err != nil {
			return f, err
		}
		if err := m.checkRoom(ctx); err != nil {
			return f, err
		}
	}
	return f, nil
}

// adoptReferenceCopy takes over a move that pg-microsharding left
// half-done: its subscription on the destination streams into an
// inactive copy of the shard there, which carries no pgms mark. The copy
// is marked first, so that from then on it is an unfinished copy like
// pgms's own (a crash from here on leaves a state the next run knows);
// then pg-microsharding's subscription, slot and publication are dropped.
// The caller removes the copy and starts over, or undoes the move.
func (m *move) adoptReferenceCopy(ctx context.Context) (bool, error) {
	sub := names.ReferenceSubscription(m.schema)
	var exists bool
	if err := m.dst.Conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_subscription WHERE subname = $1
		AND subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))`, sub).Scan(&exists); err != nil {
		return false, pgutil.Wrap(err, "node %s: look for pg-microsharding's subscription %s", m.dst.Name, sub)
	}
	if !exists {
		return false, nil
	}
	m.event(PhasePreflight, EventInfo, fmt.Sprintf("pg-microsharding left a half-done move of %s from %s to %s (subscription %s and an inactive copy); pgms takes it over: the copy is marked as unfinished and replaced by a fresh one, pg-microsharding's replication objects are dropped",
		m.schema, m.src.Name, m.dst.Name, sub))
	if _, err := m.dst.Conn.Exec(ctx, "COMMENT ON SCHEMA "+pgutil.Quote(m.schema)+" IS "+quoteLiteral(names.CopyMark(m.schema, m.src.Name))); err != nil {
		return false, pgutil.Wrap(err, "node %s: mark %s as an unfinished copy", m.dst.Name, m.schema)
	}
	m.touched = true
	q := pgutil.Quote(sub)
	if _, err := execSimple(ctx, m.dst.Conn, "ALTER SUBSCRIPTION "+q+" DISABLE; ALTER SUBSCRIPTION "+q+" SET (slot_name = NONE); DROP SUBSCRIPTION "+q); err != nil {
		return true, pgutil.Wrap(err, "node %s: drop pg-microsharding's subscription %s", m.dst.Name, sub)
	}
	if err := m.dropSlots(ctx, "s.slot_name = $1", sub); err != nil {
		return true, err
	}
	_, err := m.src.Conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgutil.Quote(names.ReferencePublication(m.schema)))
	return true, pgutil.Wrap(err, "node %s: drop pg-microsharding's publication", m.src.Name)
}

// checkRoom makes sure the destination has room for the copy: the shard's
// tables and indexes, and the WAL writing them produces until checkpoints
// recycle it (at most max_wal_size). The free space of the destination's
// data directory can be read only where the role may run programs on the
// server (pg_execute_server_program); elsewhere the move says what it
// could not check.
func (m *move) checkRoom(ctx context.Context) error {
	var need, walMax int64
	err := m.src.Conn.QueryRow(ctx, `SELECT COALESCE(sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::bigint
		FROM pg_catalog.pg_class c WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) AND c.relkind IN ('r', 'm')`, m.schema).Scan(&need)
	if err != nil {
		return pgutil.Wrap(err, "node %s: measure %s", m.src.Name, m.schema)
	}
	if err := m.dst.Conn.QueryRow(ctx, `SELECT setting::bigint * 1024 * 1024 FROM pg_catalog.pg_settings WHERE name = 'max_wal_size'`).Scan(&walMax); err != nil {
		return pgutil.Wrap(err, "node %s: read max_wal_size", m.dst.Name)
	}
	want := need + min(need, walMax) + need/10
	free, why := m.freeDisk(ctx)
	if why != "" {
		if need > 0 {
			m.event(PhasePreflight, EventInfo, fmt.Sprintf("could not check the free disk on %s (%s); make sure it has room for about %s (the shard's tables and indexes, %s, and the WAL the copy writes)",
				m.dst.Name, why, units.FormatBytes(float64(want)), units.FormatBytes(float64(need))))
		}
		return nil
	}
	if free < want {
		return fmt.Errorf("node %s has %s free on its data directory's file system; the copy of %s needs about %s (tables and indexes %s, plus the WAL the copy writes): free room there or choose another destination",
			m.dst.Name, units.FormatBytes(float64(free)), m.schema, units.FormatBytes(float64(want)), units.FormatBytes(float64(need)))
	}
	return nil
}

// freeDisk reads the free bytes of the destination's data directory's
// file system, through df run by the server in its data directory. It
// returns why it could not, instead, when it could not.
func (m *move) freeDisk(ctx context.Context) (int64, string) {
	var allowed bool
	err := m.dst.Conn.QueryRow(ctx, `SELECT rolsuper OR pg_catalog.pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER') FROM pg_catalog.pg_roles WHERE rolname = current_user`).Scan(&allowed)
	if err != nil || !allowed {
		return 0, "the role may not run programs on the server (pg_execute_server_program)"
	}
	var free int64
	// A temporary table and COPY FROM PROGRAM with a fixed command: the
	// server runs it in its data directory, which is where the copy goes.
	_, err = execSimple(ctx, m.dst.Conn, `CREATE TEMPORARY TABLE IF NOT EXISTS pgms_df (line text); TRUNCATE pgms_df; COPY pgms_df FROM PROGRAM 'df -Pk . | tail -n 1'`)
	if err == nil {
		err = m.dst.Conn.QueryRow(ctx, `SELECT (regexp_split_to_array(line, '\s+'))[4]::bigint * 1024 FROM pgms_df LIMIT 1`).Scan(&free)
	}
	if err != nil {
		return 0, "df on the server failed: " + pgutil.Describe(err)
	}
	return free, ""
}

// keepsInactive: the move ends with the shard inactive on the destination
// under its own name.
func (m *move) keepsInactive() bool { return !m.spec.Activate && m.spec.KeepInactive }

// checkNames refuses schema names whose derived names do not fit
// PostgreSQL's 63-byte identifiers (they would be silently truncated and
// collide).
func (m *move) checkNames() error {
	const maxIdent = 63
	for _, n := range []struct{ what, name string }{
		{"replication slot", names.MoveSlot(m.schema, 1<<32-1)},
		{"publication", names.MovePublication(m.schema)},
		{"subscription", names.MoveSubscription(m.schema)},
		{"renamed source schema", names.OldSchema(m.schema, time.Now())},
		{"inactive copy schema", names.NewSchema(m.schema)},
	} {
		if len(n.name) > maxIdent {
			return fmt.Errorf("schema name %q is too long to move: its %s would be %q, %d bytes, over PostgreSQL's %d", m.schema, n.what, n.name, len(n.name), maxIdent)
		}
	}
	return nil
}

// readArtifacts looks for the move's publication and slot on the source and
// its subscription on the destination.
func (m *move) readArtifacts(ctx context.Context, f *found) error {
	err := m.src.Conn.QueryRow(ctx, `SELECT
		  EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1),
		  EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $2)`, m.pub, m.slot).Scan(&f.pub, &f.slot)
	if err != nil {
		return pgutil.Wrap(err, "node %s: look for publication and slot", m.src.Name)
	}
	var enabled *bool
	err = m.dst.Conn.QueryRow(ctx, `SELECT (SELECT subenabled FROM pg_catalog.pg_subscription
		WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))`, m.sub).Scan(&enabled)
	if err != nil {
		return pgutil.Wrap(err, "node %s: look for subscription", m.dst.Name)
	}
	f.sub, f.subEnabled = enabled != nil, enabled != nil && *enabled
	return nil
}

// findOldSchema finds what the source schema was renamed to at a committed
// cutover: the schema of the publication's tables (the publication follows
// its tables through the rename and is dropped last), or else the newest
// renamed copy of the shard.
func (m *move) findOldSchema(ctx context.Context, f found) (string, error) {
	var old string
	if f.pub {
		err := m.src.Conn.QueryRow(ctx, `SELECT COALESCE(min(schemaname), '') FROM pg_catalog.pg_publication_tables WHERE pubname = $1`, m.pub).Scan(&old)
		if err != nil {
			return "", pgutil.Wrap(err, "node %s: read publication %s", m.src.Name, m.pub)
		}
		if old != "" && old != m.schema {
			return old, nil
		}
	}
	prefix := m.schema + "old"
	err := m.src.Conn.QueryRow(ctx, `SELECT COALESCE(max(nspname), '') FROM pg_catalog.pg_namespace
		WHERE left(nspname, length($1)) = $1 AND substr(nspname, length($1) + 1) ~ '^[0-9]{14}$'`, prefix).Scan(&old)
	if err != nil {
		return "", pgutil.Wrap(err, "node %s: look for the renamed source of %s", m.src.Name, m.schema)
	}
	if old == "" {
		return "", fmt.Errorf("%s holds an unfinished copy of %s but %s has neither %s nor a renamed %sold<time>: the source is gone; check both nodes before activating the copy by hand", m.dst.Name, m.schema, m.src.Name, m.schema, m.schema)
	}
	m.event(PhasePreflight, EventWarning, fmt.Sprintf("the move's publication is gone; taking the newest renamed source %s for the sequence values", old))
	return old, nil
}

// readSourceObjects lists the shard's tables and sequences on the source.
func (m *move) readSourceObjects(ctx context.Context) error {
	rows, err := m.src.Conn.Query(ctx, `SELECT c.oid, c.relname, c.relkind::text, pg_catalog.pg_relation_size(c.oid), GREATEST(c.reltuples, 0)::bigint
		FROM pg_catalog.pg_class c
		WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) AND c.relkind IN ('r', 'p', 'S')
		ORDER BY c.relname`, m.schema)
	if err != nil {
		return pgutil.Wrap(err, "node %s: list the tables of %s", m.src.Name, m.schema)
	}
	m.tables, m.seqs = nil, nil
	var total int64
	for rows.Next() {
		var t table
		var kind string
		if err := rows.Scan(&t.OID, &t.Name, &kind, &t.Bytes, &t.Tuples); err != nil {
			return err
		}
		t.Kind = kind[0]
		if t.Kind == 'S' {
			m.seqs = append(m.seqs, sequence{OID: t.OID, Name: t.Name})
			continue
		}
		total += t.Bytes
		m.tables = append(m.tables, t)
	}
	if err := rows.Err(); err != nil {
		return pgutil.Wrap(err, "node %s: list the tables of %s", m.src.Name, m.schema)
	}
	m.mu.Lock()
	m.progress.TotalBytes = total
	m.mu.Unlock()
	m.res.Tables = len(m.leafTables())
	return nil
}

// leafTables are the tables holding rows: what is published and copied.
// Partitioned tables hold none; their partitions are published one by one
// under their own names, which exist on the destination too.
func (m *move) leafTables() []table {
	var out []table
	for _, t := range m.tables {
		if t.Kind == 'r' {
			out = append(out, t)
		}
	}
	return out
}

// checkReplicaIdentity refuses tables whose UPDATEs and DELETEs could not
// be replicated (and would fail on the source once published), or gives
// them REPLICA IDENTITY FULL when asked to.
func (m *move) checkReplicaIdentity(ctx context.Context, s situation) error {
	rows, err := m.src.Conn.Query(ctx, `SELECT c.relname
		FROM pg_catalog.pg_class c
		WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = $1) AND c.relkind = 'r'
		  AND NOT (c.relreplident = 'f'
		    OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
		    OR (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
		ORDER BY c.relname`, m.schema)
	if err != nil {
		return pgutil.Wrap(err, "node %s: check replica identities", m.src.Name)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return pgutil.Wrap(err, "node %s: check replica identities", m.src.Name)
	}
	if len(missing) == 0 {
		return nil
	}
	quoted := make([]string, len(missing))
	for i, t := range missing {
		quoted[i] = pgutil.Quote(m.schema, t)
	}
	if !m.opts.ReplicaIdentityFull || s == situationCopying {
		return fmt.Errorf("tables without a primary key or replica identity in %s on %s: %s; logical replication cannot carry their UPDATEs and DELETEs. Add a primary key (or ALTER TABLE … REPLICA IDENTITY USING INDEX a unique index), or pass --replica-identity-full to set REPLICA IDENTITY FULL on them (slower updates while they are published)",
			m.schema, m.src.Name, strings.Join(quoted, ", "))
	}
	for _, q := range quoted {
		if _, err := m.src.Conn.Exec(ctx, "ALTER TABLE "+q+" REPLICA IDENTITY FULL"); err != nil {
			return pgutil.Wrap(err, "node %s: set REPLICA IDENTITY FULL on %s", m.src.Name, q)
		}
		m.event(PhasePreflight, EventInfo, "set REPLICA IDENTITY FULL on "+q)
	}
	return nil
}

// checkCapacity makes sure the source can serve one more replication slot
// and walsender, plus the table synchronisation workers' own, and the
// destination one more apply worker.
func (m *move) checkCapacity(ctx context.Context, f found) error {
	var maxSlots, usedSlots, maxSenders, usedSenders int
	err := m.src.Conn.QueryRow(ctx, `SELECT current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int,
		  current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_catalog.pg_stat_replication)::int`).
		Scan(&maxSlots, &usedSlots, &maxSenders, &usedSenders)
	if err != nil {
		return pgutil.Wrap(err, "node %s: count replication slots", m.src.Name)
	}
	var syncWorkers, maxWorkers, usedWorkers int
	err = m.dst.Conn.QueryRow(ctx, `SELECT current_setting('max_sync_workers_per_subscription')::int,
		  current_setting('max_logical_replication_workers')::int,
		  (SELECT count(*) FROM pg_catalog.pg_stat_subscription WHERE pid IS NOT NULL)::int`).Scan(&syncWorkers, &maxWorkers, &usedWorkers)
	if err != nil {
		return pgutil.Wrap(err, "node %s: count replication workers", m.dst.Name)
	}
	if f.slot {
		usedSlots-- // ours is dropped and made again
	}
	need := 1 + min(syncWorkers, len(m.leafTables()))
	if free := maxSlots - usedSlots; free < need {
		return fmt.Errorf("node %s has %d free replication slots (max_replication_slots=%d, %d used); the move needs %d (its slot and one per table sync worker): raise max_replication_slots or drop unused slots",
			m.src.Name, free, maxSlots, usedSlots, need)
	}
	if free := maxSenders - usedSenders; free < need {
		return fmt.Errorf("node %s has %d free WAL senders (max_wal_senders=%d, %d used); the move needs %d: raise max_wal_senders", m.src.Name, free, maxSenders, usedSenders, need)
	}
	if maxWorkers-usedWorkers < 1 {
		return fmt.Errorf("node %s has no free logical replication worker (max_logical_replication_workers=%d, all used): raise it or wait for other subscriptions", m.dst.Name, maxWorkers)
	}
	return nil
}

// otherSource reports whether a copy mark's source names a known node
// other than this move's source. A name it cannot place (a move started
// with DSNs, finished with node names) is given the benefit of the doubt.
func (m *move) otherSource(name string) bool {
	if name == "" || name == m.spec.From.Name || name == dsn.Name(m.spec.From.DSN) {
		return false
	}
	for _, n := range m.spec.Fleet.Nodes {
		if n.Name == name {
			return dsn.Name(n.DSN) != dsn.Name(m.spec.From.DSN)
		}
	}
	return false
}
