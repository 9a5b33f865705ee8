package rebalance

import "math"

// rbBudget caps what a rebalance may move; zero fields are unlimited.
type rbBudget struct {
	moves  int
	weight float64
}

// delta is how moving shard s to node to changes the number of moved
// shards and the weight moved, both counted against the input placement.
func (r *rebalancer) delta(s, to int) (int, float64) {
	sh := &r.shards[s]
	switch {
	case sh.cur == to:
		return 0, 0
	case sh.cur == sh.orig:
		return 1, sh.w
	case to == sh.orig:
		return -1, -sh.w
	}
	return 0, 0
}

// affords reports whether the budget allows dMoves more moved shards and
// dWeight more weight moved.
func (r *rebalancer) affords(dMoves int, dWeight float64) bool {
	b := r.budget
	if b == nil {
		return true
	}
	if b.moves > 0 && r.movedCount+dMoves > b.moves {
		return false
	}
	return b.weight == 0 || r.movedWeight+dWeight <= b.weight*(1+1e-12)
}

// affordsMove is affords for moving shard s to node to.
func (r *rebalancer) affordsMove(s, to int) bool {
	dm, dw := r.delta(s, to)
	return r.affords(dm, dw)
}

// weightLeft is the weight the budget still allows, +Inf without one.
func (r *rebalancer) weightLeft() float64 {
	if r.budget == nil || r.budget.weight == 0 {
		return math.Inf(1)
	}
	return r.budget.weight*(1+1e-12) - r.movedWeight
}

// scarceMoves says a move budget is set: fewer, heavier moves then beat
// lighter sets of several.
func (r *rebalancer) scarceMoves() bool { return r.budget != nil && r.budget.moves > 0 }

// rbScore ranks placements under a budget, most important first: weight
// left on drained nodes, the highest load/fair ratio, the summed distance to
// the bands, the near-empty spread, then weight moved and moves.
type rbScore struct {
	drained, maxRatio, dist float64
	small                   int
	moved                   float64
	moves                   int
}

func (r *rebalancer) score(place []int) rbScore {
	load := make([]float64, len(r.nodes))
	small := make([]int, len(r.nodes))
	var sc rbScore
	for i, s := range r.shards {
		load[place[i]] += s.w
		if s.small {
			small[place[i]]++
		}
		if place[i] != s.orig {
			sc.moved += s.w
			sc.moves++
		}
	}
	for i, n := range r.nodes {
		switch {
		case n.drain:
			sc.drained += load[i]
		case n.fair > 0:
			sc.maxRatio = math.Max(sc.maxRatio, load[i]/n.fair)
		}
		sc.dist += r.viol(i, load[i])
		sc.small += r.smallViol(i, small[i])
	}
	return sc
}

// better reports whether sc ranks before o.
func (r *rebalancer) better(sc, o rbScore) bool {
	close := func(a, b, eps float64) bool { return math.Abs(a-b) <= eps }
	switch {
	case !close(sc.drained, o.drained, r.eps):
		return sc.drained < o.drained
	case !close(sc.maxRatio, o.maxRatio, 1e-9*math.Max(sc.maxRatio, o.maxRatio)):
		return sc.maxRatio < o.maxRatio
	case !close(sc.dist, o.dist, r.eps):
		return sc.dist < o.dist
	case sc.small != o.small:
		return sc.small < o.small
	case !close(sc.moved, o.moved, r.eps):
		return sc.moved < o.moved
	}
	return sc.moves < o.moves
}

// reaches reports whether sc meets everything the unlimited placement
// full meets: drained nodes empty, bands as close, near-empty spread as even.
func (r *rebalancer) reaches(sc, full rbScore) bool {
	return sc.drained <= r.eps && sc.dist <= full.dist+r.eps && sc.small <= full.small
}

// replay rebuilds the unlimited placement from the input one move at a time,
// best first, while the moves fit the budget: moves emptying drained nodes,
// then those reducing the distance to the bands most for their cost, then
// the spreading of near-empty shards. The cost of a move is the larger of
// its shares of the two budgets, so that a weight budget favours light
// moves and a move budget heavy ones.
func (r *rebalancer) replay(final []int, b rbBudget) []int {
	for i := range r.shards {
		r.move(i, r.shards[i].orig)
	}
	r.budget = &b
	defer func() { r.budget = nil }()
	var todo []int
	for i, s := range r.shards {
		if final[i] != s.cur {
			todo = append(todo, i)
		}
	}
	cost := func(w float64) float64 {
		c := 0.0
		if b.weight > 0 {
			c = w / b.weight
		}
		if b.moves > 0 {
			c = math.Max(c, 1/float64(b.moves))
		}
		return c
	}
	for {
		best, bestTier, bestScore, bestGain := -1, 0, 0.0, 0.0
		for _, s := range todo {
			sh := &r.shards[s]
			to := final[s]
			if sh.cur == to || !r.affordsMove(s, to) {
				continue
			}
			if t := &r.nodes[to]; t.load+sh.w > r.r0*t.fair+r.eps {
				continue
			}
			g := r.gain(s, to)
			var tier int
			var score float64
			switch {
			case r.nodes[sh.cur].drain:
				tier = 0
			case g > r.eps:
				tier = 1
			case sh.small && g >= -r.eps && r.smallGain(s, to) > 0:
				tier, score = 2, -sh.w
			default:
				continue
			}
			if tier < 2 {
				if c := cost(sh.w); c > 0 {
					score = g / c
				} else {
					score = math.Inf(1)
				}
			}
			if best < 0 || tier < bestTier || (tier == bestTier && (score > bestScore || (score == bestScore && g > bestGain))) {
				best, bestTier, bestScore, bestGain = s, tier, score, g
			}
		}
		if best < 0 {
			return r.placement()
		}
		r.move(best, final[best])
	}
}

func (r *rebalancer) smallGain(s, to int) int {
	from := r.shards[s].cur
	cf, ct := r.nodes[from].smallCount, r.nodes[to].smallCount
	return r.smallViol(from, cf) + r.smallViol(to, ct) - r.smallViol(from, cf-1) - r.smallViol(to, ct+1)
}

// lowerMax lowers the highest load: while the most loaded node (a drained
// one first) is above its band, it moves the shard, to the node, that leaves
// the higher of the two lowest, as long as that is below where the most
// loaded node was. With leastOnly, the node receiving is always the least
// loaded one. It is a budget strategy, where every move must count, and the
// last phase without a budget, for nodes that shard sizes keep above their
// bands.
func (r *rebalancer) lowerMax(leastOnly bool) {
	for iter := 0; iter < 4*len(r.shards)+100; iter++ {
		a, aRatio := -1, 0.0
		for i, n := range r.nodes {
			if len(n.regular) == 0 && !(n.drain && len(n.small) > 0) {
				continue
			}
			q := math.Inf(1)
			if !n.drain {
				if n.load <= n.hi+r.eps {
					continue
				}
				q = n.load / n.fair
			}
			if a < 0 || q > aRatio {
				a, aRatio = i, q
			}
		}
		if a < 0 {
			return
		}
		an := &r.nodes[a]
		list := an.regular
		if an.drain && len(list) == 0 {
			list = an.small
		}
		list = list[:r.above(list, r.weightLeft())]
		least := -1
		for i, n := range r.nodes {
			if i != a && r.receiver(i) && (least < 0 || n.load/n.fair < r.nodes[least].load/r.nodes[least].fair) {
				least = i
			}
		}
		best, bestTo, bestMax := -1, -1, aRatio
		for b, bn := range r.nodes {
			if b == a || !r.receiver(b) || (leastOnly && b != least) {
				continue
			}
			// The weight that would leave a and b at the same ratio.
			ideal := math.Inf(1)
			if !an.drain {
				ideal = (an.load*bn.fair - bn.load*an.fair) / (an.fair + bn.fair)
			}
			k := r.atLeast(list, ideal)
			for _, j := range []int{k - 1, k} {
				if j < 0 || j >= len(list) {
					continue
				}
				w := r.shards[list[j]].w
				m := (bn.load + w) / bn.fair
				if !an.drain {
					m = math.Max(m, (an.load-w)/an.fair)
				}
				if (m < bestMax*(1-1e-12) || (an.drain && best < 0)) && bn.load+w <= r.r0*bn.fair+r.eps && r.affordsMove(list[j], b) {
					best, bestTo, bestMax = list[j], b, m
				}
			}
		}
		if best < 0 {
			return
		}
		r.move(best, bestTo)
	}
}
