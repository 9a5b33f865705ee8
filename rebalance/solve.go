package rebalance

import (
	"math"
	"sort"
)

// How Solve works.
//
// Targets: every node not drained has a fair share of the total weight, in
// proportion to its capacity, and a band of ±Tolerance around it. A shard
// that fits in no band is oversized: it gets a node of its own (where it
// weighs least against the node's share, preferably where it is) and the
// other nodes share what is left; likewise a node whose pinned shards alone
// exceed its band. The top of a band is never above the input's worst
// load/fair ratio, which keeps the result from being less balanced than
// the input.
//
// Phases, each move checked to bring the nodes closer to their bands:
//
//  1. Near-empty shards are spread by count, lightest first, before and
//     again after a first balance (a node at the input's worst ratio can
//     take none until it has shed weight).
//  2. Balance: drained nodes are emptied, heaviest shard first. Then the node
//     furthest above its band sheds the lightest set of shards that brings
//     it down (one shard, a pair, or a heaviest-first fill; larger shards
//     when the receivers need more than the surplus anyway), each to the
//     node below its band whose deficit it fills best, else to the least
//     loaded node with room. Then nodes below their band are filled from
//     nodes that can spare weight.
//  3. Trim: a moved shard goes back home, or is replaced by a lighter shard
//     of its home node, when the bands allow.
//  4. Repair: a node still outside its band exchanges shards with one of the
//     nodes with the most room (one for one, two for one, one for two).
//
// The moves weigh at least LowerBound; granularity costs the rest.

// rebalancer holds the working state of one Solve call. Nodes are
// indexed in name order and shards in number order, and every tie is broken
// by those indexes, which makes the result independent of the input order.
type rebalancer struct {
	tol    float64
	index  map[string]int
	nodes  []rbNode
	shards []rbShard

	total     float64 // weight of all shards
	eps       float64 // weight below which differences are rounding noise
	r0        float64 // input max load/fair; +Inf when a drained node holds weight
	nearEmpty float64

	budget      *rbBudget // nil: unlimited
	bold        bool      // see oversizedHome
	timid       bool      // the bold choice of a home would have differed
	movedCount  int       // shards off their input node
	movedWeight float64   // their weight

	smallQuota []float64 // near-empty shards each node should hold
	taken      []int     // scratch for bestShed
	work       int       // exchanges repair evaluated
}

type rbNode struct {
	name     string
	capacity float64
	drain    bool

	fair   float64 // plain fair share
	target float64 // fair share left once oversized shards have their own node
	lo, hi float64 // the band aimed at; hi never above the input's max ratio
	// dedicated nodes hold an oversized shard or more pinned weight than a
	// fair share: they aim at exactly that and take nothing else.
	dedicated bool

	before float64
	load   float64
	fixed  float64 // pinned and oversized weight: never leaves
	// regular and small list the shards here that may move, by weight then
	// number; small holds the near-empty ones.
	regular, small []int
	smallCount     int     // near-empty shards here, pinned ones included
	sets           []rbSet // cache of sets(), dropped by every move
}

type rbShard struct {
	num       int
	w         float64
	pinned    bool
	small     bool
	oversized bool
	orig, cur int
}

func (r *rebalancer) active(i int) bool { return !r.nodes[i].drain }

// receiver reports whether node i may be given shards.
func (r *rebalancer) receiver(i int) bool { return !r.nodes[i].drain && !r.nodes[i].dedicated }

// init computes weights, the near-empty threshold, fair shares and the
// per-node lists, from the input placement.
func (r *rebalancer) init() {
	weights := make([]float64, 0, len(r.shards))
	for _, s := range r.shards {
		r.total += s.w
		weights = append(weights, s.w)
	}
	r.eps = 1e-9 * r.total
	r.nearEmpty = nearEmptyLimit(weights, r.total)
	for i := range r.shards {
		s := &r.shards[i]
		s.small = s.w <= r.nearEmpty
		n := &r.nodes[s.cur]
		n.load += s.w
		n.before += s.w
		if s.small {
			n.smallCount++
		}
		switch {
		case s.pinned:
			n.fixed += s.w
		case s.small:
			n.small = append(n.small, i)
		default:
			n.regular = append(n.regular, i)
		}
	}
	for i := range r.nodes {
		r.sortList(r.nodes[i].regular)
		r.sortList(r.nodes[i].small)
	}

	capSum := 0.0
	for i, n := range r.nodes {
		if r.active(i) {
			capSum += n.capacity
		}
	}
	r.r0 = 0
	for i := range r.nodes {
		n := &r.nodes[i]
		if r.active(i) {
			n.fair = r.total * n.capacity / capSum
		}
		switch {
		case r.total == 0:
			r.r0 = math.Inf(1)
		case n.drain && n.load > 0:
			r.r0 = math.Inf(1)
		case !n.drain:
			r.r0 = math.Max(r.r0, n.load/n.fair)
		}
	}
}

// nearEmptyLimit returns the near-empty threshold (see NearEmptyFraction).
func nearEmptyLimit(weights []float64, total float64) float64 {
	if total == 0 {
		return 0
	}
	floor := total / float64(len(weights)) / 100
	var loaded []float64
	for _, w := range weights {
		if w >= floor {
			loaded = append(loaded, w)
		}
	}
	sort.Float64s(loaded)
	n := len(loaded)
	median := loaded[n/2]
	if n%2 == 0 {
		median = (loaded[n/2-1] + loaded[n/2]) / 2
	}
	return NearEmptyFraction * median
}

func (r *rebalancer) sortList(list []int) {
	sort.Slice(list, func(a, b int) bool { return r.less(list[a], list[b]) })
}

func (r *rebalancer) less(a, b int) bool {
	sa, sb := &r.shards[a], &r.shards[b]
	if sa.w != sb.w {
		return sa.w < sb.w
	}
	return sa.num < sb.num
}

// listInsert and listRemove keep a node's list sorted.
func (r *rebalancer) listInsert(list []int, s int) []int {
	k := sort.Search(len(list), func(i int) bool { return r.less(s, list[i]) })
	list = append(list, 0)
	copy(list[k+1:], list[k:])
	list[k] = s
	return list
}

func (r *rebalancer) listRemove(list []int, s int) []int {
	k := sort.Search(len(list), func(i int) bool { return !r.less(list[i], s) })
	return append(list[:k], list[k+1:]...)
}

// atLeast returns the index of the first shard of list weighing w or more.
func (r *rebalancer) atLeast(list []int, w float64) int {
	return sort.Search(len(list), func(i int) bool { return r.shards[list[i]].w >= w })
}

// above returns the index of the first shard of list weighing more than w.
func (r *rebalancer) above(list []int, w float64) int {
	return sort.Search(len(list), func(i int) bool { return r.shards[list[i]].w > w })
}

// move puts shard s on node to, keeping loads and lists current.
func (r *rebalancer) move(s, to int) {
	sh := &r.shards[s]
	from := sh.cur
	if from == to {
		return
	}
	dm, dw := r.delta(s, to)
	r.movedCount += dm
	r.movedWeight += dw
	f, t := &r.nodes[from], &r.nodes[to]
	f.sets, t.sets = nil, nil
	f.load -= sh.w
	t.load += sh.w
	sh.cur = to
	switch {
	case sh.pinned || sh.oversized:
		f.fixed -= sh.w
		t.fixed += sh.w
	case sh.small:
		f.small = r.listRemove(f.small, s)
		t.small = r.listInsert(t.small, s)
	default:
		f.regular = r.listRemove(f.regular, s)
		t.regular = r.listInsert(t.regular, s)
	}
	if sh.small {
		f.smallCount--
		t.smallCount++
	}
}

func (r *rebalancer) placement() []int {
	out := make([]int, len(r.shards))
	for i, s := range r.shards {
		out[i] = s.cur
	}
	return out
}

// solve computes the placement. Without a budget, near-empty shards are
// spread first so that the weight balancing that follows accounts for them;
// with one, they come last, being the least important.
func (r *rebalancer) solve() {
	r.targets()
	r.quotas()
	if len(r.shards) == 0 {
		return
	}
	if r.budget == nil {
		r.spreadSmall()
		r.balance()
		// Again: the most loaded nodes could take none before they shed.
		r.spreadSmall()
	}
	r.balance()
	r.trim()
	if r.repair() {
		r.trim()
	}
	if r.budget != nil {
		r.spreadSmall()
		return
	}
	// Nodes still above their bands are beyond what the tolerance allows:
	// lower the worst of them even past the bands of others.
	r.lowerMax(false)
}

// targets sets every node's target and band. A shard that fits in no node's
// band cannot be balanced away: it gets a node of its own (the one where it
// weighs least against the node's capacity, preferring where it already is),
// and the others share the remaining weight. The same goes for a node whose
// pinned weight alone exceeds its band.
func (r *rebalancer) targets() {
	rest, restCap, free := r.total, 0.0, 0
	for i, n := range r.nodes {
		if r.active(i) {
			restCap += n.capacity
			free++
		}
	}
	// By weight then number, so the heaviest candidate is found in order.
	order := make([]int, 0, len(r.shards))
	for i, s := range r.shards {
		if !s.pinned && !s.small {
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return r.shards[order[a]].w > r.shards[order[b]].w })
	home := map[int]int{} // oversized shard -> its node
	for free > 1 {
		for i := range r.nodes {
			n := &r.nodes[i]
			if r.receiver(i) {
				n.target = rest * n.capacity / restCap
				n.lo, n.hi = n.target*(1-r.tol), n.target*(1+r.tol)
			}
		}
		// A node pinned above its band aims at its pinned weight.
		worst, worstRatio := -1, 0.0
		for i, n := range r.nodes {
			if r.receiver(i) && n.fixed > n.hi+r.eps && n.fixed/n.target > worstRatio {
				worst, worstRatio = i, n.fixed/n.target
			}
		}
		if worst >= 0 {
			n := &r.nodes[worst]
			n.dedicated, n.target = true, n.fixed
			rest -= n.fixed
			restCap -= n.capacity
			free--
			continue
		}
		// The heaviest shard that may move: if it fits in no band, it is
		// oversized; the lighter ones then fit wherever it would.
		if len(home) == len(order) {
			break
		}
		s := order[len(home)]
		sh := &r.shards[s]
		fits := false
		for i, n := range r.nodes {
			if r.receiver(i) && n.fixed+sh.w <= n.hi+r.eps {
				fits = true
				break
			}
		}
		if fits {
			break
		}
		h := r.oversizedHome(s)
		n := &r.nodes[h]
		home[s] = h
		if n.dedicated {
			// Stays with another oversized shard, as in the input.
			n.target += sh.w
			rest -= sh.w
			continue
		}
		n.dedicated = true
		n.target = n.fixed + sh.w
		rest -= n.target
		restCap -= n.capacity
		free--
	}
	if free == 1 {
		for i := range r.nodes {
			n := &r.nodes[i]
			if r.receiver(i) {
				n.target = rest
				n.lo, n.hi = n.target*(1-r.tol), n.target*(1+r.tol)
			}
		}
	}
	for _, s := range order[:len(home)] {
		sh := &r.shards[s]
		from := &r.nodes[sh.cur]
		from.regular = r.listRemove(from.regular, s)
		from.fixed += sh.w
		sh.oversized = true
		if r.affordsMove(s, home[s]) {
			r.move(s, home[s])
		}
	}
	for i := range r.nodes {
		n := &r.nodes[i]
		switch {
		case n.drain:
			n.target, n.lo, n.hi = 0, 0, 0
		case n.dedicated:
			n.lo, n.hi = n.target, n.target
		case !math.IsInf(r.r0, 1):
			// Never push a node above the input's worst ratio: the result
			// must not be less balanced than the input.
			n.hi = math.Min(n.hi, r.r0*n.fair)
		}
	}
}

// viol is how far load lies outside node i's band.
func (r *rebalancer) viol(i int, load float64) float64 {
	n := &r.nodes[i]
	return math.Max(0, load-n.hi) + math.Max(0, n.lo-load)
}

// gain is how much moving shard s to node to reduces the summed distance of
// the nodes from their bands.
func (r *rebalancer) gain(s, to int) float64 {
	sh := &r.shards[s]
	from := sh.cur
	lf, lt := r.nodes[from].load, r.nodes[to].load
	return r.viol(from, lf) + r.viol(to, lt) - r.viol(from, lf-sh.w) - r.viol(to, lt+sh.w)
}

// ratio is node i's load against its fair share, for tie-breaking.
func (r *rebalancer) ratio(i int, load float64) float64 {
	if f := r.nodes[i].fair; f > 0 {
		return load / f
	}
	return 0
}

// smallBounds returns how many near-empty shards node i should hold.
func (r *rebalancer) smallBounds(i int) (lo, hi int) {
	q := r.smallQuota[i]
	return int(math.Floor(q + 1e-9)), int(math.Ceil(q - 1e-9))
}

func (r *rebalancer) smallViol(i, count int) int {
	lo, hi := r.smallBounds(i)
	return max(0, count-hi) + max(0, lo-count)
}

// quotas shares the near-empty shards among the nodes that take shards, by
// capacity.
func (r *rebalancer) quotas() {
	r.smallQuota = make([]float64, len(r.nodes))
	count, capSum := 0, 0.0
	for i, n := range r.nodes {
		count += n.smallCount
		if r.receiver(i) {
			capSum += n.capacity
		}
	}
	for i, n := range r.nodes {
		if r.receiver(i) {
			r.smallQuota[i] = float64(count) * n.capacity / capSum
		}
	}
}

// spreadSmall moves near-empty shards, lightest first, until every node
// holds its capacity-weighted share of them, rounded either way.
func (r *rebalancer) spreadSmall() {
	for {
		excess := false
		for i, n := range r.nodes {
			if _, hi := r.smallBounds(i); len(n.small) > 0 && n.smallCount > hi {
				excess = true
				break
			}
		}
		src := -1
		for i, n := range r.nodes {
			lo, hi := r.smallBounds(i)
			if len(n.small) == 0 || n.smallCount <= lo || (excess && n.smallCount <= hi) {
				continue
			}
			if src < 0 || r.smallKey(i) > r.smallKey(src) ||
				(r.smallKey(i) == r.smallKey(src) && r.ratio(i, n.load) > r.ratio(src, r.nodes[src].load)) {
				src = i
			}
		}
		if src < 0 {
			return
		}
		s := r.nodes[src].small[0]
		w := r.shards[s].w
		dst := -1
		for i, n := range r.nodes {
			lo, hi := r.smallBounds(i)
			if i == src || !r.receiver(i) || n.smallCount >= hi || (!excess && n.smallCount >= lo) {
				continue
			}
			if n.load+w > r.r0*n.fair+r.eps {
				continue
			}
			if dst < 0 || r.smallKey(i) < r.smallKey(dst) ||
				(r.smallKey(i) == r.smallKey(dst) && r.ratio(i, n.load) < r.ratio(dst, r.nodes[dst].load)) {
				dst = i
			}
		}
		if dst < 0 || !r.affordsMove(s, dst) {
			return
		}
		r.move(s, dst)
	}
}

func (r *rebalancer) smallKey(i int) float64 {
	return float64(r.nodes[i].smallCount) - r.smallQuota[i]
}

// balance moves regular shards until every node is within its band or no
// single move brings the nodes closer to their bands. Drained nodes are
// emptied first, then the node furthest above its band sheds, then the node
// furthest below is filled.
func (r *rebalancer) balance() {
	stuck := make([]bool, len(r.nodes))
	limit := 4*len(r.shards) + 4*len(r.nodes) + 100
	for iter := 0; iter < limit; iter++ {
		if a := r.worstOver(stuck); a >= 0 {
			if r.shed(a) {
				clear(stuck)
			} else {
				stuck[a] = true
			}
			continue
		}
		if b := r.worstUnder(stuck); b >= 0 {
			if r.fill(b) {
				clear(stuck)
			} else {
				stuck[b] = true
			}
			continue
		}
		return
	}
}

func (r *rebalancer) worstOver(stuck []bool) int {
	best, bestKey := -1, 0.0
	for i, n := range r.nodes {
		if stuck[i] || len(n.regular) == 0 || n.load <= n.hi+r.eps {
			continue
		}
		key := (n.load - n.hi) / n.fair
		if n.drain {
			key = math.Inf(1)
		}
		if best < 0 || key > bestKey {
			best, bestKey = i, key
		}
	}
	return best
}

func (r *rebalancer) worstUnder(stuck []bool) int {
	best, bestKey := -1, 0.0
	for i, n := range r.nodes {
		if stuck[i] || !r.receiver(i) || n.load >= n.lo-r.eps {
			continue
		}
		if key := (n.lo - n.load) / n.fair; best < 0 || key > bestKey {
			best, bestKey = i, key
		}
	}
	return best
}

// gaps returns the summed surpluses above and deficits below the bands.
func (r *rebalancer) gaps() (surplus, deficit float64) {
	for _, n := range r.nodes {
		surplus += math.Max(0, n.load-n.hi)
		deficit += math.Max(0, n.lo-n.load)
	}
	return surplus, deficit
}

// shed moves one shard off node a, which is above its band.
func (r *rebalancer) shed(a int) bool {
	n := &r.nodes[a]
	if n.drain {
		// Heaviest first, as long as the budget allows.
		k := r.above(n.regular, r.weightLeft()) - 1
		if k < 0 {
			return false
		}
		s := n.regular[k]
		b := r.pickReceiver(r.shards[s].w, a, true)
		if !r.affordsMove(s, b) {
			return false
		}
		r.move(s, b)
		return true
	}
	maxRoom := 0.0
	for b, m := range r.nodes {
		if b != a && r.receiver(b) {
			maxRoom = math.Max(maxRoom, m.hi-m.load)
		}
	}
	list := n.regular[:r.above(n.regular, math.Min(maxRoom+r.eps, r.weightLeft()))]
	if maxRoom <= r.eps || len(list) == 0 {
		return false
	}
	e := n.load - n.hi
	var s int
	if surplus, deficit := r.gaps(); deficit > surplus+r.eps {
		// Receivers need more than the surplus: weight shed beyond it is
		// not wasted, so prefer fewer, larger shards.
		upper := e + math.Min(n.hi-n.lo, deficit-surplus)
		k := r.atLeast(list, e)
		switch j := r.above(list, upper+r.eps) - 1; {
		case j >= k:
			s = list[j]
		case k > 0:
			s = list[k-1]
		default:
			s = list[0]
		}
	} else {
		s = r.bestShed(list, e)
	}
	b := r.pickReceiver(r.shards[s].w, a, false)
	if b < 0 || r.gain(s, b) <= r.eps || !r.affordsMove(s, b) {
		return false
	}
	r.move(s, b)
	return true
}

// bestShed picks the first shard of a light set of list weighing at least
// e. The candidates are the lightest single shard heavy enough, the lightest
// pair, and a heaviest-first fill of lighter shards; a set with more shards
// must save at least 1% of e per extra move to be preferred.
func (r *rebalancer) bestShed(list []int, e float64) int {
	k := r.atLeast(list, e)
	if k == 0 {
		return list[0]
	}
	penalty := 0.01 * e
	if r.scarceMoves() {
		penalty = math.Inf(1)
	}
	best, bestCost := list[k-1], math.Inf(1)
	if k < len(list) {
		best, bestCost = list[k], r.shards[list[k]].w
	}
	// Pairs: for each shard, the lightest heavier partner covering the
	// rest; partners only get heavier as the first gets lighter.
	for j := k - 2; j >= 0; j-- {
		wj := r.shards[list[j]].w
		p := max(r.atLeast(list, e-wj), j+1)
		if p >= k {
			break
		}
		if c := wj + r.shards[list[p]].w + penalty; c < bestCost-r.eps {
			best, bestCost = list[p], c
		}
	}
	if math.IsInf(bestCost, 1) {
		// Neither a single shard nor a pair covers e: the fill below
		// starts with the heaviest shard, so no need to compute it.
		return list[k-1]
	}
	rem, taken := e, 0
	r.taken = r.taken[:0]
	for j := k - 1; j >= 0 && rem > r.eps; j-- {
		if w := r.shards[list[j]].w; w <= rem+r.eps {
			rem -= w
			taken++
			r.taken = append(r.taken, j)
		}
	}
	combo := e - rem
	if rem > r.eps {
		// Finish with the lightest shard not taken that covers the rest.
		finish := math.Inf(1)
		for j := r.atLeast(list, rem); j < len(list); j++ {
			if !containsInt(r.taken, j) {
				finish = r.shards[list[j]].w
				break
			}
		}
		combo += finish
		taken++
	}
	if combo+float64(taken-1)*penalty < bestCost-r.eps {
		return list[k-1]
	}
	return best
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// pickReceiver chooses where a shard of weight w leaving node a goes: the
// node below its band whose deficit it fills best, else the node below its
// band with the largest deficit, else the least loaded node with room. With
// force (draining), a node without room is taken when none has room.
func (r *rebalancer) pickReceiver(w float64, a int, force bool) int {
	fit, fitDef := -1, math.Inf(1)
	big, bigDef := -1, 0.0
	roomy, roomyRatio := -1, math.Inf(1)
	for b, n := range r.nodes {
		if b == a || !r.receiver(b) || n.load+w > n.hi+r.eps {
			continue
		}
		if d := n.lo - n.load; d > r.eps {
			if d >= w-r.eps && d < fitDef {
				fit, fitDef = b, d
			}
			if d > bigDef {
				big, bigDef = b, d
			}
		}
		if q := r.ratio(b, n.load); q < roomyRatio {
			roomy, roomyRatio = b, q
		}
	}
	switch {
	case fit >= 0:
		return fit
	case big >= 0:
		return big
	case roomy >= 0 || !force:
		return roomy
	}
	best, bestRatio := -1, math.Inf(1)
	for b, n := range r.nodes {
		if b == a || !r.active(b) || (n.dedicated && r.freeNodes() > 0) {
			continue
		}
		if q := r.ratio(b, n.load+w); best < 0 || q < bestRatio {
			best, bestRatio = b, q
		}
	}
	return best
}

func (r *rebalancer) freeNodes() int {
	c := 0
	for i := range r.nodes {
		if r.receiver(i) {
			c++
		}
	}
	return c
}

// fill moves one shard onto node b, which is below its band, from a node
// that can spare it without falling below its own band.
func (r *rebalancer) fill(b int) bool {
	n := &r.nodes[b]
	d, room := n.lo-n.load, n.hi-n.load
	best, bestW, bestSlack := -1, 0.0, 0.0
	covers := false
	for a, g := range r.nodes {
		slack := g.load - g.lo
		if a == b || g.drain || slack <= r.eps || len(g.regular) == 0 {
			continue
		}
		lim := math.Min(math.Min(room, slack), r.weightLeft())
		slackRatio := slack / g.fair
		// The lightest shard covering the deficit ...
		if k := r.atLeast(g.regular, d); k < len(g.regular) {
			if w := r.shards[g.regular[k]].w; w <= lim+r.eps {
				if !covers || w < bestW || (w == bestW && slackRatio > bestSlack) {
					best, bestW, bestSlack, covers = g.regular[k], w, slackRatio, true
				}
				continue
			}
		}
		if covers {
			continue
		}
		// ... else the heaviest one that does not.
		if j := r.above(g.regular, math.Min(d, lim)+r.eps) - 1; j >= 0 {
			if w := r.shards[g.regular[j]].w; w > bestW || (w == bestW && slackRatio > bestSlack) {
				best, bestW, bestSlack = g.regular[j], w, slackRatio
			}
		}
	}
	if best < 0 || r.gain(best, b) <= r.eps || !r.affordsMove(best, b) {
		return false
	}
	r.move(best, b)
	return true
}

// oversizedHome chooses the node for oversized shard s: the free node where
// it weighs least against the node's fair share, but only where it fits
// under the input's worst ratio even if nothing else leaves that node, and
// its current node unless another is better by more than the tolerance.
//
// With bold set, the condition on the input's worst ratio is dropped: the
// node's other shards are then expected to leave. Solve tries that
// variant when it differs, and keeps it only if it ends clearly better and
// no worse than the input.
func (r *rebalancer) oversizedHome(s int) int {
	sh := &r.shards[s]
	ratio := func(i int) float64 { return (r.nodes[i].fixed + sh.w) / r.nodes[i].fair }
	pick := func(bold bool) int {
		best := -1
		for i, n := range r.nodes {
			if !r.receiver(i) || (!bold && i != sh.cur && n.load+sh.w > r.r0*n.fair+r.eps) {
				continue
			}
			if best < 0 || ratio(i) < ratio(best) {
				best = i
			}
		}
		if best < 0 || (r.receiver(sh.cur) && ratio(sh.cur) <= ratio(best)*(1+r.tol)) {
			return sh.cur
		}
		return best
	}
	home := pick(r.bold)
	if !r.bold && pick(true) != home {
		r.timid = true
	}
	return home
}
