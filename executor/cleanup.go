package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// CleanupSpec says what Cleanup drops on one node.
type CleanupSpec struct {
	// Leftovers are the objects to drop, as state.Cluster.Triage chose
	// them. Each is checked again on the node before it is dropped: its
	// name must still be recognised and the node-local conditions that made
	// it droppable must still hold, so a stale list drops nothing it
	// should not.
	Leftovers []state.Leftover
	// RetainOld keeps renamed move sources this long after their rename.
	RetainOld time.Duration
	// Now is the time retention is measured against; time.Now() when zero.
	Now time.Time
	// TerminateOrphanWalsenders lets Cleanup end a walsender that holds a
	// slot to drop, unless it is a subscription's or a running pgms's.
	TerminateOrphanWalsenders bool
	// SlotWait bounds how long a slot to drop may stay in use (by the
	// walsender of a subscription just dropped, or one being ended);
	// 10s when zero.
	SlotWait time.Duration
	// LibrarySchema is the library's schema; sql.DefaultSchema when empty.
	LibrarySchema string
	// Naming is the shard naming leftovers are recognised by;
	// sql.DefaultNaming when zero.
	Naming sql.Naming
	// Report, when set, is called after each leftover, as it happens.
	Report func(Outcome)
	// Who describes the run in the claims cleanup takes.
	Who state.Invocation
}

// Outcome is what Cleanup did with one leftover.
type Outcome struct {
	Node     string // the pgutil.Node's Name
	Leftover state.Leftover
	Dropped  bool
	// Reason says why a leftover was not dropped ("already gone", "still
	// in use by …"); empty when dropped or failed.
	Reason string
	// RetainedBytes is, for a dropped slot, the WAL it retained just
	// before the drop: what the drop lets the server recycle.
	RetainedBytes int64
	Took          time.Duration
	Err           error
}

// CleanupResult lists the outcomes in the order Cleanup went through them.
type CleanupResult struct {
	Outcomes []Outcome
}

// Cleanup drops leftovers of moves on node: subscriptions (disabled and
// detached from their slot first, so that no connection to a publisher is
// needed), then slots, publications, never-activated copies and renamed
// sources past retention (DROP SCHEMA … CASCADE, one transaction per
// schema). It goes on after a failure and returns every failure joined.
func Cleanup(ctx context.Context, node *pgutil.Node, spec CleanupSpec) (CleanupResult, error) {
	c := cleaner{node: node, spec: spec, lib: libraryOf(spec.LibrarySchema)}
	if c.spec.Naming == (sql.Naming{}) {
		c.spec.Naming = sql.DefaultNaming
	}
	if c.spec.Now.IsZero() {
		c.spec.Now = time.Now()
	}
	if c.spec.SlotWait <= 0 {
		c.spec.SlotWait = 10 * time.Second
	}
	leftovers := append([]state.Leftover(nil), spec.Leftovers...)
	sort.SliceStable(leftovers, func(i, j int) bool {
		return state.KindOrder(leftovers[i].Kind) < state.KindOrder(leftovers[j].Kind)
	})

	var res CleanupResult
	var errs []error
	version, err := sql.InstalledVersion(ctx, node.Conn, c.lib)
	if err != nil {
		return res, fmt.Errorf("cleanup on node %s: %w", node.Name, err)
	}
	c.library = version >= 0
	// Every object is dropped under the claim of its shard on this node:
	// a shard another run works on is left alone, and no run can start on
	// it while its leftovers go.
	held := map[int]string{}
	if c.library {
		claim, busy, err := claimFree(ctx, node, c.lib, c.spec.Naming, leftovers, c.spec.Who)
		if err != nil {
			return res, fmt.Errorf("cleanup on node %s: %w", node.Name, err)
		}
		held = busy
		if claim != nil {
			defer claim.Release(ctx)
			c.node = claim.Node()
		}
	}
	for _, l := range leftovers {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		start := time.Now()
		var o Outcome
		if why, ok := held[l.Shard]; ok {
			o = Outcome{Reason: why}
		} else {
			o = c.one(ctx, l)
		}
		o.Node, o.Leftover, o.Took = node.Name, l, time.Since(start)
		if o.Err != nil {
			o.Err = pgutil.Wrap(o.Err, "node %s: drop %s", node.Name, l)
			errs = append(errs, o.Err)
		}
		res.Outcomes = append(res.Outcomes, o)
		if spec.Report != nil {
			spec.Report(o)
		}
	}
	return res, errors.Join(errs...)
}

// claimFree claims, on node, the shards of the leftovers that no other run
// holds, and says why the others are left alone.
func claimFree(ctx context.Context, node *pgutil.Node, lib string, naming sql.Naming, leftovers []state.Leftover, who state.Invocation) (*state.Claim, map[int]string, error) {
	seen := map[int]bool{}
	var shards []int
	for _, l := range leftovers {
		if !seen[l.Shard] {
			seen[l.Shard] = true
			shards = append(shards, l.Shard)
		}
	}
	sort.Ints(shards)
	if who.Command == "" {
		who = state.ThisProcess("cleanup", "")
	}
	held := map[int]string{}
	for len(shards) > 0 {
		schemas := make([]string, len(shards))
		for i, n := range shards {
			schemas[i] = naming.SchemaName(n)
		}
		c, err := state.ClaimShards(ctx, state.ClaimSpec{DSN: node.DSN, Node: node.Name, LibrarySchema: lib,
			Shards: shards, Schemas: schemas, Purpose: "cleanup on " + node.Name, Who: who})
		var busy *state.ClaimHeldError
		switch {
		case err == nil:
			return c, held, nil
		case errors.As(err, &busy):
			who := "another run"
			if busy.Holder != nil {
				who = "a running " + busy.Holder.String()
			}
			held[busy.Shard] = fmt.Sprintf("%s holds shard %d on this node", who, busy.Shard)
			shards = slices.DeleteFunc(shards, func(n int) bool { return n == busy.Shard })
		default:
			return nil, nil, err
		}
	}
	return nil, held, nil
}

// CleanupAll drops what the verdicts drop, on nodes keyed by the verdicts'
// node names: first every node's subscriptions, because a slot is free only
// once its subscription is gone and the two live on different nodes; then
// the rest, node by node. spec.Leftovers is ignored. It goes on after a
// failure and returns every failure joined.
func CleanupAll(ctx context.Context, nodes map[string]*pgutil.Node, verdicts []state.Verdict, spec CleanupSpec) ([]Outcome, error) {
	subs, rest := map[string][]state.Leftover{}, map[string][]state.Leftover{}
	var order []string
	seen := map[string]bool{}
	for _, v := range verdicts {
		if !v.Drop {
			continue
		}
		if !seen[v.Node] {
			seen[v.Node] = true
			order = append(order, v.Node)
		}
		if v.Leftover.Kind == state.LeftoverSubscription {
			subs[v.Node] = append(subs[v.Node], v.Leftover)
		} else {
			rest[v.Node] = append(rest[v.Node], v.Leftover)
		}
	}
	var outcomes []Outcome
	var errs []error
	for _, phase := range []map[string][]state.Leftover{subs, rest} {
		for _, name := range order {
			if len(phase[name]) == 0 {
				continue
			}
			node := nodes[name]
			if node == nil {
				errs = append(errs, fmt.Errorf("cleanup: no connection to node %s", name))
				continue
			}
			s := spec
			s.Leftovers = phase[name]
			res, err := Cleanup(ctx, node, s)
			outcomes = append(outcomes, res.Outcomes...)
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return outcomes, errors.Join(errs...)
}

type cleaner struct {
	node    *pgutil.Node
	spec    CleanupSpec
	lib     string
	library bool // the library is installed: there is an active list
}

func (c *cleaner) one(ctx context.Context, l state.Leftover) Outcome {
	parsed, ok := state.ParseLeftover(l.Kind, l.Name, c.spec.Naming)
	if !ok {
		return Outcome{Reason: "its name is not one a move gives; never touched"}
	}
	switch l.Kind {
	case state.LeftoverOldSchema, state.LeftoverNewSchema:
		if l.Kind == state.LeftoverOldSchema && !parsed.PastRetention(c.spec.Now, c.spec.RetainOld) {
			return Outcome{Reason: fmt.Sprintf("renamed less than %s ago", c.spec.RetainOld)}
		}
		return c.dropSchema(ctx, l.Name)
	case state.LeftoverCopy:
		return c.dropCopy(ctx, l.Name)
	case state.LeftoverSubscription:
		return c.dropSubscription(ctx, parsed)
	case state.LeftoverSlot:
		return c.dropSlot(ctx, parsed)
	case state.LeftoverPublication:
		return c.dropPublication(ctx, parsed)
	}
	return Outcome{Reason: "unknown kind " + l.Kind}
}

// dropSchema drops a leftover schema in one transaction that checks first
// that it still exists and is not in the active list.
func (c *cleaner) dropSchema(ctx context.Context, name string) Outcome {
	var o Outcome
	err := pgx.BeginFunc(ctx, c.node.Conn, func(tx pgx.Tx) error {
		// A busy schema (someone still reads the old copy) is reported, not
		// waited for behind a queue of lock requests.
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '10s'"); err != nil {
			return err
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)", name).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			o.Reason = "already gone"
			return nil
		}
		if c.library {
			var active bool
			err := tx.QueryRow(ctx, "SELECT $1 = ANY("+pgutil.Quote(c.lib, "microsharding_active_shards_")+"())",
				pgx.QueryExecModeSimpleProtocol, name).Scan(&active)
			if err != nil {
				return err
			}
			if active {
				o.Reason = "it is in the active list"
				return nil
			}
		}
		if _, err := tx.Exec(ctx, "DROP SCHEMA "+pgutil.Quote(name)+" CASCADE"); err != nil {
			return err
		}
		o.Dropped = true
		return nil
	})
	if err != nil {
		return Outcome{Err: err}
	}
	return o
}

// dropCopy drops a partial copy of an interrupted move, checking on the
// node that it still carries the copy mark and is not active. The verdict
// that it has a home elsewhere came from the whole cluster; the claim this
// cleanup holds on the shard keeps any move from committing to it
// meanwhile.
func (c *cleaner) dropCopy(ctx context.Context, name string) Outcome {
	var comment *string
	err := c.node.Conn.QueryRow(ctx, "SELECT obj_description(oid, 'pg_namespace') FROM pg_catalog.pg_namespace WHERE nspname = $1", name).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return Outcome{Reason: "already gone"}
	}
	if err != nil {
		return Outcome{Err: err}
	}
	if comment == nil || !names.IsCopyMark(*comment) {
		return Outcome{Reason: "no longer marked as an unfinished copy"}
	}
	return c.dropSchema(ctx, name)
}

// dropSubscription disables a subscription, detaches it from its slot and
// drops it, after checking on the node that it is still orphaned. The slot
// is left to the slot step on its own node: dropping it through the
// subscription would connect with the credentials stored in it, to a
// publisher that may be gone.
func (c *cleaner) dropSubscription(ctx context.Context, l state.Leftover) Outcome {
	var slot *string
	err := c.node.Conn.QueryRow(ctx, `
		SELECT s.subenabled, s.subslotname::text
		FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_database d ON d.oid = s.subdbid
		WHERE d.datname = current_database() AND s.subname = $1`, l.Name).Scan(&l.Active, &slot)
	if errors.Is(err, pgx.ErrNoRows) {
		return Outcome{Reason: "already gone"}
	}
	if err != nil {
		return Outcome{Err: err}
	}
	if slot != nil {
		l.Slot = *slot
	}
	var exists, active bool
	err = c.node.Conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)", l.Schema).Scan(&exists)
	if err == nil && exists && c.library {
		err = c.node.Conn.QueryRow(ctx, "SELECT $1 = ANY("+pgutil.Quote(c.lib, "microsharding_active_shards_")+"())",
			pgx.QueryExecModeSimpleProtocol, l.Schema).Scan(&active)
	}
	if err != nil {
		return Outcome{Err: err}
	}
	// The shard's claim is held by this cleanup: no pgms run works on it.
	if drop, reason := state.JudgeSubscription(l, exists, active, true); !drop {
		return Outcome{Reason: reason}
	}
	id := pgutil.Quote(l.Name)
	if l.Active {
		if _, err := c.node.Conn.Exec(ctx, "ALTER SUBSCRIPTION "+id+" DISABLE"); err != nil {
			return Outcome{Err: err}
		}
	}
	if l.Slot != "" {
		if _, err := c.node.Conn.Exec(ctx, "ALTER SUBSCRIPTION "+id+" SET (slot_name = NONE)"); err != nil {
			return Outcome{Err: err}
		}
	}
	if _, err := c.node.Conn.Exec(ctx, "DROP SUBSCRIPTION IF EXISTS "+id); err != nil {
		return Outcome{Err: err}
	}
	return Outcome{Dropped: true}
}

// dropSlot drops a logical slot of this database once no walsender holds
// it. A subscription's walsender is waited for (its subscription was just
// dropped and it is on its way out); another walsender is ended, once, only
// when allowed, and never one of a running pgms.
func (c *cleaner) dropSlot(ctx context.Context, parsed state.Leftover) Outcome {
	terminated := false
	slots, err := dropReplicationSlots(ctx, c.node, "s.slot_name = $1 AND s.database = current_database()", []any{parsed.Name}, slotPolicy{
		wait: c.spec.SlotWait, poll: 100 * time.Millisecond,
		holder: func(s heldSlot, _ time.Duration) (string, bool) {
			// The parsed leftover knows the move's subscription, whose
			// walsender is waited for rather than ended.
			l := parsed
			l.Active, l.WalsenderPID, l.WalsenderClient = true, s.pid, s.client
			drop, end, reason := state.JudgeOrphanSlot(l, true, c.spec.TerminateOrphanWalsenders)
			if !drop {
				return reason, false
			}
			end, terminated = end && !terminated, terminated || end
			return "", end
		},
	})
	switch {
	case err != nil:
		return Outcome{Err: err}
	case len(slots) == 0:
		return Outcome{Reason: "already gone"}
	}
	s := slots[0]
	switch {
	case s.err != nil:
		return Outcome{Err: s.err}
	case s.dropped:
		return Outcome{Dropped: true, RetainedBytes: s.retained}
	case s.holder.pid != 0:
		return Outcome{Reason: fmt.Sprintf("still in use by walsender pid %d (application %q) after %s", s.holder.pid, s.holder.client, c.spec.SlotWait)}
	}
	return Outcome{Reason: s.kept}
}

// dropPublication drops a publication unless the slot of the same move is
// still on this node.
func (c *cleaner) dropPublication(ctx context.Context, l state.Leftover) Outcome {
	slot := l.Sibling(state.LeftoverSlot)
	var exists, slotExists bool
	// pgms's slots carry the database's oid after the legacy name.
	err := c.node.Conn.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1),
		       EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE database = current_database()
		         AND (slot_name = $2 OR ($3 AND slot_name = $2 || '_' || (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())::text)))`,
		l.Name, slot, l.Tool == state.ToolPGMS).Scan(&exists, &slotExists)
	switch {
	case err != nil:
		return Outcome{Err: err}
	case !exists:
		return Outcome{Reason: "already gone"}
	case slotExists:
		return Outcome{Reason: fmt.Sprintf("slot %s of the same move is still there", slot)}
	}
	if _, err := c.node.Conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgutil.Quote(l.Name)); err != nil {
		return Outcome{Err: err}
	}
	return Outcome{Dropped: true}
}
