package planner

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/internal/words"
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
	// Lock is the run lock as the state node reported it, when read: a
	// plan made while another run holds it says who and what it does.
	Lock *state.LockStatus
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
	// busy marks shards another run holds a live claim on: the plan
	// leaves them, and their leftovers, alone.
	busy map[int]bool
	// aborts are the partial copies of interrupted moves to undo; they
	// run before the moves, which may need the same names.
	aborts []Step

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
		busy:        map[int]bool{},
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
	for _, n := range in.Live.Nodes {
		if n.Registered {
			_, retired := in.Desired.RetiredNode(n.Name)
			b.plan.Nodes = append(b.plan.Nodes, NodeInfo{Name: n.Name, Addr: n.Addr, Registered: true, Retired: retired})
		}
	}
	b.running()
	if !b.checkNodes() {
		b.finish()
		return b.plan
	}
	b.index()
	b.claims()
	b.install()
	b.placeShards()
	b.drains()
	b.checkMoves()
	b.cleanup()
	b.retire()
	b.finish()
	return b.plan
}

// running describes the run that holds the run lock, if one does: the
// plan is then made against a cluster that run is changing.
func (b *planBuilder) running() {
	l := b.in.Lock
	if l == nil || !l.Held {
		return
	}
	info := &RunInfo{Holder: fmt.Sprintf("a session (backend pid %d) without a holder row", l.HolderPID)}
	if l.Holder != nil {
		info.Holder = l.Holder.String()
	}
	for _, s := range l.Steps {
		line := s.Kind
		if s.Shard != nil {
			line += fmt.Sprintf(" shard %d", *s.Shard)
		}
		if s.Source != "" || s.Destination != "" {
			line += fmt.Sprintf(" %s → %s", s.Source, s.Destination)
		}
		if s.Phase != "" {
			line += ", phase " + s.Phase
		}
		info.Steps = append(info.Steps, line)
	}
	b.plan.Running = info
}

// claims finds the shards other runs are working on: a live claim on any
// node. Their presences and leftovers are that run's business.
func (b *planBuilder) claims() {
	for _, n := range b.in.Live.Nodes {
		for _, c := range n.Claims {
			if !c.Live {
				continue
			}
			b.busy[c.Shard] = true
			b.plan.InProgress = append(b.plan.InProgress, InProgress{Shard: c.Shard, Schema: c.Schema, Node: n.Name, Purpose: c.Purpose, Holder: c.Who()})
		}
	}
}

func (b *planBuilder) errorf(node string, shard *int, source, summary, detail string, args ...any) {
	b.plan.Errors = append(b.plan.Errors, Problem{Summary: summary, Detail: fmt.Sprintf(detail, args...), Node: node, Shard: shard, Source: source})
}

func (b *planBuilder) warnf(node string, shard *int, summary, detail string, args ...any) {
	b.plan.Warnings = append(b.plan.Warnings, Problem{Summary: summary, Detail: fmt.Sprintf(detail, args...), Node: node, Shard: shard})
}

// checkNodes refuses to plan when a node cannot be read, is a standby,
// runs a newer library than this pgms, is the same server as another
// node, or now reaches another server than the one registered under its
// name. Nodes registered but no longer in the files count: a shard may
// be active there.
func (b *planBuilder) checkNodes() bool {
	for _, n := range b.in.Desired.Nodes {
		live := b.in.Live.Node(n.Name)
		src := config.Pos(n.DeclRange)
		switch {
		case live == nil:
			b.errorf(n.Name, nil, src, fmt.Sprintf("node %s was not read", n.Name), "The live state holds no entry for this node.")
		case live.Err != nil:
			b.errorf(n.Name, nil, src, fmt.Sprintf("cannot read node %s", n.Name),
				"%v. A plan needs every node: a shard may be active on this one, and without reading it pgms cannot rule out giving a shard a second home. Fix the connection (the dsn, the network, the credentials) and plan again.", live.Err)
		default:
			b.checkLiveNode(live, src)
		}
	}
	for _, live := range b.in.Live.Nodes {
		if !live.Registered {
			continue
		}
		rn, retired := b.in.Desired.RetiredNode(live.Name)
		src := ""
		if retired {
			src = config.Pos(rn.DeclRange)
		}
		switch {
		case live.Err != nil && retired:
			b.errorf(live.Name, nil, src, fmt.Sprintf("cannot read retired node %s", live.Name),
				"%v. Node %s is retired at %s, but pgms must read it to move its shards off and to make sure nothing stays there. Make it reachable (give its dsn in the removed block if the registered address lacks a password), or, if the server is gone for good with its data, declare it: lost = true in that removed block.", live.Err, live.Name, src)
		case live.Err != nil:
			b.errorf(live.Name, nil, "", fmt.Sprintf("cannot read node %s, which is registered but not in the files", live.Name),
				"%v. pgms managed node %s (%s) and it is no longer in the topology files; a shard may still be active there, so pgms plans nothing that could give a shard a second home. Put its node block back (so that pgms can reach it and move its shards), or retire it with removed { node = %q } and its dsn; if the server is gone for good with its data, add lost = true.", live.Err, live.Name, live.Addr, live.Name)
		default:
			b.checkLiveNode(live, src)
		}
	}
	b.checkIdentities()
	return len(b.plan.Errors) == 0
}

func (b *planBuilder) checkLiveNode(live *state.NodeState, src string) {
	switch {
	case live.Standby:
		b.errorf(live.Name, nil, src, fmt.Sprintf("node %s is a standby", live.Name), "%s is in recovery. Nodes must be primaries: point the node's dsn at the primary.", live.Addr)
	case live.Library.Installed && live.Library.Version > b.in.LibraryVersion:
		b.errorf(live.Name, nil, src, fmt.Sprintf("node %s runs a newer library", live.Name), "The microsharding library on %s is version %d; this pgms knows version %d. Use a newer pgms.", live.Addr, live.Library.Version, b.in.LibraryVersion)
	}
}

// checkIdentities refuses two node names for one running server, and a
// node name that now reaches another server than the one registered under
// it.
func (b *planBuilder) checkIdentities() {
	var readable []*state.NodeState
	for _, n := range b.in.Live.Nodes {
		if n.Err == nil && n.Identity.SystemIdentifier != "" {
			readable = append(readable, n)
		}
	}
	for i, a := range readable {
		for _, c := range readable[i+1:] {
			if a.Identity.SameServer(c.Identity) {
				b.errorf(c.Name, nil, "", fmt.Sprintf("nodes %s and %s are the same server", a.Name, c.Name),
					"Both reach database %s of the server started at %s (system identifier %s): %s and %s. One node is one database of one server: remove one of the two node blocks, or fix its dsn.",
					a.Identity.Database, a.Identity.Started.UTC().Format(time.RFC3339), a.Identity.SystemIdentifier, a.Addr, c.Addr)
			}
		}
	}
	registered := map[string]state.RegisteredNode{}
	ids := map[string]bool{}
	for _, n := range b.in.Live.Nodes {
		if n.Identity.ID != "" {
			ids[n.Identity.ID] = true
		}
		for _, r := range n.Registry {
			registered[r.ID] = r
		}
	}
	regIDs := make([]string, 0, len(registered))
	for id := range registered {
		regIDs = append(regIDs, id)
	}
	sort.Strings(regIDs)
	for _, n := range b.in.Desired.Nodes {
		live := b.in.Live.Node(n.Name)
		if live == nil || live.Err != nil {
			continue
		}
		for _, id := range regIDs {
			r := registered[id]
			if r.Name != n.Name || r.ID == live.Identity.ID || ids[r.ID] {
				continue
			}
			now := "a server pgms has not registered"
			if live.Identity.ID != "" {
				now = "a server registered as " + live.Identity.ID
			}
			b.errorf(n.Name, nil, config.Pos(n.DeclRange), fmt.Sprintf("node %s reaches another server than the one registered as %s", n.Name, n.Name),
				"Its dsn now reaches %s (%s), while the registry records node %s as pgms id %s at %s, which no node of the files reaches any more. If the address moved by mistake, fix the dsn. If the server was replaced on purpose, retire the old one under its id: pgms nodes --forget %s removes it from the registry once you are sure it holds nothing.",
				now, live.Addr, n.Name, r.ID, r.Addr, r.ID)
		}
	}
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
	if b.busy[n] {
		return
	}
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
	// A copy is the destination of a move that did not finish: pgms's
	// (marked by its schema comment) or pg-microsharding's (inactive, with
	// its subscription beside it). The other presences are homes.
	var homes, copies, windows []presence
	for _, p := range live {
		switch {
		case p.shard.Window != nil && !p.shard.Active:
			windows = append(windows, p)
		case p.shard.Copy || b.referenceCopy(n, p):
			copies = append(copies, p)
		default:
			homes = append(homes, p)
		}
	}
	for _, w := range windows {
		if !b.window(n, r, w, homes, copies) {
			return
		}
	}
	switch {
	case len(homes) > 1:
		var where []string
		for _, p := range homes {
			where = append(where, p.node.Name)
		}
		b.errorf("", &shard, src, fmt.Sprintf("shard %d exists on %s", n, strings.Join(where, " and ")),
			"Its schema %s is on several nodes, no run is working on it, and no interrupted move explains it (no copy mark, no move's subscription), so pgms cannot tell which copy holds the data. Compare the copies, drop the stale one, and plan again.",
			b.in.Desired.SchemaName(n))
	case len(homes) == 0 && len(copies) > 1:
		var where []string
		for _, p := range copies {
			where = append(where, p.node.Name)
		}
		b.errorf("", &shard, src, fmt.Sprintf("shard %d exists only as unfinished copies on %s", n, strings.Join(where, " and ")),
			"No node serves %s, and several unfinished copies of it exist: pgms cannot tell which move committed. Check the nodes (the renamed sources %sold… hold the data as it was at each cutover) before planning again.",
			b.in.Desired.SchemaName(n), b.in.Desired.SchemaName(n))
	case len(homes) == 0 && len(copies) == 1:
		// The source was renamed: the cutover committed, and finishing is
		// the only way on, wherever the files now place the shard.
		c := copies[0]
		from := b.renamedSourceOf(n, c)
		reason := fmt.Sprintf("the cutover of an interrupted move of shard %d from %s to %s committed; the move is finished", n, from, c.node.Name)
		if c.node.Name != r.Node {
			shardNo := n
			b.warnf(c.node.Name, &shardNo, fmt.Sprintf("shard %d is first finished on %s", n, c.node.Name),
				"Its move to %s had committed, so it is finished there first; plan again afterwards to place it on %s as %s asks.", c.node.Name, r.Node, src)
		}
		b.addMove(n, from, config.ShardRange{From: n, To: n, Node: c.node.Name, Active: r.Active, DeclRange: r.DeclRange}, true, reason)
	case len(homes) == 0:
		state := "active"
		if !r.Active {
			state = "inactive"
		}
		b.allocs = append(b.allocs, shardStep{kind: StepAllocate, node: r.Node, shard: n, active: r.Active, source: src,
			reason: fmt.Sprintf("placed on %s (%s) at %s and present on no node", r.Node, state, src)})
	default:
		home := homes[0]
		resumed := false
		for _, c := range copies {
			if c.node.Name == r.Node && home.node.Name != r.Node {
				resumed = true
				reason := fmt.Sprintf("an interrupted move of shard %d from %s to %s left an unfinished copy; it resumes", n, home.node.Name, r.Node)
				if !c.shard.Copy {
					reason = fmt.Sprintf("pg-microsharding left a half-done move of shard %d from %s to %s; pgms takes it over (its partial copy is replaced by a fresh one)", n, home.node.Name, r.Node)
				}
				b.addMove(n, home.node.Name, r, true, reason)
				continue
			}
			b.abortCopy(n, home, c)
		}
		if resumed {
			return
		}
		if home.node.Name == r.Node {
			if home.shard.Active != r.Active {
				kind, want, is := StepActivate, "active", "inactive"
				if !r.Active {
					kind, want, is = StepDeactivate, "inactive", "active"
				}
				b.flips = append(b.flips, shardStep{kind: kind, node: r.Node, shard: n, active: r.Active, source: src,
					reason: fmt.Sprintf("%s at %s but %s on %s", want, src, is, r.Node)})
			}
			return
		}
		state := "inactive"
		if home.shard.Active {
			state = "active"
		}
		where := home.node.Name
		if home.node.Registered {
			where += ", a node registered but no longer in the files"
		}
		b.addMove(n, home.node.Name, r, false, fmt.Sprintf("placed on %s at %s but lives on %s (%s)", r.Node, src, where, state))
	}
}

// window accounts for a move source in its rollback window; it reports
// whether the shard's other presences are then placed as usual. The
// window's replication objects are its own, never cleanup's. A move of
// the shard elsewhere is refused while the window is open: its new home
// streams it back under the names the move would use.
func (b *planBuilder) window(n int, r config.ShardRange, w presence, homes, copies []presence) bool {
	shard := n
	mark := w.shard.Window
	switch {
	case len(homes) == 0 && len(copies) == 1:
		// The windowed cutover committed; the move is finished first.
		return true
	case len(homes) != 1 || !homes[0].shard.Active || homes[0].node.Name != mark.To && homes[0].node.Addr != mark.To:
		b.errorf(w.node.Name, &shard, "", fmt.Sprintf("shard %d on %s is in a rollback window, but %s does not serve it", n, w.node.Name, mark.To),
			"%s on %s is fenced for the rollback window of its move to %s, which should serve the shard: a rollback may have committed without finishing. Run pgms rollback --shard=%d to finish it, then plan again.",
			w.shard.Schema, w.node.Name, mark.To, n)
		return false
	}
	home := homes[0]
	win := Window{Shard: n, Schema: w.shard.Schema, Node: w.node.Name, To: home.node.Name, Since: mark.Since, Until: mark.Until,
		Expired: !b.in.Now.Before(mark.Until)}
	streaming := false
	for _, a := range b.artifacts[n] {
		b.owned[a.node.Name+"\x00"+a.l.Name] = true
		switch {
		case a.node.Name == home.node.Name && a.l.Kind == state.LeftoverSlot:
			win.RetainedBytes = a.l.RetainedBytes
		case a.node.Name == w.node.Name && a.l.Kind == state.LeftoverSubscription:
			streaming = true
		}
	}
	b.plan.Windows = append(b.plan.Windows, win)
	if keep := home.node.MaxSlotWalKeepSize; win.RetainedBytes > 1<<30 || keep > 0 && win.RetainedBytes > keep/2 {
		b.warnf(home.node.Name, &shard, fmt.Sprintf("the rollback window of shard %d retains %s of WAL on %s", n, units.FormatBytes(float64(win.RetainedBytes)), home.node.Name),
			"The stream back to %s has not confirmed that WAL (is %s reachable from %s, and its subscription running?). It grows until the window closes; close it early with pgms rollback --shard=%d --close if the disk of %s is at risk.",
			w.node.Name, home.node.Name, w.node.Name, n, home.node.Name)
	}
	if home.node.Name != r.Node {
		b.errorf(home.node.Name, &shard, config.Pos(r.DeclRange), fmt.Sprintf("shard %d is in its rollback window (until %s): it cannot move to %s yet", n, mark.Until.UTC().Format("2006-01-02 15:04:05 UTC"), r.Node),
			"Its old home %s is kept current from %s so that pgms rollback --shard=%d can switch back. Roll back, or close the window first (pgms rollback --shard=%d --close; pgms cleanup closes it once past), then plan again.",
			w.node.Name, home.node.Name, n, n)
		return false
	}
	switch {
	case win.Expired:
		b.plan.Steps = append(b.plan.Steps, Step{Kind: StepCleanup, Node: w.node.Name, From: home.node.Name, Object: w.shard.Schema, ObjectKind: "window",
			Shards: &Range{n, n}, Schemas: []string{w.shard.Schema},
			Reason: fmt.Sprintf("the rollback window of shard %d ended at %s: the stream back from %s is dropped and %s is renamed, kept for cleanup_after", n, mark.Until.UTC().Format("2006-01-02 15:04:05 UTC"), home.node.Name, w.shard.Schema)})
	case !streaming:
		b.addMove(n, w.node.Name, r, true, fmt.Sprintf("the move of shard %d from %s to %s committed, but its rollback window's stream back is not set up yet", n, w.node.Name, home.node.Name))
		return false
	}
	return true
}

// referenceCopy reports whether a presence is the destination of a move
// pg-microsharding left half-done: inactive, unmarked, with that tool's
// subscription for the shard on the same node.
func (b *planBuilder) referenceCopy(n int, p presence) bool {
	if p.shard.Active || p.shard.Copy {
		return false
	}
	for _, a := range b.artifacts[n] {
		if a.node.Name == p.node.Name && a.l.Kind == state.LeftoverSubscription && a.l.Tool == state.ToolPGMicrosharding {
			return true
		}
	}
	return false
}

// renamedSourceOf names the source of a committed move whose copy c is
// the shard's only home. The copy's mark names it, and wins when that node
// holds a renamed source: renamed names carry seconds only, so two moves
// of one shard within a second leave equal names, and the wrong one would
// give the copy older sequence values. Otherwise (a mark naming a node
// that is gone, pg-microsharding's copies without one) it is the node
// holding the newest renamed source, else the one the mark names.
func (b *planBuilder) renamedSourceOf(n int, c presence) string {
	marked := ""
	for _, node := range b.in.Live.Nodes {
		if c.shard.CopyFrom != "" && (node.Name == c.shard.CopyFrom || node.Addr == c.shard.CopyFrom) {
			marked = node.Name
		}
	}
	newest, from := "", ""
	for _, a := range b.artifacts[n] {
		if a.node.Name == c.node.Name || a.l.Kind != state.LeftoverOldSchema {
			continue
		}
		if a.node.Name == marked {
			return marked
		}
		if a.l.Name > newest {
			newest, from = a.l.Name, a.node.Name
		}
	}
	switch {
	case from != "":
		return from
	case marked != "":
		return marked
	}
	return c.shard.CopyFrom
}

// abortCopy plans the undo of an interrupted move from home to the copy's
// node, which the files no longer ask for: the partial copy and the move's
// replication objects go, the home is not touched.
func (b *planBuilder) abortCopy(n int, home, c presence) {
	reason := fmt.Sprintf("partial copy of an interrupted move of shard %d from %s, which the files no longer ask for", n, home.node.Name)
	if !c.shard.Copy {
		reason = fmt.Sprintf("partial copy of a move of shard %d from %s that pg-microsharding left half-done and the files do not ask for", n, home.node.Name)
	}
	b.aborts = append(b.aborts, Step{Kind: StepCleanup, Node: c.node.Name, Object: c.shard.Schema, ObjectKind: "schema",
		Bytes: c.shard.Bytes, Code: CodeDropCopy, Shards: &Range{n, n}, From: home.node.Name, Reason: reason})
	for _, a := range b.artifacts[n] {
		if a.l.Kind == state.LeftoverSubscription || a.l.Kind == state.LeftoverSlot || a.l.Kind == state.LeftoverPublication {
			b.aborted[a.node.Name+"\x00"+a.l.Name] = true
		}
	}
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
	if !resume {
		step.Verify = b.in.Desired.VerifyLevel()
		if w := b.in.Desired.Cluster.RollbackWindow; w > 0 && r.Active {
			step.RollbackWindow = units.FormatDuration(w)
		}
	}
	b.moves = append(b.moves, step)
	b.movesBySrc[from]++
	if resume {
		for _, a := range b.artifacts[n] {
			b.owned[a.node.Name+"\x00"+a.l.Name] = true
		}
	}
}

// drains warns about drained nodes that the files still place shards on:
// drain = true guides pgms rebalance, which rewrites the placement; until
// then nothing moves, and a plan saying "no changes" would mislead a
// review.
func (b *planBuilder) drains() {
	desired := b.in.Desired.Placement()
	for _, n := range b.in.Desired.Nodes {
		if !n.Drain {
			continue
		}
		live := b.in.Live.Node(n.Name)
		if live == nil {
			continue
		}
		var held []int
		for _, s := range live.Shards {
			if r, ok := desired[s.Shard]; ok && r.Node == n.Name && !s.Copy {
				held = append(held, s.Shard)
			}
		}
		if len(held) == 0 {
			continue
		}
		d := Drain{Node: n.Name, Shards: len(held), Ranges: words.Shards(held, 0), Source: config.Pos(n.DeclRange)}
		b.plan.Drains = append(b.plan.Drains, d)
		b.warnf(n.Name, nil, fmt.Sprintf("node %s is drained but still holds %d shards", n.Name, len(held)),
			"drain = true at %s, and the files still place shards %s on %s. drain guides pgms rebalance, which rewrites the placement: run pgms rebalance --write, review the diff, then plan; the moves appear then.",
			d.Source, d.Ranges, n.Name)
	}
}

// retire plans the retirement of the nodes removed blocks name: once the
// steps above have moved everything off a node, it is forgotten by the
// registry. A node that would still hold shards or leftovers is not
// retired.
func (b *planBuilder) retire() {
	registered := map[string]state.RegisteredNode{}
	for _, n := range b.in.Live.Nodes {
		for _, r := range n.Registry {
			if _, ok := registered[r.Name]; !ok {
				registered[r.Name] = r
			}
		}
	}
	movedOff := map[string]map[int]bool{}
	for _, m := range b.moves {
		if movedOff[m.From] == nil {
			movedOff[m.From] = map[int]bool{}
		}
		movedOff[m.From][m.Shards.From] = true
	}
	for _, d := range b.drops {
		if movedOff[d.node] == nil {
			movedOff[d.node] = map[int]bool{}
		}
		movedOff[d.node][d.shard] = true
	}
	for _, rn := range b.in.Desired.Retired {
		src := config.Pos(rn.DeclRange)
		live := b.in.Live.Node(rn.Name)
		id := ""
		if live != nil {
			id = live.Identity.ID
		}
		if r, ok := registered[rn.Name]; ok && id == "" {
			id = r.ID
		}
		if id == "" {
			b.warnf(rn.Name, nil, fmt.Sprintf("node %s is already retired", rn.Name),
				"No node registry knows node %s (%s): it was retired already, or never managed by pgms. Remove the removed block.", rn.Name, src)
			continue
		}
		if rn.Lost {
			b.plan.Steps = append(b.plan.Steps, Step{Kind: StepRetire, Node: rn.Name, NodeID: id, Source: src,
				Reason: fmt.Sprintf("declared lost at %s: pgms stops visiting it, and whatever it held is given up", src)})
			continue
		}
		if live == nil || live.Err != nil {
			continue // checkNodes reported it
		}
		var shards []int
		for _, s := range live.Shards {
			if !movedOff[rn.Name][s.Shard] {
				shards = append(shards, s.Shard)
			}
		}
		var kept []string
		for _, k := range b.plan.Kept {
			if k.Node == rn.Name {
				kept = append(kept, k.Object)
			}
		}
		shard := 0
		switch {
		case len(shards) > 0:
			shard = shards[0]
			b.errorf(rn.Name, &shard, src, fmt.Sprintf("retired node %s still holds shards %s", rn.Name, words.Shards(shards, 0)),
				"Node %s is retired at %s, but no shards block places shards %s elsewhere, so they would stay on it. Place them on another node (pgms moves them off %s), or drop them with a removed block.",
				rn.Name, src, words.Shards(shards, 0), rn.Name)
		case len(kept) > 0:
			b.warnf(rn.Name, nil, fmt.Sprintf("retired node %s still holds leftovers", rn.Name),
				"Node %s is retired at %s, but it keeps %s within cleanup_after; it is forgotten once they are gone (pgms cleanup --retain 0 drops them now).", rn.Name, src, strings.Join(kept, ", "))
		default:
			reason := fmt.Sprintf("retired at %s and holds nothing", src)
			if len(movedOff[rn.Name]) > 0 {
				reason = fmt.Sprintf("retired at %s; it holds nothing once the steps above moved its shards off", src)
			}
			b.plan.Steps = append(b.plan.Steps, Step{Kind: StepRetire, Node: rn.Name, NodeID: id, Source: src, Reason: reason})
		}
	}
	for _, n := range b.in.Live.Nodes {
		if _, retired := b.in.Desired.RetiredNode(n.Name); !n.Registered || retired || n.Err != nil {
			continue
		}
		b.warnf(n.Name, nil, fmt.Sprintf("node %s is not in the files, but registered", n.Name),
			"pgms managed node %s (%s) and still visits it: shards on it are live. To retire it, place its shards on other nodes and add removed { node = %q }.", n.Name, n.Addr, n.Name)
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
		// Copies are placeShard's: resumed or undone with their move.
		if b.owned[key] || b.busy[l.Shard] || l.Kind == state.LeftoverCopy {
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
	var installs, cleanups, retires []Step
	for _, s := range b.plan.Steps {
		switch s.Kind {
		case StepInstall:
			installs = append(installs, s)
		case StepCleanup:
			cleanups = append(cleanups, s)
		case StepRetire:
			retires = append(retires, s)
		}
	}
	steps := installs
	steps = append(steps, b.merge(b.allocs)...)
	steps = append(steps, b.merge(b.flips)...)
	// Interrupted moves the files no longer ask for are undone before any
	// move starts: a new move of the same shard uses the same names.
	sort.SliceStable(b.aborts, func(i, j int) bool { return b.aborts[i].Shards.From < b.aborts[j].Shards.From })
	steps = append(steps, b.aborts...)
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
	steps = append(steps, retires...)
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
		case StepRetire:
			s.Retire++
		}
	}
}

func cleanupOrder(s Step) int {
	switch s.ObjectKind {
	case "window":
		return -1
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
