package executor

import (
	"context"
	"errors"
	"fmt"

	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/words"
	"github.com/pgms-dev/pgms/planner"
	"github.com/pgms-dev/pgms/sql"
)

// checkPrivileges runs, before the first step of an apply, the privilege
// checks its steps would meet one by one: a grant missing for the last
// move would otherwise stop the apply after the allocations and the other
// moves had run. Superusers pass at the cost of one query per node. Each
// move checks again when it starts (grants can change meanwhile).
func (a *applier) checkPrivileges(ctx context.Context) error {
	lib := a.env.Topology.Cluster.LibrarySchema
	if lib == "" {
		lib = sql.DefaultSchema
	}
	// The role that installs the library owns it; until then there is no
	// library to hold privileges on.
	installs := map[string]bool{}
	for _, s := range a.plan.Steps {
		if s.Kind == planner.StepInstall {
			installs[s.Node] = true
		}
	}
	type nodeRole struct {
		node  *pgutil.Node
		facts roleFacts
		major int
	}
	roles := map[string]*nodeRole{}
	role := func(name string) (*nodeRole, error) {
		if r := roles[name]; r != nil {
			return r, nil
		}
		n, err := a.node(ctx, name)
		if err != nil {
			return nil, err
		}
		r := &nodeRole{node: n}
		if r.facts, err = readRoleFacts(ctx, n.Conn, lib); err != nil {
			return nil, pgutil.Wrap(err, "node %s: read the privileges of the role", name)
		}
		if err := n.Conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&r.major); err != nil {
			return nil, pgutil.Wrap(err, "node %s: read the server's version", name)
		}
		roles[name] = r
		return r, nil
	}

	var errs []error
	seen := map[string]bool{} // node and privilege: each named once
	report := func(node string, r *nodeRole, side string, needs []privilegeNeed) {
		var fresh []privilegeNeed
		for _, n := range needs {
			if key := node + "\x00" + n.what; !seen[key] {
				seen[key] = true
				fresh = append(fresh, n)
			}
		}
		if len(fresh) > 0 {
			errs = append(errs, &PrivilegeError{Node: node, Role: r.facts.name, Side: side, Major: r.major, Missing: fresh})
		}
	}
	for _, s := range a.plan.Steps {
		switch s.Kind {
		case planner.StepInstall, planner.StepAllocate, planner.StepActivate, planner.StepDeactivate:
			r, err := role(s.Node)
			if err != nil {
				return err
			}
			if r.facts.superuser {
				continue
			}
			report(s.Node, r, stepPhrase(s), nodeStepNeeds(s, r.facts, installs[s.Node], lib, r.node.Conn.Config().Database))
		case planner.StepMove:
			if installs[s.From] || installs[s.To] {
				continue // the move's own preflight runs after the install
			}
			src, err := role(s.From)
			if err != nil {
				return err
			}
			dst, err := role(s.To)
			if err != nil {
				return err
			}
			if src.facts.superuser && dst.facts.superuser {
				continue
			}
			// A source without the schema under its name is a move whose
			// cutover committed, or a state the move's preflight explains.
			var onSource bool
			if err := src.node.Conn.QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL", pgutil.Quote(s.Schemas[0])).Scan(&onSource); err != nil {
				return pgutil.Wrap(err, "node %s: look for schema %s", s.From, s.Schemas[0])
			}
			if !onSource {
				continue
			}
			spec, err := a.moveSpec(s)
			if err != nil {
				return err
			}
			m, err := newMove(spec, nil)
			if err != nil {
				return err
			}
			m.schema = s.Schemas[0]
			m.src, m.dst = src.node, dst.node
			m.srcMajor, m.dstMajor = src.major, dst.major
			if err := m.checkPrivileges(ctx); err != nil {
				var pe *PrivilegeError
				for _, e := range unjoin(err) {
					if errors.As(e, &pe) {
						r := dst
						if pe.Node == s.From {
							r = src
						}
						report(pe.Node, r, fmt.Sprintf("%s (moving %s from %s to %s)", pe.Side, s.Schemas[0], s.From, s.To), pe.Missing)
					} else {
						return fmt.Errorf("move shard %d (%s) from %s to %s: %w", s.Shards.From, s.Schemas[0], s.From, s.To, e)
					}
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("checked before the first step: %w", errors.Join(errs...))
	}
	return nil
}

// nodeStepNeeds lists what a role that is not a superuser lacks for an
// install, allocation or (de)activation on a node.
func nodeStepNeeds(s planner.Step, r roleFacts, installed bool, lib, database string) []privilegeNeed {
	var out []privilegeNeed
	createDB := func(why string) {
		if !r.createDB {
			out = append(out, privilegeNeed{"CREATE on the database", why,
				fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", pgutil.Quote(database), pgutil.Quote(r.name))})
		}
	}
	switch s.Kind {
	case planner.StepInstall:
		if s.LibraryFresh {
			createDB("the library's schema")
		} else if !r.libOwner {
			out = append(out, privilegeNeed{"ownership of the library's functions", "upgrading the library replaces them",
				fmt.Sprintf("GRANT the role that owns %s TO %s", pgutil.Quote(lib), pgutil.Quote(r.name))})
		}
	case planner.StepAllocate:
		createDB("the shards' schemas")
		if !installed {
			out = append(out, libraryNeeds(lib, r)...)
		}
	default:
		if !installed {
			out = append(out, libraryNeeds(lib, r)...)
		}
	}
	return out
}

// stepPhrase names what a step does, for "role … lacks what … needs".
func stepPhrase(s planner.Step) string {
	switch s.Kind {
	case planner.StepInstall:
		return "installing the library"
	case planner.StepAllocate:
		return "allocating " + words.ShardRange(s.Shards.From, s.Shards.To)
	case planner.StepActivate:
		return "activating " + words.ShardRange(s.Shards.From, s.Shards.To)
	case planner.StepDeactivate:
		return "deactivating " + words.ShardRange(s.Shards.From, s.Shards.To)
	}
	return string(s.Kind)
}

// unjoin splits an errors.Join into its errors.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
