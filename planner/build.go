package planner

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/state"
)

// Input is everything a plan depends on. The planner reads nothing else:
// the same Input always gives the same Plan.
type Input struct {
	Desired *config.Topology
	Live    *state.Cluster
	// Now decides which renamed move sources are past retention.
	Now time.Time
	// LibraryVersion is the version of the library this pgms installs.
	LibraryVersion int
}

// presence is one node's copy of a shard.
type presence struct {
	node  *state.NodeState
	shard *state.ShardState
}

// planBuilder accumulates a plan; each method handles one concern.
type planBuilder struct {
	in   Input
	plan *Plan

	// shards maps a shard number to the nodes holding its schema.
	shards map[int][]presence
	// artifacts maps a shard number to the leftovers that name it.
	artifacts map[int][]artifact
	// owned marks leftovers a planned move resumes with, so that cleanup
	// leaves them alone: node name + "\x00" + leftover name.
	owned map[string]bool
	// aborted marks leftovers of interrupted moves away from a shard's
	// place in the files: node name + "\x00" + leftover name.
	aborted map[string]bool

	allocs      []shardStep // one per shard, grouped into ranges later
	flips       []shardStep
	moves       []Step
	drops       []shardStep
	unmanaged   []shardStep
	movesBySrc  map[string]int
	keyProblems map[string][]string // node -> "shard n: tables"
}

type artifact struct {
	node *state.NodeState
	l    state.Leftover
}

// shardStep is a one-shard step before contiguous shards are merged.
type shardStep struct {
	kind   StepKind
	node   string
	shard  int
	active bool
	source string
	reason string
	bytes  int64
}

// Compute makes the plan that takes in.Live to in.Desired. It never fails:
// problems that stop planning are in Plan.Errors, and a plan with errors
// has no steps.
func Compute(in Input) *Plan {
	b := &planBuilder{
		in: in,
		plan: &Plan{
			FormatVersion:     FormatVersion,
			ConfigFingerprint: in.Desired.Fingerprint(),
			StateFingerprint:  in.Live.Fingerprint(),
			Files:             in.Desired.Files,
		},
		shards:      map[int][]presence{},
		artifacts:   map[int][]artifact{},
		owned:       map[string]bool{},
		aborted:     map[string]bool{},
		movesBySrc:  map[string]int{},
		keyProblems: map[string][]string{},
	}
	b.plan.ShardCount, b.plan.ActiveCount = in.Desired.Counts()
	for _, n := range in.Desired.Nodes {
		addr := ""
		if live := in.Live.Node(n.Name); live != nil {
			addr = live.Addr
		}
		b.plan.Nodes = append(b.plan.Nodes, NodeInfo{Name: n.Name, Addr: addr})
	}
	if !b.checkNodes() {
		b.finish()
		return b.plan
	}
	b.index()
	b.install()
	b.placeShards()
	b.checkMoves()
	b.cleanup()
	b.finish()
	return b.plan
}

func (b *planBuilder) errorf(node string, shard *int, source, summary, detail string, args ...any) {
	b.plan.Errors = append(b.plan.Errors, Problem{Summary: summary, Detail: fmt.Sprintf(detail, args...), Node: node, Shard: shard, Source: source})
}

func (b *planBuilder) warnf(node string, shard *int, summary, detail string, args ...any) {
	b.plan.Warnings = append(b.plan.Warnings, Problem{Summary: summary, Detail: fmt.Sprintf(detail, args...), Node: node, Shard: shard})
}

// checkNodes refuses to plan when a node cannot be read, is a standby or
// runs a newer library than this pgms.
func (b *planBuilder) checkNodes() bool {
	for _, n := range b.in.Desired.Nodes {
		live := b.in.Live.Node(n.Name)
		src := config.Pos(n.DeclRange)
		switch {
		case live == nil:
			b.errorf(n.Name, nil, src, fmt.Sprintf("node %s was not read", n.Name), "The live state holds no entry for this node.")
		case live.Err != nil:
			b.errorf(n.Name, nil, src, fmt.Sprintf("cannot read node %s", n.Name), "%v. A plan needs every node of the topology; fix the connection or remove the node from the files.", live.Err)
		case live.Standby:
			b.errorf(n.Name, nil, src, fmt.Sprintf("node %s is a standby", n.Name), "%s is in recovery. Nodes must be primaries: point the node's dsn at the primary.", live.Addr)
		case live.Library.Installed && live.Library.Version > b.in.LibraryVersion:
			b.errorf(n.Name, nil, src, fmt.Sprintf("node %s runs a newer library", n.Name), "The microsharding library on %s is version %d; this pgms knows version %d. Use a newer pgms.", live.Addr, live.Library.Version, b.in.LibraryVersion)
		}
	}
	return len(b.plan.Errors) == 0
}

func (b *planBuilder) index() {
	for _, n := range b.in.Live.Nodes {
		for i := range n.Shards {
			s := &n.Shards[i]
			b.shards[s.Shard] = append(b.shards[s.Shard], presence{node: n, shard: s})
		}
		for _, l := range n.Leftovers {
			b.artifacts[l.Shard] = append(b.artifacts[l.Shard], artifact{node: n, l: l})
		}
	}
}

func (b *planBuilder) install() {
	for _, n := range b.in.Desired.Nodes {
		live := b.in.Live.Node(n.Name)
		switch {
		case !live.Library.Installed:
			b.plan.Steps = append(b.plan.Steps, Step{Kind: StepInstall, Node: n.Name, LibraryTo: b.in.LibraryVersion, LibraryFresh: true,
				Reason: fmt.Sprintf("%s has no microsharding library in schema %s", n.Name, b.in.Desired.Cluster.LibrarySchema)})
		case live.Library.Version < b.in.LibraryVersion:
			from := fmt.Sprintf("version %d", live.Library.Version)
			if live.Library.Version == 0 {
				from = "pg-microsharding's library"
			}
			b.plan.Steps = append(b.plan.Steps, Step{Kind: StepInstall, Node: n.Name, LibraryFrom: live.Library.Version, LibraryTo: b.in.LibraryVersion,
				Reason: fmt.Sprintf("%s has %s; this pgms uses version %d (the active list is kept)", n.Name, from, b.in.LibraryVersion)})
		}
	}
}

// placeShards compares every shard's place in the files with where it
// lives.
func (b *planBuilder) placeShards() {
	desired := b.in.Desired.Placement()
	removed := map[int]config.ShardRange{}
	for _, r := range b.in.Desired.Removed {
		for n := r.From; n <= r.To; n++ {
			removed[n] = r
		}
	}
	all := make([]int, 0, len(desired)+len(b.shards))
	for n := range desired {
		all = append(all, n)
	}
	for n := range b.shards {
		if _, ok := desired[n]; !ok {
			all = append(all, n)
		}
	}
	sort.Ints(all)
	for _, n := range all {
		b.placeShard(n, desired, removed)
	}
}

func (b *planBuilder) placeShard(n int, desired map[int]config.ShardRange, removed map[int]config.ShardRange) {
	live := b.shards[n]
	shard := n
	var activeOn []string
	for _, p := range live {
		if p.shard.Active {
			activeOn = append(activeOn, p.node.Name)
		}
	}
	if len(activeOn) > 1 {
		b.errorf("", &shard, "", fmt.Sprintf("shard %d is active on %d nodes: %s", n, len(activeOn), strings.Join(activeOn, ", ")),
			"A shard must be active on at most one node, and pgms will not guess which copy is current. Deactivate the stale copy (SELECT %s.microsharding_ensure_inactive(%d) on its node) and plan again.",
			b.in.Desired.Cluster.LibrarySchema, n)
		return
	}
	if r, ok := removed[n]; ok {
		for _, p := range live {
			b.drops = append(b.drops, shardStep{kind: StepDrop, node: p.node.Name, shard: n, source: config.Pos(r.DeclRange), bytes: p.shard.Bytes,
				reason: fmt.Sprintf("listed in a removed block at %s", config.Pos(r.DeclRange))})
		}
		return
	}
	r, ok := desired[n]
	if !ok {
		for _, p := range live {
			b.unmanaged = append(b.unmanaged, shardStep{node: p.node.Name, shard: n, active: p.shard.Active})
		}
		return
	}
	src := config.Pos(r.DeclRange)
	var here *presence
	var others []presence
	for i, p := range live {
		if p.node.Name == r.Node {
			here = &live[i]
		} else {
			others = append(others, p)
		}
	}

	// An interrupted move towards this node is finished, whatever else is
	// true: its subscription is here and its source may already be renamed.
	if from, ok := b.interruptedMoveTo(n, r.Node); ok {
		b.addMove(n, from, r, true, fmt.Sprintf("an interrupted move of shard %d from %s to %s left its replication objects; it resumes", n, from, r.Node))
		return
	}

	switch {
	case here == nil && len(others) == 0:
		state := "active"
		if !r.Active {
			state = "inactive"
		}
		b.allocs = append(b.allocs, shardStep{kind: StepAllocate, node: r.Node, shard: n, active: r.Active, source: src,
			reason: fmt.Sprintf("placed on %s (%s) at %s and present on no node", r.Node, state, src)})
	case here != nil && len(others) == 0:
		if here.shard.Active != r.Active {
			kind, want, is := StepActivate, "active", "inactive"
			if !r.Active {
				kind, want, is = StepDeactivate, "inactive", "active"
			}
			b.flips = append(b.flips, shardStep{kind: kind, node: r.Node, shard: n, active: r.Active, source: src,
				reason: fmt.Sprintf("%s at %s but %s on %s", want, src, is, r.Node)})
		}
	case here == nil && len(others) == 1:
		o := others[0]
		state := "inactive"
		if o.shard.Active {
			state = "active"
		}
		b.addMove(n, o.node.Name, r, false, fmt.Sprintf("placed on %s at %s but lives on %s (%s)", r.Node, src, o.node.Name, state))
	default:
		// Copies on several nodes: only an interrupted move away from the
		// desired node explains that, and undoing it is cleanup's job.
		if b.interruptedMoveFrom(n, r.Node, others) {
			return
		}
		var where []string
		for _, p := range live {
			where = append(where, p.node.Name)
		}
		b.errorf("", &shard, src, fmt.Sprintf("shard %d exists on %s", n, strings.Join(where, " and ")),
			"Its schema %s is on several nodes and no interrupted move explains it, so pgms cannot tell which copy holds the data. Check the copies, drop the stale one, and plan again.",
			b.in.Desired.SchemaName(n))
	}
}

// interruptedMoveTo finds an interrupted move of shard n towards node dst:
// its subscription on dst. It returns the move's source: the node with the
// slot, publication or renamed source of the shard.
func (b *planBuilder) interruptedMoveTo(n int, dst string) (string, bool) {
	var sub *artifact
	for i, a := range b.artifacts[n] {
		if a.l.Kind == state.LeftoverSubscription && a.l.Tool == state.ToolPGMS && a.node.Name == dst {
			sub = &b.artifacts[n][i]
		}
	}
	if sub == nil {
		return "", false
	}
	for _, a := range b.artifacts[n] {
		if a.node.Name != dst && (a.l.Kind == state.LeftoverSlot || a.l.Kind == state.LeftoverPublication) && a.l.Tool == state.ToolPGMS {
			return a.node.Name, true
		}
	}
	for _, a := range b.artifacts[n] {
		if a.node.Name != dst && a.l.Kind == state.LeftoverOldSchema {
			return a.node.Name, true
		}
	}
	for _, p := range b.shards[n] {
		if p.node.Name != dst {
			return p.node.Name, true
		}
	}
	return "", false
}

// interruptedMoveFrom reports whether the extra copies of shard n are the
// half-done destinations of moves away from src that the files no longer
// ask for; cleanup then drops them together with their replication objects.
func (b *planBuilder) interruptedMoveFrom(n int, src string, others []presence) bool {
	for _, o := range others {
		found := false
		for _, a := range b.artifacts[n] {
			if a.node.Name == o.node.Name && a.l.Kind == state.LeftoverSubscription && a.l.Tool == state.ToolPGMS {
				found = true
			}
		}
		if !found || o.shard.Active {
			return false
		}
	}
	for _, o := range others {
		b.plan.Steps = append(b.plan.Steps, Step{Kind: StepCleanup, Node: o.node.Name, Object: o.shard.Schema, ObjectKind: "schema",
			Bytes: o.shard.Bytes, Code: CodeDropCopy, Shards: &Range{n, n}, From: src,
			Reason: fmt.Sprintf("partial copy of an interrupted move of shard %d from %s, which the files no longer ask for", n, src)})
	}
	for _, a := range b.artifacts[n] {
		if a.l.Kind == state.LeftoverSubscription || a.l.Kind == state.LeftoverSlot || a.l.Kind == state.LeftoverPublication {
			b.aborted[a.node.Name+"\x00"+a.l.Name] = true
		}
	}
	return true
}

func (b *planBuilder) addMove(n int, from string, r config.ShardRange, resume bool, reason string) {
	bytes := int64(0)
	for _, p := range b.shards[n] {
		if p.node.Name == from {
			bytes = p.shard.Bytes
			if len(p.shard.TablesWithoutKey) > 0 {
				b.keyProblems[from] = append(b.keyProblems[from], fmt.Sprintf("shard %d: %s", n, strings.Join(p.shard.TablesWithoutKey, ", ")))
			}
		}
	}
	if resume && bytes == 0 {
		for _, a := range b.artifacts[n] {
			if a.node.Name == from && a.l.Kind == state.LeftoverOldSchema {
				bytes = a.l.Bytes
			}
		}
	}
	step := Step{Kind: StepMove, From: from, To: r.Node, Shards: &Range{n, n}, Schemas: []string{b.in.Desired.SchemaName(n)},
		Activate: r.Active, Resume: resume, Bytes: bytes, Source: config.Pos(r.DeclRange), Reason: reason}
	b.moves = append(b.moves, step)
	b.movesBySrc[from]++
	if resume {
		for _, a := range b.artifacts[n] {
			b.owned[a.node.Name+"\x00"+a.l.Name] = true
		}
	}
}

// checkMoves refuses moves the nodes cannot carry: they would fail at
// preflight, after the review, in the deploy pipeline.
func (b *planBuilder) checkMoves() {
	srcs := make([]string, 0, len(b.movesBySrc))
	for s := range b.movesBySrc {
		srcs = append(srcs, s)
	}
	sort.Strings(srcs)
	for _, name := range srcs {
		live := b.in.Live.Node(name)
		count := b.movesBySrc[name]
		if live.WalLevel != "logical" {
			b.errorf(name, nil, "", fmt.Sprintf("node %s cannot be a move source: wal_level is %s", name, live.WalLevel),
				"%d moves start on %s, and logical replication needs wal_level = logical. Set it (ALTER SYSTEM SET wal_level = logical) and restart the server.", count, live.Addr)
		}
		if free := live.MaxReplicationSlots - live.UsedReplicationSlots; free < 1 {
			b.errorf(name, nil, "", fmt.Sprintf("node %s has no free replication slot", name),
				"max_replication_slots is %d and all are used; each move needs one on its source. Drop unused slots or raise max_replication_slots.", live.MaxReplicationSlots)
		}
		if free := live.MaxWalSenders - live.UsedWalSenders; free < 1 {
			b.errorf(name, nil, "", fmt.Sprintf("node %s has no free WAL sender", name),
				"max_wal_senders is %d and all are used; each move needs one on its source. Raise max_wal_senders.", live.MaxWalSenders)
		}
		if problems := b.keyProblems[name]; len(problems) > 0 {
			b.errorf(name, nil, "", fmt.Sprintf("shards moving from %s have tables without a primary key", name),
				"Logical replication cannot carry their updates and deletes: %s. Add a primary key (or set REPLICA IDENTITY FULL on the table) before moving.", strings.Join(problems, "; "))
		}
	}
	for _, m := range b.moves {
		live := b.in.Live.Node(m.From)
		if live.MaxSlotWalKeepSize >= 0 && m.Bytes > live.MaxSlotWalKeepSize {
			shard := m.Shards.From
			b.warnf(m.From, &shard, fmt.Sprintf("shard %d is larger than max_slot_wal_keep_size on %s", shard, m.From),
				"The shard holds %s and %s keeps at most %s of WAL for a slot; under heavy writes the slot may be invalidated during the copy and the move would start over.",
				units.FormatBytes(float64(m.Bytes)), m.From, units.FormatBytes(float64(live.MaxSlotWalKeepSize)))
		}
	}
}

// cleanup plans the removal of leftovers of earlier moves. What may go is
// decided by the same rules as pgms cleanup (state.Cluster.Triage): renamed
// sources past cleanup_after, copies never activated, replication objects
// that no remaining move uses. Leftovers of a move the plan resumes belong
// to that move; those of an interrupted move the files no longer ask for
// are dropped whatever else holds, with the partial copy.
func (b *planBuilder) cleanup() {
	verdicts := b.in.Live.Triage(state.CleanupPolicy{Now: b.in.Now, RetainOld: b.in.Desired.Cluster.CleanupAfter})
	for _, v := range verdicts {
		l := v.Leftover
		key := v.Node + "\x00" + l.Name
		if b.owned[key] {
			continue
		}
		shard := l.Shard
		step := Step{Kind: StepCleanup, Node: v.Node, Object: l.Name, ObjectKind: objectKind(l.Kind), Shards: &Range{shard, shard}, Reason: v.Reason}
		switch l.Kind {
		case state.LeftoverOldSchema:
			step.Bytes, step.Code = l.Bytes, CodeDropOldSchema
		case state.LeftoverNewSchema:
			step.Bytes, step.Code = l.Bytes, CodeDropCopy
		case state.LeftoverSlot:
			step.Bytes, step.Code = l.RetainedBytes, CodeDropSlot
			if v.Drop {
				step.Reason += fmt.Sprintf("; it retains %s of WAL", units.FormatBytes(float64(l.RetainedBytes)))
			}
		default:
			step.Code = CodeDropReplObject
		}
		if l.Tool == state.ToolPGMicrosharding {
			step.Reason += " (pg-microsharding's naming)"
		}
		switch {
		case b.aborted[key] && !(l.Kind == state.LeftoverSlot && l.Active && state.IsPGMSClient(l.WalsenderClient)):
			step.Reason = fmt.Sprintf("left by an interrupted move of shard %d that the files no longer ask for", shard)
			if l.Kind == state.LeftoverSlot {
				step.Reason += fmt.Sprintf("; it retains %s of WAL", units.FormatBytes(float64(l.RetainedBytes)))
			}
			b.plan.Steps = append(b.plan.Steps, step)
		case v.Drop:
			b.plan.Steps = append(b.plan.Steps, step)
		default:
			b.plan.Kept = append(b.plan.Kept, step)
		}
	}
}

func toolNote(l state.Leftover) string {
	if l.Tool == state.ToolPGMicrosharding {
		return "pg-microsharding's naming"
	}
	return "pgms"
}

func objectKind(kind string) string {
	switch kind {
	case state.LeftoverOldSchema, state.LeftoverNewSchema:
		return "schema"
	}
	return kind
}

// finish merges per-shard steps into ranges, orders every step and counts
// them. A plan with errors keeps no steps.
func (b *planBuilder) finish() {
	if len(b.plan.Errors) > 0 {
		b.plan.Steps = []Step{}
		b.plan.Kept = nil
		b.plan.Unmanaged = nil
		return
	}
	var installs, cleanups []Step
	for _, s := range b.plan.Steps {
		switch s.Kind {
		case StepInstall:
			installs = append(installs, s)
		case StepCleanup:
			cleanups = append(cleanups, s)
		}
	}
	steps := installs
	steps = append(steps, b.merge(b.allocs)...)
	steps = append(steps, b.merge(b.flips)...)
	steps = append(steps, b.orderMoves()...)
	// Subscriptions go first everywhere: one holds its slot on another
	// node, and a slot in use cannot be dropped. Then slots, publications,
	// schemas.
	sort.SliceStable(cleanups, func(i, j int) bool {
		a, c := cleanups[i], cleanups[j]
		if ka, kc := cleanupOrder(a), cleanupOrder(c); ka != kc {
			return ka < kc
		}
		if a.Node != c.Node {
			return a.Node < c.Node
		}
		return a.Object < c.Object
	})
	steps = append(steps, cleanups...)
	steps = append(steps, b.merge(b.drops)...)
	if steps == nil {
		steps = []Step{}
	}
	b.plan.Steps = steps

	for _, u := range b.merge(b.unmanaged) {
		b.plan.Unmanaged = append(b.plan.Unmanaged, Unmanaged{Node: u.Node, Shards: *u.Shards, Active: u.Activate})
	}
	sort.SliceStable(b.plan.Unmanaged, func(i, j int) bool {
		if b.plan.Unmanaged[i].Node != b.plan.Unmanaged[j].Node {
			return b.plan.Unmanaged[i].Node < b.plan.Unmanaged[j].Node
		}
		return b.plan.Unmanaged[i].Shards.From < b.plan.Unmanaged[j].Shards.From
	})

	s := &b.plan.Summary
	for _, st := range steps {
		switch st.Kind {
		case StepInstall:
			s.Install++
		case StepAllocate:
			s.Allocate += st.Shards.Len()
		case StepActivate:
			s.Activate += st.Shards.Len()
		case StepDeactivate:
			s.Deactivate += st.Shards.Len()
		case StepMove:
			s.Move++
			s.MoveBytes += st.Bytes
		case StepCleanup:
			s.Cleanup++
		case StepDrop:
			s.Drop += st.Shards.Len()
		}
	}
}

func cleanupOrder(s Step) int {
	switch s.ObjectKind {
	case "subscription":
		return 0
	case "slot":
		return 1
	case "publication":
		return 2
	}
	return 3
}

// orderMoves puts moves off drained nodes first, then the rest, each by
// shard number.
func (b *planBuilder) orderMoves() []Step {
	drained := map[string]bool{}
	for _, n := range b.in.Desired.Nodes {
		drained[n.Name] = n.Drain
	}
	moves := b.moves
	sort.SliceStable(moves, func(i, j int) bool {
		if drained[moves[i].From] != drained[moves[j].From] {
			return drained[moves[i].From]
		}
		return moves[i].Shards.From < moves[j].Shards.From
	})
	return moves
}

// merge turns per-shard steps into steps over runs of consecutive shards
// with the same kind, node and flag. The input is in shard order.
func (b *planBuilder) merge(in []shardStep) []Step {
	sort.SliceStable(in, func(i, j int) bool {
		if in[i].node != in[j].node {
			return in[i].node < in[j].node
		}
		return in[i].shard < in[j].shard
	})
	var out []Step
	for i := 0; i < len(in); {
		j := i + 1
		bytes := in[i].bytes
		for j < len(in) && in[j].kind == in[i].kind && in[j].node == in[i].node && in[j].active == in[i].active &&
			in[j].shard == in[j-1].shard+1 && in[j].source == in[i].source {
			bytes += in[j].bytes
			j++
		}
		first, last := in[i], in[j-1]
		rng := Range{first.shard, last.shard}
		step := Step{Kind: first.kind, Node: first.node, Shards: &rng, Activate: first.active, Source: first.source, Bytes: bytes, Reason: first.reason}
		for n := rng.From; n <= rng.To; n++ {
			step.Schemas = append(step.Schemas, b.in.Desired.SchemaName(n))
		}
		if first.kind == StepDrop {
			step.Code = CodeDropShard
		}
		out = append(out, step)
		i = j
	}
	// Steps of one kind run in shard order whatever their node.
	sort.SliceStable(out, func(i, j int) bool { return out[i].Shards.From < out[j].Shards.From })
	return out
}
