package state

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
)

// Kinds of leftovers.
const (
	LeftoverOldSchema    = "old-schema"   // a move source renamed at cutover
	LeftoverNewSchema    = "new-schema"   // a copy that was never activated
	LeftoverPublication  = "publication"  // on a move source
	LeftoverSlot         = "slot"         // logical replication slot on a move source
	LeftoverSubscription = "subscription" // on a move destination
	// LeftoverCopy is a shard schema marked as the unfinished copy of a
	// move (its name is the shard's own).
	LeftoverCopy = "copy"
)

// Tools whose naming a leftover follows.
const (
	ToolPGMS            = "pgms"
	ToolPGMicrosharding = "pg-microsharding"
)

// Leftover is an object a move made or left behind, recognised by its name
// alone (both pgms's and pg-microsharding's conventions). Objects whose names
// are not recognised are never reported, so cleanup never touches them.
type Leftover struct {
	Kind   string
	Name   string
	Schema string // the shard schema it belongs to, e.g. sh0001
	Shard  int
	// Tool is the tool whose convention the name follows. Renamed sources
	// with a yyyymmddhhmmss suffix and "new" copies are named alike by
	// both tools and are reported as pgms's.
	Tool string
	// Renamed is when an old-schema was renamed, read from its name; zero
	// when the name does not say.
	Renamed time.Time
	// Active: for a schema, it is in the active list (cleanup then keeps
	// it); for a slot, a walsender uses it; for a subscription, it is
	// enabled.
	Active bool
	// RetainedBytes is, for a slot, the WAL it keeps from being recycled:
	// the current WAL position minus its restart_lsn.
	RetainedBytes int64
	// Bytes is, for a schema, the total relation size of its tables.
	Bytes int64
	// WalsenderPID and WalsenderClient describe the walsender holding an
	// active slot; the client is the application_name, which is the
	// subscription's name when a subscription streams from the slot.
	WalsenderPID    int
	WalsenderClient string
	// Slot is, for a subscription, the slot it streams from; empty when it
	// was detached (slot_name = NONE).
	Slot string
}

// String names the leftover for people: "slot pgms_move_sh0001".
func (l Leftover) String() string { return kindNoun(l.Kind) + " " + l.Name }

func kindNoun(kind string) string {
	switch kind {
	case LeftoverOldSchema, LeftoverNewSchema, LeftoverCopy:
		return "schema"
	}
	return kind
}

// kindOrder is the order cleanup drops leftovers in: a subscription first
// (it holds its slot), then the slot, then the publication; schemas last.
var kindOrder = map[string]int{
	LeftoverSubscription: 0,
	LeftoverSlot:         1,
	LeftoverPublication:  2,
	LeftoverCopy:         3,
	LeftoverNewSchema:    4,
	LeftoverOldSchema:    5,
}

// KindOrder is the position of kind in the order cleanup drops leftovers.
func KindOrder(kind string) int { return kindOrder[kind] }

func sortLeftovers(ls []Leftover) {
	sort.Slice(ls, func(i, j int) bool {
		a, b := ls[i], ls[j]
		if a.Shard != b.Shard {
			return a.Shard < b.Shard
		}
		if kindOrder[a.Kind] != kindOrder[b.Kind] {
			return kindOrder[a.Kind] < kindOrder[b.Kind]
		}
		return a.Name < b.Name
	})
}

// ParseLeftover recognises name as a leftover of kind under naming, with
// the fields its name determines. The facts a node reports (sizes, flags)
// are left zero.
func ParseLeftover(kind, name string, naming sql.Naming) (Leftover, bool) {
	switch kind {
	case LeftoverOldSchema, LeftoverNewSchema:
		isShard := func(s string) bool { _, ok := shardNumber(naming, s); return ok }
		l, ok := schemaLeftover(name, isShard, naming)
		return l, ok && l.Kind == kind
	case LeftoverPublication, LeftoverSlot, LeftoverSubscription:
		return artifactLeftover(kind, name, naming)
	case LeftoverCopy:
		shard, ok := shardNumber(naming, name)
		return Leftover{Kind: LeftoverCopy, Name: name, Schema: name, Shard: shard, Tool: ToolPGMS}, ok
	}
	return Leftover{}, false
}

func schemaLeftover(name string, isShard func(string) bool, naming sql.Naming) (Leftover, bool) {
	p, ok := names.ParseLeftoverSchema(name, isShard)
	if !ok {
		return Leftover{}, false
	}
	shard, _ := shardNumber(naming, p.Shard)
	l := Leftover{Kind: LeftoverOldSchema, Name: name, Schema: p.Shard, Shard: shard, Renamed: p.Renamed, Tool: ToolPGMS}
	if p.Kind == "new" {
		l.Kind = LeftoverNewSchema
	} else if name != names.OldSchema(p.Shard, p.Renamed) {
		// old_<unix time>, a bare "old" and other digit counts are only
		// ever written by pg-microsharding.
		l.Tool = ToolPGMicrosharding
	}
	return l, true
}

// artifactLeftover recognises the exact name either tool gives a
// publication, slot or subscription of a move of a shard schema.
func artifactLeftover(kind, name string, naming sql.Naming) (Leftover, bool) {
	schema, ok := names.ParseMoveArtifact(name)
	if !ok {
		return Leftover{}, false
	}
	if kind == LeftoverSlot {
		// pgms's slots carry the source database: pgms_move_<schema>_<oid>.
		if base, db, split := names.SplitMoveSlot(schema); split && name == names.MoveSlot(base, db) {
			if shard, ok := shardNumber(naming, base); ok {
				return Leftover{Kind: kind, Name: name, Schema: base, Shard: shard, Tool: ToolPGMS}, true
			}
		}
	}
	shard, ok := shardNumber(naming, schema)
	if !ok {
		return Leftover{}, false
	}
	ours, theirs := artifactNames(kind, schema)
	l := Leftover{Kind: kind, Name: name, Schema: schema, Shard: shard}
	switch name {
	case ours:
		l.Tool = ToolPGMS
	case theirs:
		l.Tool = ToolPGMicrosharding
	default:
		return Leftover{}, false
	}
	return l, true
}

// artifactNames returns the names pgms and pg-microsharding give a
// replication object of kind for a move of schema.
func artifactNames(kind, schema string) (pgms, reference string) {
	switch kind {
	case LeftoverPublication:
		return names.MovePublication(schema), names.ReferencePublication(schema)
	case LeftoverSlot:
		return names.LegacyMoveSlot(schema), names.ReferenceSubscription(schema)
	case LeftoverSubscription:
		return names.MoveSubscription(schema), names.ReferenceSubscription(schema)
	}
	return "", ""
}

// Sibling returns the name of the object of kind that belongs to the same
// move as l (same tool, same shard). For a pgms slot it is the legacy name
// (see SameMove for a comparison that also knows the database's).
func (l Leftover) Sibling(kind string) string {
	pgms, reference := artifactNames(kind, l.Schema)
	if l.Tool == ToolPGMicrosharding {
		return reference
	}
	return pgms
}

// SubscriptionName is, for a move's slot, the name of the subscription
// that streams from it: its walsender carries that name.
func (l Leftover) SubscriptionName() string { return l.Sibling(LeftoverSubscription) }

// SameMove reports whether two leftovers belong to moves of the same shard
// by the same tool.
func (l Leftover) SameMove(o Leftover) bool { return l.Tool == o.Tool && l.Schema == o.Schema }

// CleanupPolicy says which leftovers cleanup may drop.
type CleanupPolicy struct {
	// Now is the time retention is measured against; time.Now() when zero.
	Now time.Time
	// RetainOld keeps renamed move sources this long after their rename.
	RetainOld time.Duration
	// TerminateOrphanWalsenders lets cleanup end a walsender that holds an
	// orphaned slot and is not a subscription's.
	TerminateOrphanWalsenders bool
}

// PastRetention reports whether an old-schema was renamed at least retain
// before now. A name without a timestamp counts as past retention:
// pg-microsharding's cleanup drops such schemas unconditionally.
func (l Leftover) PastRetention(now time.Time, retain time.Duration) bool {
	return l.Renamed.IsZero() || !now.Before(l.Renamed.Add(retain))
}

// Verdict is cleanup's decision about one leftover.
type Verdict struct {
	Node     string // NodeState.Name
	Leftover Leftover
	Drop     bool
	// Terminate says the slot is held by a walsender that must be ended
	// before the drop (only with TerminateOrphanWalsenders).
	Terminate bool
	// Reason explains the decision in one line.
	Reason string
}

// Triage decides, for every leftover of every readable node, whether
// cleanup drops it, looking at the whole cluster: a slot is orphaned only
// when no subscription on any node streams from it, and while a node
// cannot be read, replication objects it might use are kept. Verdicts come
// per node (in node order) in the order cleanup drops them.
func (c *Cluster) Triage(p CleanupPolicy) []Verdict {
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	var unreadable []string
	for _, n := range c.Nodes {
		if n.Err != nil {
			unreadable = append(unreadable, n.Name)
		}
	}
	partial := ""
	if len(unreadable) > 0 {
		partial = fmt.Sprintf("node %s could not be read and may use it", strings.Join(unreadable, ", "))
	}
	// A shard another run holds a claim on is that run's business: its
	// leftovers are the objects of a move in progress.
	busy := map[int]string{}
	homes := map[int][]string{}
	// A rollback window's stream back (the old home's subscription, the new
	// home's slot and publication) lives as long as the window: closing it
	// is pgms apply's or pgms rollback --close's, which also unfence and
	// rename the old home's copy.
	windows := map[int]string{}
	for _, n := range c.readable() {
		for _, cl := range n.Claims {
			if cl.Live {
				busy[cl.Shard] = fmt.Sprintf("a running %s holds shard %d on node %s", cl, cl.Shard, n.Name)
			}
		}
		for _, s := range n.Shards {
			if !s.Copy {
				homes[s.Shard] = append(homes[s.Shard], n.Name)
			}
			if w := s.Window; w != nil && !s.Active {
				windows[s.Shard] = fmt.Sprintf("the stream back of shard %d's rollback window (from %s to %s, until %s); pgms apply closes it once it has ended, pgms rollback --shard=%d --close at once",
					s.Shard, w.To, n.Name, utcMinute(w.Until), s.Shard)
			}
		}
	}
	streamBack := func(l Leftover) string {
		switch l.Kind {
		case LeftoverSubscription, LeftoverSlot, LeftoverPublication:
			return windows[l.Shard]
		}
		return ""
	}

	verdicts := map[*NodeState][]Verdict{}
	// Subscriptions first: whether a slot or publication is orphaned
	// depends on the subscriptions that remain.
	dropSub := map[string]bool{}      // subscriptions dropped, by name
	keptSub := map[string]bool{}      // subscriptions kept, by name
	keptSubs := map[string][]string{} // slot name -> the kept subscriptions using it, "name on node n"
	for _, n := range c.readable() {
		for _, l := range n.Leftovers {
			if l.Kind != LeftoverSubscription {
				continue
			}
			v := Verdict{Node: n.Name, Leftover: l}
			switch {
			case n.Standby:
				v.Reason = "the node is a standby"
			case busy[l.Shard] != "":
				v.Reason = busy[l.Shard]
			case streamBack(l) != "":
				v.Reason = streamBack(l)
			default:
				shard := n.Shard(l.Shard)
				v.Drop, v.Reason = JudgeSubscription(l, shard != nil, shard != nil && shard.Active, partial == "")
			}
			if v.Drop {
				dropSub[l.Name] = true
			} else {
				keptSub[l.Name] = true
				keptSubs[l.Slot] = append(keptSubs[l.Slot], l.Name+" on node "+n.Name)
			}
			verdicts[n] = append(verdicts[n], v)
		}
	}

	for _, n := range c.readable() {
		// Leftovers are sorted by shard, then slot before publication: a
		// publication's verdict can look at its move's slot's.
		keptSlots := map[string]string{} // tool + schema of kept slots → name
		slotKey := func(l Leftover) string { return l.Tool + "\x00" + l.Schema }
		for _, l := range n.Leftovers {
			v := Verdict{Node: n.Name, Leftover: l}
			reason := busy[l.Shard]
			if reason == "" {
				reason = streamBack(l)
			}
			if l.Kind != LeftoverSubscription && reason != "" {
				v.Reason = reason
				if l.Kind == LeftoverSlot {
					keptSlots[slotKey(l)] = l.Name
				}
				verdicts[n] = append(verdicts[n], v)
				continue
			}
			switch l.Kind {
			case LeftoverSubscription:
				continue
			case LeftoverCopy:
				var elsewhere []string
				for _, h := range homes[l.Shard] {
					if h != n.Name {
						elsewhere = append(elsewhere, h)
					}
				}
				switch {
				case len(elsewhere) > 0 && partial == "":
					v.Drop, v.Reason = true, fmt.Sprintf("partial copy of an interrupted move (no run holds shard %d; node %s still has it)", l.Shard, strings.Join(elsewhere, ", "))
				case len(elsewhere) > 0:
					v.Reason = partial
				default:
					v.Reason = fmt.Sprintf("no other node has shard %d: this copy may be the destination of a move whose cutover committed, the shard's only home; finish it with pgms apply, or the same pgms move again", l.Shard)
				}
			case LeftoverOldSchema:
				switch {
				case l.Active:
					v.Reason = "it is in the active list"
				case l.Renamed.IsZero():
					v.Drop, v.Reason = true, "renamed source of a move; its name carries no time"
				// Times are absolute: a reason that said "renamed 38s ago"
				// would change a plan, and its pull-request comment, from
				// one minute to the next with nothing changed.
				case !l.PastRetention(now, p.RetainOld):
					v.Reason = fmt.Sprintf("renamed %s; kept until %s (retention %s)",
						utcMinute(l.Renamed), utcMinute(l.Renamed.Add(p.RetainOld)), roundAge(p.RetainOld))
				default:
					v.Drop, v.Reason = true, fmt.Sprintf("renamed source of a move, renamed %s; its retention of %s ended %s",
						utcMinute(l.Renamed), roundAge(p.RetainOld), utcMinute(l.Renamed.Add(p.RetainOld)))
				}
			case LeftoverNewSchema:
				if l.Active {
					v.Reason = "it is in the active list"
				} else {
					v.Drop, v.Reason = true, "copy of a move that was never activated"
				}
			case LeftoverSlot:
				switch users := keptSubs[l.Name]; {
				case len(users) > 0:
					v.Reason = fmt.Sprintf("subscription %s streams from it", strings.Join(users, ", "))
				case partial != "":
					v.Reason = partial
				default:
					v.Drop, v.Terminate, v.Reason = JudgeOrphanSlot(l, dropSub[l.SubscriptionName()], p.TerminateOrphanWalsenders)
				}
				if !v.Drop {
					keptSlots[slotKey(l)] = l.Name
				}
			case LeftoverPublication:
				slot, sub := l.Sibling(LeftoverSlot), l.Sibling(LeftoverSubscription)
				switch {
				case keptSlots[slotKey(l)] != "":
					v.Reason = fmt.Sprintf("slot %s of the same move is kept", keptSlots[slotKey(l)])
				case keptSub[sub] || len(keptSubs[slot]) > 0:
					v.Reason = fmt.Sprintf("subscription %s of the same move is kept", sub)
				case partial != "":
					v.Reason = partial
				default:
					v.Drop, v.Reason = true, "orphaned: no slot or subscription of its move remains"
				}
			}
			if n.Standby && v.Drop {
				v.Drop, v.Terminate, v.Reason = false, false, "the node is a standby"
			}
			verdicts[n] = append(verdicts[n], v)
		}
	}

	var out []Verdict
	for _, n := range c.Nodes {
		vs := verdicts[n]
		sort.SliceStable(vs, func(i, j int) bool {
			return kindOrder[vs[i].Leftover.Kind] < kindOrder[vs[j].Leftover.Kind]
		})
		out = append(out, vs...)
	}
	return out
}

func (c *Cluster) readable() []*NodeState {
	var out []*NodeState
	for _, n := range c.Nodes {
		if n.Err == nil {
			out = append(out, n)
		}
	}
	return out
}

// JudgeSubscription decides whether a move's subscription is orphaned from
// what its own node shows: a running move keeps its subscription enabled,
// attached to its slot, and streaming into a shard schema that exists and
// is inactive there. Anything else is what an interrupted or finished move
// left behind.
//
// noRun says that no pgms run holds the shard (its claims prove it): a
// subscription with pgms's name is then left by a move that is over.
func JudgeSubscription(l Leftover, schemaExists, schemaActive, noRun bool) (drop bool, reason string) {
	switch {
	case !l.Active:
		return true, "disabled: no move runs with a disabled subscription"
	case l.Slot == "":
		return true, "detached from its slot (slot_name = NONE)"
	case !schemaExists:
		return true, fmt.Sprintf("shard schema %s does not exist on this node", l.Schema)
	case schemaActive:
		return true, fmt.Sprintf("%s is active on this node: its move has finished", l.Schema)
	case noRun && l.Tool == ToolPGMS:
		return true, "left by a move that no run holds any more (no claim on the shard)"
	}
	return false, fmt.Sprintf("enabled and streaming into inactive %s: a move may be in progress", l.Schema)
}

// JudgeOrphanSlot decides about a slot that no remaining subscription uses,
// by what holds it now. A subscription's walsender (its application_name is
// the subscription's name) is left to end by itself when subDropped says
// cleanup drops that subscription, and is never ended otherwise: the
// subscription then lives on a node not given. A walsender of a running
// pgms is a move copying data and is never ended either. Any other
// walsender is ended only when terminate allows it.
func JudgeOrphanSlot(l Leftover, subDropped, terminate bool) (drop, end bool, reason string) {
	sub := l.SubscriptionName()
	switch {
	case !l.Active:
		return true, false, "orphaned: no subscription uses it"
	case l.WalsenderClient == sub && subDropped:
		return true, false, "orphaned once its subscription is dropped"
	case l.WalsenderClient == sub:
		return false, false, fmt.Sprintf("subscription %s streams from it from a node not given here", sub)
	case IsPGMSClient(l.WalsenderClient):
		return false, false, fmt.Sprintf("held by a running pgms (walsender pid %d): a move may be copying data", l.WalsenderPID)
	case terminate:
		return true, true, fmt.Sprintf("orphaned; its walsender (pid %d, application %q) is ended first", l.WalsenderPID, l.WalsenderClient)
	}
	return false, false, fmt.Sprintf("orphaned but held by walsender pid %d (application %q); pass --terminate-orphan-walsenders to end it",
		l.WalsenderPID, l.WalsenderClient)
}

// IsPGMSClient reports whether an application_name is pgms's own: the
// sessions of a pgms process end with it, so a walsender with that name
// belongs to a pgms that is still running.
func IsPGMSClient(application string) bool {
	return application == pgutil.ApplicationName || strings.HasPrefix(application, pgutil.ApplicationName+" ") ||
		strings.HasPrefix(application, pgutil.ApplicationName+"/") || strings.HasPrefix(application, pgutil.ApplicationName+"-")
}

// utcMinute prints a time as the reasons of leftovers write it:
// "2026-12-01 08:00 UTC".
func utcMinute(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") }

// roundAge prints a duration the way people say ages: 3d4h, 36h, 2h5m, 40s.
func roundAge(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		days := d / (24 * time.Hour)
		if h := (d - days*24*time.Hour) / time.Hour; h != 0 {
			return fmt.Sprintf("%dd%dh", days, h)
		}
		return fmt.Sprintf("%dd", days)
	case d >= time.Hour:
		d = d.Round(time.Minute)
		if m := (d % time.Hour) / time.Minute; m != 0 {
			return fmt.Sprintf("%dh%dm", d/time.Hour, m)
		}
		return fmt.Sprintf("%dh", d/time.Hour)
	default:
		return d.Round(time.Second).String()
	}
}
