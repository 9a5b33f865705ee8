package rebalance

import (
	"math"
	"sort"
)

// trim takes back moves the bands do not need, heaviest first: a moved
// shard returns home when that leaves every node as close to its band, or
// is swapped for a lighter shard of its home node that does the same job.
func (r *rebalancer) trim() {
	var moved []int
	for i, s := range r.shards {
		if s.cur != s.orig && !s.small && !s.oversized && !r.nodes[s.orig].drain {
			moved = append(moved, i)
		}
	}
	sort.SliceStable(moved, func(a, b int) bool { return r.shards[moved[a]].w > r.shards[moved[b]].w })
	for _, x := range moved {
		sh := &r.shards[x]
		o, c := sh.orig, sh.cur
		if o == c {
			continue
		}
		on, cn := &r.nodes[o], &r.nodes[c]
		if on.load+sh.w <= on.hi+r.eps && r.gain(x, o) >= -r.eps {
			r.move(x, o)
			continue
		}
		// Replacing x by y shifts w(x)-w(y) back onto o.
		shift := math.Min(on.hi-on.load, cn.load-cn.lo)
		if shift <= r.eps {
			continue
		}
		for j := r.atLeast(on.regular, sh.w-shift); j < len(on.regular); j++ {
			y := on.regular[j]
			if r.shards[y].w >= sh.w {
				break
			}
			if r.shards[y].orig != o {
				continue
			}
			before := r.viol(o, on.load) + r.viol(c, cn.load)
			r.move(x, o)
			r.move(y, c)
			if r.viol(o, on.load)+r.viol(c, cn.load) > before+r.eps || on.load > on.hi+r.eps {
				r.move(y, o)
				r.move(x, c)
				continue
			}
			break
		}
	}
}

// repair works on nodes still outside their bands once no plain move
// helps: it exchanges shards between such a node and another one, a
// heavier set going one way and a lighter one coming back (see
// bestExchange). It tries the partners with the most room (or the most to
// spare) first and stops after a fixed amount of work, so it stays fast
// however many nodes miss their bands. It reports whether it changed
// anything.
func (r *rebalancer) repair() bool {
	changed := false
	stuck := make([]bool, len(r.nodes))
	r.work = 0
	partners := make([]int, 0, rbRepairPartners)
	for r.work < rbRepairWork {
		x, worst := -1, 0.0
		for i, n := range r.nodes {
			if stuck[i] || n.drain || r.viol(i, n.load) <= r.eps {
				continue
			}
			if v := r.viol(i, n.load) / n.fair; v > worst {
				x, worst = i, v
			}
		}
		if x < 0 {
			return changed
		}
		over := r.nodes[x].load > r.nodes[x].hi
		// Room to take weight for an overloaded x, weight to spare for an
		// underloaded one.
		spare := func(p int) float64 {
			if n := &r.nodes[p]; over {
				return n.hi - n.load
			} else {
				return n.load - n.lo
			}
		}
		// The partners with the most spare, by spare then index.
		partners = partners[:0]
		for p := range r.nodes {
			if p == x || !r.active(p) || (over && !r.receiver(p)) || (!over && len(r.nodes[p].regular)+len(r.nodes[p].small) == 0) {
				continue
			}
			sp := spare(p)
			k := len(partners)
			for k > 0 && spare(partners[k-1]) < sp {
				k--
			}
			if k >= rbRepairPartners {
				continue
			}
			if len(partners) < rbRepairPartners {
				partners = append(partners, 0)
			}
			copy(partners[k+1:], partners[k:])
			partners[k] = p
		}
		var best rbExchange
		for _, p := range partners {
			var c rbExchange
			if over {
				c = r.bestExchange(x, p)
			} else {
				c = r.bestExchange(p, x)
			}
			if c.better(&best) {
				best = c
			}
		}
		if best.gain <= r.eps {
			stuck[x] = true
			continue
		}
		for _, a := range best.give {
			r.move(a, best.dst)
		}
		for _, b := range best.take {
			r.move(b, best.src)
		}
		changed = true
		clear(stuck)
	}
	return changed
}

const (
	// rbRepairPartners is how many partners repair tries per node.
	rbRepairPartners = 16
	// rbRepairWork bounds the exchanges repair evaluates in one call.
	rbRepairWork = 20_000_000
)

// rbExchange sends the shards give from src to dst and brings the shards
// take back.
type rbExchange struct {
	give, take []int
	src, dst   int
	gain, cost float64
	moves      int
}

func (c *rbExchange) better(o *rbExchange) bool {
	switch {
	case c.gain != o.gain:
		return c.gain > o.gain
	case c.cost != o.cost:
		return c.cost < o.cost
	}
	return c.moves < o.moves
}

// rbPairLimit bounds the nodes whose shards repair combines two by two, so
// that its work stays quadratic in small nodes only.
const rbPairLimit = 48

// rbSet is one or two shards of a node, with their total weight.
type rbSet struct {
	s []int
	w float64
}

// sets lists node i's movable shards alone and, on small nodes, in pairs,
// by weight.
func (r *rebalancer) sets(i int) []rbSet {
	if c := r.nodes[i].sets; c != nil {
		return c
	}
	list := r.movable(i)
	out := make([]rbSet, 0, len(list))
	for k := range list {
		out = append(out, rbSet{s: list[k : k+1], w: r.shards[list[k]].w})
	}
	if len(list) <= rbPairLimit {
		for a := range list {
			for b := a + 1; b < len(list); b++ {
				out = append(out, rbSet{s: []int{list[a], list[b]}, w: r.shards[list[a]].w + r.shards[list[b]].w})
			}
		}
	}
	// By weight, ties by shard numbers, so the order never depends on how
	// the node's lists came to be.
	sort.Slice(out, func(a, b int) bool {
		x, y := out[a], out[b]
		if x.w != y.w {
			return x.w < y.w
		}
		if sx, sy := r.shards[x.s[0]].num, r.shards[y.s[0]].num; sx != sy {
			return sx < sy
		}
		return len(x.s) < len(y.s) || (len(x.s) == 2 && len(y.s) == 2 && r.shards[x.s[1]].num < r.shards[y.s[1]].num)
	})
	r.nodes[i].sets = out
	return out
}

// movable lists every shard of node i that may move, by weight.
func (r *rebalancer) movable(i int) []int {
	n := &r.nodes[i]
	if len(n.small) == 0 {
		return n.regular
	}
	list := append(append([]int(nil), n.regular...), n.small...)
	r.sortList(list)
	return list
}

// bestExchange finds the exchange between src and dst that brings both
// closest to their bands, then moves the least weight, then the fewest
// shards. It tries a shard or two against nothing, one or two back, and a
// single shard against as many lighter ones as it takes.
func (r *rebalancer) bestExchange(src, dst int) rbExchange {
	sn, dn := &r.nodes[src], &r.nodes[dst]
	before := r.viol(src, sn.load) + r.viol(dst, dn.load)
	// The shift that puts both nodes in their bands, or as near as can be.
	lo := math.Max(sn.load-sn.hi, dn.lo-dn.load)
	hi := math.Min(sn.load-sn.lo, dn.hi-dn.load)
	fits := hi >= lo
	if !fits {
		lo = (lo + hi) / 2
	}
	give, take := r.sets(src), r.sets(dst)
	var best, c rbExchange
	consider := func(g []int, gw float64, t []int, tw float64) {
		// dst may end above its band if the nodes end closer to their bands
		// in sum, but never above the input's worst ratio.
		d := gw - tw
		if d <= 0 || dn.load+d > r.r0*dn.fair+r.eps {
			return
		}
		// Near-empty shards may take part when their spread stays as good.
		if shift := r.smallIn(g) - r.smallIn(t); shift != 0 {
			cs, cd := sn.smallCount, dn.smallCount
			if r.smallViol(src, cs-shift)+r.smallViol(dst, cd+shift) > r.smallViol(src, cs)+r.smallViol(dst, cd) {
				return
			}
		}
		c = rbExchange{give: g, take: t, src: src, dst: dst, moves: len(g) + len(t)}
		c.gain = before - r.viol(src, sn.load-d) - r.viol(dst, dn.load+d)
		dMoves := 0
		for _, a := range g {
			dm, dw := r.delta(a, dst)
			dMoves += dm
			c.cost += dw
		}
		for _, b := range t {
			dm, dw := r.delta(b, src)
			dMoves += dm
			c.cost += dw
		}
		if c.better(&best) && r.affords(dMoves, c.cost) {
			best = c
			best.give = append([]int(nil), g...)
			best.take = append([]int(nil), t...)
		}
	}
	r.work += len(give)
	back := r.nodes[dst].regular
	var fill []int
	for _, g := range give {
		consider(g.s, g.w, nil, 0)
		// The take sets whose weight leaves a shift near [lo, hi].
		k := sort.Search(len(take), func(i int) bool { return take[i].w >= g.w-math.Max(hi, lo) })
		for j := max(k-1, 0); j <= k+2 && j < len(take); j++ {
			if len(g.s)+len(take[j].s) <= 3 {
				consider(g.s, g.w, take[j].s, take[j].w)
			}
		}
		// One shard against a heaviest-first fill of lighter ones that lands
		// the shift in [lo, hi].
		if len(g.s) == 1 && fits && g.w-hi > 0 {
			need, limit := g.w-hi, g.w-lo
			fill, sum := fill[:0], 0.0
			r.work += len(back)
			for j := r.above(back, limit) - 1; j >= 0 && sum < need; j-- {
				if w := r.shards[back[j]].w; sum+w <= limit {
					fill = append(fill, back[j])
					sum += w
				}
			}
			if sum >= need && len(fill) > 2 {
				consider(g.s, g.w, fill, sum)
			}
		}
	}
	return best
}

func (r *rebalancer) smallIn(set []int) int {
	n := 0
	for _, s := range set {
		if r.shards[s].small {
			n++
		}
	}
	return n
}
