package state

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgutil"
)

// A shard is active on at most one node. Every activation (allocate,
// activate, the end of a move) is checked against the whole fleet just
// before it happens: the nodes of the topology files, the nodes they
// registered, and the nodes given on the command line. No single
// transaction spans nodes, so the check cannot be atomic with the
// activation; the claims close the gap for pgms's own runs (a run that
// moves or allocates a shard claims it, and every check refuses a shard
// claimed by another run), and the check catches everything else.

// ActivationCheck describes an activation about to happen.
type ActivationCheck struct {
	// Target is the node the shards are activated on: its name or its
	// host:port/database.
	Target string
	// Source is, for a move, the node the shard comes from: the move
	// deactivates it there in its own cutover, so it does not count.
	Source string
	// Shards and their schema names, index-aligned.
	Shards  []int
	Schemas []string
	// Token is the run whose claims do not count (this process's).
	Token string
	// OwnCopy: the target's schema is the caller's own unfinished copy (a
	// move activating what it copied).
	OwnCopy bool
}

// CheckActivation returns an error when the activation would make a shard
// active on two nodes, or could: a shard is active on another node of c,
// another run holds a claim on it anywhere (a move or allocation in
// progress), the target's schema is some move's unfinished copy, or a node
// could not be read and so cannot be ruled out. The check is as fresh as
// c.
func (c *Cluster) CheckActivation(a ActivationCheck) error {
	want := make(map[string]bool, len(a.Schemas))
	wantShard := make(map[int]bool, len(a.Shards))
	for i, s := range a.Schemas {
		want[s] = true
		if i < len(a.Shards) {
			wantShard[a.Shards[i]] = true
		}
	}
	is := func(n *NodeState, name string) bool { return name != "" && (n.Name == name || n.Addr == name) }
	var conflicts, unreadable []string
	for _, n := range c.Nodes {
		isTarget := is(n, a.Target)
		if n.Err != nil {
			if !isTarget {
				unreadable = append(unreadable, n.Label())
			}
			continue
		}
		for _, cl := range n.Claims {
			if cl.Live && cl.Token != a.Token && (wantShard[cl.Shard] || want[cl.Schema]) {
				conflicts = append(conflicts, fmt.Sprintf("shard %d is claimed on node %s by a running %s", cl.Shard, n.Label(), cl))
			}
		}
		switch {
		case isTarget:
			for _, s := range n.Shards {
				if want[s.Schema] && s.Copy && !a.OwnCopy {
					conflicts = append(conflicts, fmt.Sprintf("%s on node %s is the unfinished copy of a move from %s, not a shard to serve", s.Schema, n.Label(), s.CopyFrom))
				}
			}
		case is(n, a.Source):
		default:
			for _, s := range n.Shards {
				if s.Active && want[s.Schema] {
					conflicts = append(conflicts, fmt.Sprintf("%s is active on node %s", s.Schema, n.Label()))
				}
			}
		}
	}
	switch {
	case len(conflicts) > 0:
		return fmt.Errorf("refusing to activate: %s; a shard is active on at most one node (deactivate it there first, let the other run finish, or move it)",
			strings.Join(conflicts, "; "))
	case len(unreadable) > 0:
		return fmt.Errorf("refusing to activate: node %s could not be read, so the shards may be active there; a shard is active on at most one node",
			strings.Join(unreadable, ", "))
	}
	return nil
}

// Fleet is every node an activation must be checked against.
type Fleet struct {
	Nodes         []NodeSpec
	LibrarySchema string
}

// With returns the fleet with more nodes; a node already present (same
// name, or same address) is not added twice.
func (f Fleet) With(nodes ...NodeSpec) Fleet {
	out := Fleet{LibrarySchema: f.LibrarySchema, Nodes: append([]NodeSpec(nil), f.Nodes...)}
	for _, n := range nodes {
		dup := false
		for _, m := range out.Nodes {
			if m.Name == n.Name && n.Name != "" || dsn.Name(m.DSN) == dsn.Name(n.DSN) {
				dup = true
			}
		}
		if !dup {
			out.Nodes = append(out.Nodes, n)
		}
	}
	return out
}

// CheckActivation reads, now, the active list and the claims of every
// node of the fleet and checks an activation as Cluster.CheckActivation
// does, with this process's claims exempt.
func (f Fleet) CheckActivation(ctx context.Context, a ActivationCheck) error {
	a.Token = pgutil.RunToken
	return f.Homes(ctx, a.Schemas).CheckActivation(a)
}

// Homes reads the active list and the claims of every node of the fleet,
// in parallel, each within a few seconds. The shards listed are the active
// ones and those of schemas present; they carry only their active flag and
// copy mark.
func (f Fleet) Homes(ctx context.Context, schemas []string) *Cluster {
	lib := f.LibrarySchema
	if lib == "" {
		lib = "microsharding"
	}
	c := &Cluster{Nodes: make([]*NodeState, len(f.Nodes))}
	var wg sync.WaitGroup
	for i, spec := range f.Nodes {
		wg.Go(func() {
			n := &NodeState{Name: spec.Name, Addr: dsn.Name(spec.DSN)}
			if n.Name == "" {
				n.Name = n.Addr
			}
			c.Nodes[i] = n
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			conn, err := pgutil.ConnectAs(cctx, spec.Name, spec.DSN)
			if err != nil {
				n.Err = err
				return
			}
			defer conn.Close()
			if err := readHomes(cctx, conn, lib, schemas, n); err != nil {
				n.Err = fmt.Errorf("node %s: %s", n.Label(), pgutil.Describe(err))
			}
		})
	}
	wg.Wait()
	sort.SliceStable(c.Nodes, func(i, j int) bool { return c.Nodes[i].Name < c.Nodes[j].Name })
	return c
}

func readHomes(ctx context.Context, conn *pgutil.Node, lib string, schemas []string, n *NodeState) error {
	var installed bool
	if err := conn.Conn.QueryRow(ctx, "SELECT to_regprocedure($1) IS NOT NULL", pgutil.Quote(lib, "microsharding_active_shards_")+"()").Scan(&installed); err != nil {
		return err
	}
	if !installed {
		return nil
	}
	var active []string
	if err := conn.Conn.QueryRow(ctx, "SELECT "+pgutil.Quote(lib, "microsharding_active_shards_")+"()").Scan(&active); err != nil {
		return err
	}
	isActive := make(map[string]bool, len(active))
	for _, a := range active {
		isActive[a] = true
	}
	rows, err := conn.Conn.Query(ctx, `SELECT nspname::text, COALESCE(pg_catalog.obj_description(oid, 'pg_namespace'), '') FROM pg_catalog.pg_namespace
		WHERE nspname = ANY($1::text[]) OR nspname = ANY($2::text[]) ORDER BY nspname`, active, schemas)
	if err != nil {
		return err
	}
	for rows.Next() {
		var s ShardState
		var comment string
		if err := rows.Scan(&s.Schema, &comment); err != nil {
			rows.Close()
			return err
		}
		s.Active = isActive[s.Schema]
		s.CopyFrom, s.Copy = names.ParseCopyMark(comment)
		n.Shards = append(n.Shards, s)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	n.Claims, err = ReadClaims(ctx, conn.Conn, lib)
	return err
}
