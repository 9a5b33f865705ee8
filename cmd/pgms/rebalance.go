package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/pgms-dev/pgms/config"
	"github.com/pgms-dev/pgms/internal/textdiff"
	"github.com/pgms-dev/pgms/internal/units"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/rebalance"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

func init() { register(newRebalanceCommand) }

// rebalanceArgs are the flags of pgms rebalance as given.
type rebalanceArgs struct {
	path      string
	drain     []string
	tolerance string
	maxMoves  int
	maxBytes  string
	write     bool
}

// rebalanceSettings are the flags checked and converted.
type rebalanceSettings struct {
	opts     rebalance.Options
	percent  string          // the tolerance as the user reads it: "5%"
	drain    map[string]bool // drained nodes, from the files and --drain
	maxBytes int64
}

func newRebalanceCommand() *cobra.Command {
	var a rebalanceArgs
	cmd := &cobra.Command{
		Use:   "rebalance",
		Short: "Compute a better placement from live weights and rewrite the topology files",
		Long: `Rebalance reads the topology files and the live weight of every shard, computes
a better placement and shows it as a change to the files: each node's shards,
weight, share of the total and deviation from its fair share, before and
after; the moves grouped by node pair; and the unified diff of the files.
--write rewrites the shards blocks (comments and the rest of the files stay
as they are). Review the diff and commit it: pgms plan then shows exactly
these moves and pgms apply carries them out.

A shard's weight is the cluster's weight_sql, or by default the total
relation size of its tables. The files are the starting point, so they must
match the cluster: while a plan is pending (shards living elsewhere than the
files place them), rebalance refuses; apply that plan first. A shard placed
in the files but not allocated yet weighs 0.

Goals, in order: drained nodes (drain = true in the files, or --drain) end
empty; every other node ends within --tolerance of its fair share (the total
weight split in proportion to node capacity); the least weight moved, then
the fewest moves. Near-empty shards are spread evenly by count, since they
are expected to grow. Shard 0 and pinned ranges never move. --max-moves and
--max-bytes give the best placement within those limits.`,
		Example: `  pgms rebalance --config topology/
  pgms rebalance --drain c --max-bytes 50GB --write`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runRebalance(cmd, a) },
	}
	configFlag(cmd, &a.path)
	f := cmd.Flags()
	f.StringArrayVar(&a.drain, "drain", nil, "node to empty, in addition to nodes with drain = true (repeatable)")
	f.StringVar(&a.tolerance, "tolerance", "5%", "accepted deviation of a node's weight from its fair share, a percentage")
	f.IntVar(&a.maxMoves, "max-moves", 0, "move at most this many shards (0: no limit)")
	f.StringVar(&a.maxBytes, "max-bytes", "", "move at most this much data, such as 50GB (needs weights in bytes)")
	f.BoolVar(&a.write, "write", false, "rewrite the topology files")
	return cmd
}

func runRebalance(cmd *cobra.Command, a rebalanceArgs) error {
	out := cmd.OutOrStdout()
	tol, percent, err := parseTolerance(a.tolerance)
	if err != nil {
		return err
	}
	if a.maxMoves < 0 {
		return fmt.Errorf("--max-moves %d: want a number of moves >= 1, or 0 for no limit", a.maxMoves)
	}
	var maxBytes int64
	if a.maxBytes != "" {
		if maxBytes, err = units.ParseBytes(a.maxBytes); err != nil || maxBytes <= 0 {
			return fmt.Errorf("--max-bytes %q: want a size above zero such as 500MB or 50GB (units B, kB, MB, GB, TB), or leave it out for no limit", a.maxBytes)
		}
	}
	t, err := loadTopology(cmd.ErrOrStderr(), a.path)
	if err != nil {
		return err
	}
	s := rebalanceSettings{
		opts:     rebalance.Options{Tolerance: tol, MaxMoves: a.maxMoves},
		percent:  percent,
		maxBytes: maxBytes,
	}
	if s.drain, err = drainedNodes(t, a.drain); err != nil {
		return err
	}

	live := refreshTopology(cmd.Context(), t, true)
	if err := cmd.Context().Err(); err != nil {
		return err
	}
	if err := checkNothingPending(cmd.ErrOrStderr(), t, live); err != nil {
		return err
	}
	in, err := rebalanceInput(t, live, s.drain)
	if err != nil {
		return err
	}
	if maxBytes > 0 {
		if !in.bytes {
			return fmt.Errorf("--max-bytes needs weights in bytes, but the cluster's weight_sql returns plain numbers; use --max-moves, or make weight_sql return a size such as pg_size_pretty(...)")
		}
		s.opts.MaxWeight = float64(maxBytes)
	}
	res, err := rebalance.Solve(in.nodes, in.shards, s.opts)
	if err != nil {
		return err
	}
	if len(res.Moves) == 0 && res.Balanced {
		fmt.Fprintf(out, "The cluster is balanced within %s: nothing to move.\n", percent)
		return nil
	}

	rewritten, err := config.RewritePlacement(t, res.Placement)
	if err != nil {
		return err
	}
	if err := checkRewrite(t, rewritten, res.Placement); err != nil {
		return err
	}
	rep := rebalanceReport{t: t, live: live, in: in, res: res, s: s, a: a}
	rep.render(out)
	files := sortedKeys(rewritten)
	for _, f := range files {
		fmt.Fprint(out, textdiff.Unified(f, f, string(t.Sources[f]), string(rewritten[f])))
	}
	if len(res.Moves) == 0 {
		return nil
	}
	fmt.Fprintln(out)
	if !a.write {
		fmt.Fprintln(out, "Nothing written: run again with --write to rewrite the files.")
		return nil
	}
	for _, f := range files {
		if err := replaceFile(f, rewritten[f]); err != nil {
			return fmt.Errorf("write %s: %w", f, err)
		}
		fmt.Fprintf(out, "Wrote %s.\n", f)
	}
	fmt.Fprintln(out, "Review and commit the change; pgms plan shows the same moves and pgms apply carries them out.")
	return nil
}

// parseTolerance reads a percentage such as "5%" or "2.5" (the sign is
// optional) into a fraction, and returns it as the user reads it too.
func parseTolerance(s string) (float64, string, error) {
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%")), 64)
	if err != nil || math.IsNaN(v) || v <= 0 || v >= 100 {
		return 0, "", fmt.Errorf("--tolerance %q: want a percentage between 0 and 100 (exclusive), such as 5%% or 2.5%%", s)
	}
	return v / 100, strconv.FormatFloat(v, 'f', -1, 64) + "%", nil
}

// drainedNodes returns the nodes to empty: those marked in the files and
// those named by --drain. It refuses unknown names, draining every node,
// and pinned shards on a drained node, which could never leave.
func drainedNodes(t *config.Topology, flags []string) (map[string]bool, error) {
	drain := map[string]bool{}
	var names, inFiles []string
	for _, n := range t.Nodes {
		names = append(names, n.Name)
		if n.Drain {
			drain[n.Name] = true
			inFiles = append(inFiles, n.Name)
		}
	}
	for _, d := range flags {
		for _, name := range strings.Split(d, ",") {
			name = strings.TrimSpace(name)
			if _, ok := t.Node(name); !ok {
				return nil, fmt.Errorf("--drain %s: no such node in the topology; the nodes are %s", name, strings.Join(names, ", "))
			}
			drain[name] = true
		}
	}
	if len(drain) == len(t.Nodes) {
		why := ""
		if len(inFiles) > 0 {
			why = fmt.Sprintf("; %s drain = true in the files", pluralWord(len(inFiles), strings.Join(inFiles, ", ")+" has", strings.Join(inFiles, ", ")+" have"))
		}
		return nil, fmt.Errorf("every node would be drained (%s%s), leaving nowhere for the shards; keep at least one node that is not drained",
			strings.Join(names, ", "), why)
	}
	var pinned, fixes []string
	for _, r := range t.Shards {
		switch {
		case !drain[r.Node]:
		case r.Pinned:
			pinned = append(pinned, fmt.Sprintf("%s on %s (pinned at %s)", pluralWord(r.Len(), "shard ", "shards ")+r.String(), r.Node, config.Pos(r.DeclRange)))
			fixes = append(fixes, "remove pinned = true, or place the pinned shards on another node in the files yourself")
		case r.From == 0:
			pinned = append(pinned, fmt.Sprintf("shard 0 on %s (%s)", r.Node, config.Pos(r.DeclRange)))
			fixes = append(fixes, "shard 0, the global shard, moves only when you place it on another node in the files")
		}
	}
	if len(pinned) > 0 {
		sort.Strings(fixes)
		fixes = slices.Compact(fixes)
		return nil, fmt.Errorf("a drained node holds shards that rebalance never moves: %s; %s", strings.Join(pinned, ", "), strings.Join(fixes, "; "))
	}
	return drain, nil
}

// checkNothingPending refuses to rebalance while the cluster differs from
// the files in where shards live: the placement computed from the files
// would be stacked on top of moves not yet made. It also stops on
// anything that stops a plan (an unreadable node, a shard active twice).
func checkNothingPending(stderr io.Writer, t *config.Topology, live *state.Cluster) error {
	p := planner.Compute(planner.Input{Desired: t, Live: live, Now: time.Now(), LibraryVersion: sql.Version})
	if p.HasErrors() {
		for _, e := range p.Errors {
			fmt.Fprintf(stderr, "Error: %s\n", e.Summary)
			if e.Detail != "" {
				fmt.Fprintf(stderr, "  %s\n", e.Detail)
			}
		}
		return fmt.Errorf("cannot rebalance: the live state has %s (pgms plan shows the same)", count(len(p.Errors), "error"))
	}
	moves := 0
	for _, s := range p.Steps {
		if s.Kind == planner.StepMove {
			moves++
		}
	}
	if moves == 0 {
		return nil
	}
	pending := count(len(p.Steps), "pending step")
	if moves != len(p.Steps) {
		pending += fmt.Sprintf(", %d of them %s", moves, pluralWord(moves, "a move", "moves"))
	}
	return fmt.Errorf("the cluster does not match the files yet (%s); run pgms apply first, or pgms plan to see them", pending)
}

// pluralWord picks one or many by n.
func pluralWord(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// rebalanceData is the algorithm's input built from the files and the
// live state, with what the report needs besides.
type rebalanceData struct {
	nodes  []rebalance.Node
	shards []rebalance.Shard
	// bytes says weights are sizes in bytes.
	bytes bool
	// size is each allocated shard's total relation size, what a move
	// copies; a shard absent from it is not allocated yet.
	size map[int]int64
}

// allocated reports whether shard n exists where the files place it; a
// shard that does not is allocated wherever the new placement puts it,
// and its "move" copies nothing.
func (d rebalanceData) allocated(n int) bool { _, ok := d.size[n]; return ok }

// rebalanceInput takes every placed shard where the files put it, with its
// live weight there (0 when it is not allocated yet).
func rebalanceInput(t *config.Topology, live *state.Cluster, drain map[string]bool) (rebalanceData, error) {
	d := rebalanceData{bytes: true, size: map[int]int64{}}
	for _, n := range t.Nodes {
		d.nodes = append(d.nodes, rebalance.Node{Name: n.Name, Capacity: n.Capacity, Drain: drain[n.Name]})
	}
	var withUnit, without []string
	for _, r := range t.Shards {
		ln := live.Node(r.Node)
		for n := r.From; n <= r.To; n++ {
			s := rebalance.Shard{Shard: n, Node: r.Node, Pinned: r.IsPinned(n)}
			if ln != nil {
				if ls := ln.Shard(n); ls != nil {
					d.size[n] = ls.Bytes
					if w := ls.Weight; w != nil {
						s.Weight = w.Value
						if w.Bytes {
							withUnit = append(withUnit, strconv.Itoa(n))
						} else {
							without = append(without, strconv.Itoa(n))
						}
					}
				}
			}
			d.shards = append(d.shards, s)
		}
	}
	switch {
	case len(without) > 0 && len(withUnit) > 0:
		return d, fmt.Errorf("weight_sql returned sizes for some shards (%s) and plain numbers for others (%s), which do not compare; make it return one kind",
			compactList(withUnit, 8), compactList(without, 8))
	case len(without) > 0, t.Cluster.WeightSQL != "" && len(withUnit) == 0:
		d.bytes = false
	}
	return d, nil
}

func compactList(items []string, max int) string {
	if len(items) > max {
		return strings.Join(items[:max], ", ") + ", …"
	}
	return strings.Join(items, ", ")
}

// checkRewrite loads the rewritten files and makes sure they place every
// shard as the rebalance says: plan must show exactly these moves.
func checkRewrite(t *config.Topology, rewritten map[string][]byte, placement map[int]string) error {
	sources := make(map[string][]byte, len(t.Sources))
	for f, src := range t.Sources {
		sources[f] = src
	}
	for f, src := range rewritten {
		sources[f] = src
	}
	nt, diags := config.LoadSources(sources)
	if diags.HasErrors() {
		return fmt.Errorf("the rewritten files do not load (a bug in pgms; nothing was written): %s", diags.Error())
	}
	got := nt.Placement()
	for n, node := range placement {
		if got[n].Node != node {
			return fmt.Errorf("the rewritten files place shard %d on %q, not %q (a bug in pgms; nothing was written)", n, got[n].Node, node)
		}
	}
	if len(got) != len(placement) {
		return fmt.Errorf("the rewritten files place %d shards, not %d (a bug in pgms; nothing was written)", len(got), len(placement))
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// rebalanceReport renders a rebalance for a person.
type rebalanceReport struct {
	t    *config.Topology
	live *state.Cluster
	in   rebalanceData
	res  rebalance.Result
	s    rebalanceSettings
	a    rebalanceArgs
}

func (r rebalanceReport) weight(v float64) string {
	if r.in.bytes {
		return units.FormatBytes(v)
	}
	return units.FormatNumber(v)
}

func (r rebalanceReport) render(w io.Writer) {
	measure := "total relation size"
	if r.t.Cluster.WeightSQL != "" {
		measure = "weight_sql"
	}
	fmt.Fprintf(w, "Weights by %s; tolerance ±%s of each node's fair share.\n\n", measure, r.s.percent)
	r.table(w)
	fmt.Fprintln(w)
	r.moves(w)
	r.flags(w)
	fmt.Fprintln(w)
}

// table prints every node before and after.
func (r rebalanceReport) table(w io.Writer) {
	var total float64
	capacities := map[float64]bool{}
	shards, receivers := 0, 0
	for _, n := range r.res.Nodes {
		total += n.Before
		shards += n.ShardsBefore
		if !n.Drain {
			c, _ := r.t.Node(n.Node)
			capacities[c.Capacity] = true
			receivers++
		}
	}
	sameCapacity := len(capacities) == 1
	tb := &pairTable{}
	tb.header("NODE", "SHARDS", "WEIGHT", "SHARE", "DEVIATION")
	if !sameCapacity {
		tb.titles = append(tb.titles[:1], append([]string{"CAPACITY"}, tb.titles[1:]...)...)
	}
	share := func(v float64) string {
		if total == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*v/total)
	}
	dev := func(n rebalance.NodeBalance, v float64) string {
		if n.Fair == 0 {
			return "-"
		}
		return fmt.Sprintf("%+.1f%%", 100*(v-n.Fair)/n.Fair)
	}
	for _, n := range r.res.Nodes {
		name := n.Node
		if n.Drain {
			name += " (drain)"
		}
		row := []cell{{single: name}}
		if !sameCapacity {
			c, _ := r.t.Node(n.Node)
			row = append(row, cell{single: strconv.FormatFloat(c.Capacity, 'f', -1, 64)})
		}
		row = append(row,
			cell{before: strconv.Itoa(n.ShardsBefore), after: strconv.Itoa(n.ShardsAfter), pair: true},
			cell{before: r.weight(n.Before), after: r.weight(n.After), pair: true},
			cell{before: share(n.Before), after: share(n.After), pair: true},
		)
		if n.Drain {
			row = append(row, cell{single: "drained"})
		} else {
			row = append(row, cell{before: dev(n, n.Before), after: dev(n, n.After), pair: true})
		}
		tb.rows = append(tb.rows, row)
	}
	tb.write(w)
	fair := "in proportion to capacity"
	if sameCapacity {
		fair = r.weight(total/float64(receivers)) + " per node"
	}
	fmt.Fprintf(w, "Total: %s, %s; fair share %s.\n", count(shards, "shard"), r.weight(total), fair)
}

// moves prints the moves grouped by node pair. Shards not allocated yet
// are listed apart: plan allocates them in their new place.
func (r rebalanceReport) moves(w io.Writer) {
	var real, unallocated []rebalance.Move
	for _, m := range r.res.Moves {
		if r.in.allocated(m.Shard) {
			real = append(real, m)
		} else {
			unallocated = append(unallocated, m)
		}
	}
	if len(r.res.Moves) == 0 {
		fmt.Fprintln(w, "No move brings the nodes closer to their fair shares.")
		return
	}
	if len(real) > 0 {
		fmt.Fprintf(w, "%s, %s", count(len(real), "move"), r.size(real))
		if r.res.LowerBound > 0 {
			fmt.Fprintf(w, " (reaching every fair share moves at least %s)", r.weight(r.res.LowerBound))
		}
		fmt.Fprintln(w, ":")
		for _, g := range groupMoves(real) {
			fmt.Fprintf(w, "  %s → %s: %s, %s: %s\n", g[0].From, g[0].To, count(len(g), "shard"), r.size(g), shardList(moveShards(g), 16))
		}
	}
	if len(unallocated) > 0 {
		fmt.Fprintf(w, "%s not allocated yet, placed on another node (pgms plan allocates %s there):\n",
			count(len(unallocated), "shard"), pluralWord(len(unallocated), "it", "them"))
		for _, g := range groupMoves(unallocated) {
			fmt.Fprintf(w, "  %s → %s: %s\n", g[0].From, g[0].To, shardList(moveShards(g), 16))
		}
	}
}

// size is the weight of moves, with the data they copy when the weight is
// not in bytes.
func (r rebalanceReport) size(moves []rebalance.Move) string {
	var weight float64
	for _, m := range moves {
		weight += m.Weight
	}
	if r.in.bytes {
		return r.weight(weight)
	}
	return "weight " + r.weight(weight) + ", " + units.FormatBytes(float64(r.movedBytes(moves)))
}

// groupMoves cuts moves sorted by From, To into runs of one node pair.
func groupMoves(moves []rebalance.Move) [][]rebalance.Move {
	var groups [][]rebalance.Move
	for i := 0; i < len(moves); {
		j := i
		for j < len(moves) && moves[j].From == moves[i].From && moves[j].To == moves[i].To {
			j++
		}
		groups = append(groups, moves[i:j])
		i = j
	}
	return groups
}

func moveShards(moves []rebalance.Move) []int {
	nums := make([]int, len(moves))
	for i, m := range moves {
		nums[i] = m.Shard
	}
	return nums
}

func (r rebalanceReport) movedBytes(moves []rebalance.Move) int64 {
	var b int64
	for _, m := range moves {
		b += r.in.size[m.Shard]
	}
	return b
}

// flags says how good the result is and why it is not better.
func (r rebalanceReport) flags(w io.Writer) {
	res := r.res
	fmt.Fprintln(w)
	if res.Balanced {
		fmt.Fprintf(w, "Balanced: every node ends within ±%s of its fair share", r.s.percent)
		if d := r.drainedNames(); d != "" {
			fmt.Fprintf(w, "; %s end%s empty", d, pluralWord(strings.Count(d, ",")+1, "s", ""))
		}
		fmt.Fprintln(w, ".")
	}
	if len(res.Oversized) > 0 {
		var list []string
		for _, n := range res.Oversized {
			list = append(list, fmt.Sprintf("shard %d (%s) on %s", n, r.weight(r.shardWeight(n)), res.Placement[n]))
		}
		fmt.Fprintf(w, "Oversized: %s; heavier than a fair share allows, such a shard gets a node of its own and the other nodes share the rest.\n",
			strings.Join(list, ", "))
	}
	if !res.Balanced && len(res.Oversized) == 0 && res.Reachable {
		fmt.Fprintf(w, "Not balanced: shard sizes keep some nodes outside ±%s of their fair share; this is the closest placement found.\n", r.s.percent)
	}
	if !res.Reachable {
		var limits []string
		if r.a.maxMoves > 0 {
			limits = append(limits, fmt.Sprintf("--max-moves %d", r.a.maxMoves))
		}
		if r.s.maxBytes > 0 {
			limits = append(limits, "--max-bytes "+r.a.maxBytes)
		}
		fmt.Fprintf(w, "Budget-limited: the target was not reached within %s; this is the best placement within the limit. Apply it and run pgms rebalance again, or raise the limit.\n",
			strings.Join(limits, " and "))
	}
	var small []int
	for _, m := range res.Moves {
		// Shards leaving a drained node move whatever they weigh.
		if m.Weight <= res.NearEmpty && !r.s.drain[m.From] {
			small = append(small, m.Shard)
		}
	}
	if len(small) > 0 {
		fmt.Fprintf(w, "Near-empty shards (at most %s, a tenth of the median shard) are spread evenly by count, as they will grow: that moves %s %s.\n",
			r.weight(res.NearEmpty), pluralWord(len(small), "shard", "shards"), shardList(small, 16))
	}
	if keyless := r.keyless(); len(keyless) > 0 {
		fmt.Fprintf(w, "Warning: tables without a primary key in %s: pgms plan will refuse to move them until they have one (or REPLICA IDENTITY FULL).\n",
			strings.Join(keyless, "; "))
	}
}

func (r rebalanceReport) drainedNames() string {
	var names []string
	for _, n := range r.res.Nodes {
		if n.Drain {
			names = append(names, n.Node)
		}
	}
	return strings.Join(names, ", ")
}

func (r rebalanceReport) shardWeight(n int) float64 {
	for _, s := range r.in.shards {
		if s.Shard == n {
			return s.Weight
		}
	}
	return 0
}

// keyless lists moved shards whose tables logical replication cannot
// carry, so that the author learns it now rather than from plan.
func (r rebalanceReport) keyless() []string {
	var out []string
	for _, m := range r.res.Moves {
		if ln := r.live.Node(m.From); ln != nil {
			if s := ln.Shard(m.Shard); s != nil && len(s.TablesWithoutKey) > 0 {
				out = append(out, fmt.Sprintf("shard %d (%s)", m.Shard, strings.Join(s.TablesWithoutKey, ", ")))
			}
		}
	}
	return out
}

// shardList writes shard numbers compactly: runs of three or more as
// ranges ("19-23"), at most max items, then how many more.
func shardList(nums []int, max int) string {
	sort.Ints(nums)
	var items []string
	rest := 0
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		var run []string
		if j-i >= 2 {
			run = []string{fmt.Sprintf("%d-%d", nums[i], nums[j])}
		} else {
			for k := i; k <= j; k++ {
				run = append(run, strconv.Itoa(nums[k]))
			}
		}
		for k, item := range run {
			if len(items) < max {
				items = append(items, item)
				continue
			}
			if j-i >= 2 {
				rest += j - i + 1
			} else {
				rest += len(run) - k
			}
			break
		}
		i = j + 1
	}
	s := strings.Join(items, ", ")
	if rest > 0 {
		s += fmt.Sprintf(", … (%d more)", rest)
	}
	return s
}

// cell is one table cell: a single value, or a before → after pair.
type cell struct {
	single        string
	before, after string
	pair          bool
}

// pairTable lays out columns whose cells may be before → after pairs, the
// two halves aligned right separately so that the arrows line up.
type pairTable struct {
	titles []string
	rows   [][]cell
}

func (t *pairTable) header(titles ...string) { t.titles = titles }

func (t *pairTable) write(w io.Writer) {
	type width struct{ whole, before, after int }
	widths := make([]width, len(t.titles))
	for c, title := range t.titles {
		widths[c].whole = utf8.RuneCountInString(title)
	}
	for _, row := range t.rows {
		for c, v := range row {
			wd := &widths[c]
			if v.pair {
				wd.before = max(wd.before, utf8.RuneCountInString(v.before))
				wd.after = max(wd.after, utf8.RuneCountInString(v.after))
			}
			wd.whole = max(wd.whole, utf8.RuneCountInString(v.single))
		}
	}
	for c := range widths {
		wd := &widths[c]
		if wd.before > 0 || wd.after > 0 {
			if pair := wd.before + 3 + wd.after; pair < wd.whole {
				wd.before += wd.whole - pair
			} else {
				wd.whole = pair
			}
		}
	}
	line := func(cells []string) {
		fmt.Fprintln(w, strings.TrimRight("  "+strings.Join(cells, "   "), " "))
	}
	var head []string
	for c, title := range t.titles {
		head = append(head, pad(title, widths[c].whole, false))
	}
	line(head)
	for _, row := range t.rows {
		var cells []string
		for c, v := range row {
			if v.pair {
				cells = append(cells, pad(v.before, widths[c].before, true)+" → "+pad(v.after, widths[c].after, true))
			} else {
				cells = append(cells, pad(v.single, widths[c].whole, false))
			}
		}
		line(cells)
	}
}

func pad(s string, width int, right bool) string {
	n := width - utf8.RuneCountInString(s)
	if n <= 0 {
		return s
	}
	if right {
		return strings.Repeat(" ", n) + s
	}
	return s + strings.Repeat(" ", n)
}
