package planner

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
// heavier set going one way and a lighter one coming back (one for one, two
// for one, one for two, or a plain move). It tries the partners with the
// most room (or the most to spare) first and stops after a fixed amount of
// work, so it stays fast however many nodes miss their bands. It reports
// whether it changed anything.
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
			if c.better(best) {
				best = c
			}
		}
		if best.gain <= r.eps {
			stuck[x] = true
			continue
		}
		for _, a := range best.give {
			if a >= 0 {
				r.move(a, best.dst)
			}
		}
		for _, b := range best.take {
			if b >= 0 {
				r.move(b, best.src)
			}
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
// take back; -1 marks an unused slot.
type rbExchange struct {
	give, take [2]int
	src, dst   int
	gain, cost float64
	moves      int
}

func (c rbExchange) better(o rbExchange) bool {
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
	s [2]int
	w float64
}

// sets lists node i's movable shards alone and, on small nodes, in pairs,
// by weight.
func (r *rebalancer) sets(i int) []rbSet {
	if c := r.nodes[i].sets; c != nil {
		return c
	}
	list := r.nodes[i].regular
	if small := r.nodes[i].small; len(small) > 0 {
		list = append(append([]int(nil), list...), small...)
		r.sortList(list)
	}
	out := make([]rbSet, 0, len(list))
	for _, s := range list {
		out = append(out, rbSet{s: [2]int{s, -1}, w: r.shards[s].w})
	}
	if len(list) <= rbPairLimit {
		for a := range list {
			for b := a + 1; b < len(list); b++ {
				out = append(out, rbSet{s: [2]int{list[a], list[b]}, w: r.shards[list[a]].w + r.shards[list[b]].w})
			}
		}
	}
	// By weight, ties by shard numbers, so the order never depends on how
	// the node's lists came to be.
	sort.Slice(out, func(a, b int) bool {
		if out[a].w != out[b].w {
			return out[a].w < out[b].w
		}
		if sa, sb := r.shards[out[a].s[0]].num, r.shards[out[b].s[0]].num; sa != sb {
			return sa < sb
		}
		return out[a].s[1] < out[b].s[1]
	})
	r.nodes[i].sets = out
	return out
}

// bestExchange finds the exchange between src and dst that brings both
// closest to their bands, then moves the least weight, then the fewest
// shards. At most one side gives two shards.
func (r *rebalancer) bestExchange(src, dst int) rbExchange {
	sn, dn := &r.nodes[src], &r.nodes[dst]
	before := r.viol(src, sn.load) + r.viol(dst, dn.load)
	// The shift that puts both nodes in their bands, or as near as can be.
	lo := math.Max(sn.load-sn.hi, dn.lo-dn.load)
	hi := math.Min(sn.load-sn.lo, dn.hi-dn.load)
	if hi < lo {
		lo = (lo + hi) / 2
	}
	give, take := r.sets(src), r.sets(dst)
	var best rbExchange
	consider := func(g rbSet, t *rbSet) {
		d, c := g.w, rbExchange{give: g.s, take: [2]int{-1, -1}, src: src, dst: dst}
		if t != nil {
			if t.s[1] >= 0 && g.s[1] >= 0 {
				return
			}
			d -= t.w
			c.take = t.s
		}
		if d <= 0 || dn.load+d > dn.hi+r.eps {
			return
		}
		// Near-empty shards may take part when their spread stays as good.
		if shift := r.smallIn(c.give) - r.smallIn(c.take); shift != 0 {
			cs, cd := sn.smallCount, dn.smallCount
			if r.smallViol(src, cs-shift)+r.smallViol(dst, cd+shift) > r.smallViol(src, cs)+r.smallViol(dst, cd) {
				return
			}
		}
		c.gain = before - r.viol(src, sn.load-d) - r.viol(dst, dn.load+d)
		dMoves := 0
		for _, a := range c.give {
			if a >= 0 {
				dm, dw := r.delta(a, dst)
				dMoves += dm
				c.cost += dw
				c.moves++
			}
		}
		for _, b := range c.take {
			if b >= 0 {
				dm, dw := r.delta(b, src)
				dMoves += dm
				c.cost += dw
				c.moves++
			}
		}
		if !r.affords(dMoves, c.cost) {
			return
		}
		if c.better(best) {
			best = c
		}
	}
	r.work += len(give)
	for _, g := range give {
		consider(g, nil)
		// The take sets whose weight leaves a shift near [lo, hi].
		k := sort.Search(len(take), func(i int) bool { return take[i].w >= g.w-math.Max(hi, lo) })
		for j := max(k-1, 0); j <= k+2 && j < len(take); j++ {
			consider(g, &take[j])
		}
	}
	return best
}

func (r *rebalancer) smallIn(set [2]int) int {
	n := 0
	for _, s := range set {
		if s >= 0 && r.shards[s].small {
			n++
		}
	}
	return n
}
