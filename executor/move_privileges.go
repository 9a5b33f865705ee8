package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
)

// A move needs neither side to be a superuser, except a destination older
// than PostgreSQL 16, where only superusers create subscriptions. What
// each side needs (the README's "Least privilege" lists it with the
// grants, examples/least-privilege/grants.sql has them ready to run):
//
// Source:
//   - REPLICATION: the move's logical slot, made over a replication
//     connection (fast copy) or by pg_create_logical_replication_slot;
//   - CREATE on the database: CREATE PUBLICATION, and the rename of the
//     shard's schema at the cutover;
//   - ownership (or membership in the owner) of the shard's schema, tables
//     and sequences: a publication takes only tables its creator owns, the
//     cutover locks the tables, reads the sequences and renames the schema;
//   - pg_read_all_stats: the cutover waits for the source's physical
//     standbys, whose progress pg_stat_replication shows only to it;
//   - the role the destination connects as (publisher_dsn) needs
//     REPLICATION and SELECT on the shard's tables.
//
// Destination:
//   - CREATE on the database: the shard's schema, and on 16+ the
//     subscription;
//   - before 16: superuser; from 16: pg_create_subscription, and a password
//     in the connection string the subscription stores (PostgreSQL makes
//     subscriptions of other roles authenticate by password, and the
//     source must ask for it);
//   - membership in the roles owning the shard's objects on the source
//     (pg_dump's definition gives them their owners).
//
// Both: ownership of the library's functions (activating and
// deactivating re-create the active list) and USAGE on its schema.

// roleFacts is what a node says about the role pgms connects as.
type roleFacts struct {
	name        string
	superuser   bool
	replication bool
	createDB    bool // CREATE on the database
	readStats   bool // privileges of pg_read_all_stats
	createSub   bool // privileges of pg_create_subscription (16+)
	libUsage    bool // USAGE on the library schema
	libOwner    bool // may replace the library's functions
}

func readRoleFacts(ctx context.Context, conn *pgx.Conn, lib string) (roleFacts, error) {
	var r roleFacts
	err := conn.QueryRow(ctx, `SELECT current_user::text, r.rolsuper, r.rolreplication,
		  pg_catalog.has_database_privilege(current_database(), 'CREATE'),
		  pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),
		  EXISTS (SELECT 1 FROM pg_catalog.pg_roles s WHERE s.rolname = 'pg_create_subscription' AND pg_catalog.pg_has_role(current_user, s.oid, 'USAGE')),
		  COALESCE(pg_catalog.has_schema_privilege(to_regnamespace($1)::oid, 'USAGE'), false),
		  COALESCE((SELECT bool_and(pg_catalog.pg_has_role(current_user, p.proowner, 'USAGE')) FROM pg_catalog.pg_proc p
		    WHERE p.pronamespace = to_regnamespace($1)::oid AND p.proname LIKE 'microsharding%'), false)
		FROM pg_catalog.pg_roles r WHERE r.rolname = current_user`, pgutil.Quote(lib)).
		Scan(&r.name, &r.superuser, &r.replication, &r.createDB, &r.readStats, &r.createSub, &r.libUsage, &r.libOwner)
	return r, err
}

// privilegeNeed is one missing privilege: what, why the move needs it,
// and the statement that grants it.
type privilegeNeed struct{ what, why, fix string }

// PrivilegeError says which privileges a role lacks on a node for its part
// in a move, each with why and the statement (for a superuser) granting it.
type PrivilegeError struct {
	Node, Role string
	// Side is what needs them: "the move's source", "allocating shards
	// 5-6" …
	Side    string
	Major   int
	Missing []privilegeNeed
}

func (e *PrivilegeError) Error() string {
	parts := make([]string, len(e.Missing))
	for i, n := range e.Missing {
		parts[i] = fmt.Sprintf("%s (%s): %s", n.what, n.why, n.fix)
	}
	return fmt.Sprintf("node %s (PostgreSQL %d): role %s lacks what %s needs: %s; run the statements as a superuser (README, \"Least privilege\"), nothing was changed",
		e.Node, e.Major, pgutil.Quote(e.Role), e.Side, strings.Join(parts, "; "))
}

// ErrPrivileges matches a *PrivilegeError with errors.Is.
var ErrPrivileges = errors.New("missing privileges")

// Is makes errors.Is(err, ErrPrivileges) true.
func (e *PrivilegeError) Is(target error) bool { return target == ErrPrivileges }

// checkPrivileges checks, before the move changes anything, that the roles
// it connects as may do what the copy and the cutover will do, and names
// every missing privilege with the statement that grants it.
func (m *move) checkPrivileges(ctx context.Context) error {
	src, err := readRoleFacts(ctx, m.src.Conn, m.lib)
	if err != nil {
		return pgutil.Wrap(err, "node %s: read the privileges of the role", m.src.Name)
	}
	dst, err := readRoleFacts(ctx, m.dst.Conn, m.lib)
	if err != nil {
		return pgutil.Wrap(err, "node %s: read the privileges of the role", m.dst.Name)
	}
	srcNeeds, owners, err := m.sourceNeeds(ctx, src)
	if err != nil {
		return err
	}
	dstNeeds, err := m.destinationNeeds(ctx, dst, owners)
	if err != nil {
		return err
	}
	if m.windowing() {
		w, err := m.windowNeeds(src, dst)
		if err != nil {
			return err
		}
		srcNeeds, dstNeeds = append(srcNeeds, w[0]...), append(dstNeeds, w[1]...)
	}
	var errs []error
	if len(srcNeeds) > 0 {
		errs = append(errs, &PrivilegeError{Node: m.src.Name, Role: src.name, Side: "the move's source", Major: m.srcMajor, Missing: srcNeeds})
	}
	if len(dstNeeds) > 0 {
		errs = append(errs, &PrivilegeError{Node: m.dst.Name, Role: dst.name, Side: "the move's destination", Major: m.dstMajor, Missing: dstNeeds})
	}
	return errors.Join(errs...)
}

// windowNeeds lists what a rollback window adds, source's then
// destination's: the stream back reverses the roles, the new home
// publishing from a slot and the old home subscribing.
func (m *move) windowNeeds(src, dst roleFacts) ([2][]privilegeNeed, error) {
	var out [2][]privilegeNeed
	why := "the rollback window's stream back"
	if !dst.superuser && !dst.replication {
		out[1] = append(out[1], privilegeNeed{"the REPLICATION attribute", why + " streams from a logical slot here", "ALTER ROLE " + pgutil.Quote(dst.name) + " REPLICATION"})
	}
	switch {
	case src.superuser:
	case m.srcMajor < 16:
		out[0] = append(out[0], privilegeNeed{"superuser", "before PostgreSQL 16 only a superuser may create " + why + "'s subscription",
			"ALTER ROLE " + pgutil.Quote(src.name) + " SUPERUSER, or move without a rollback window"})
	default:
		if !src.createSub {
			out[0] = append(out[0], privilegeNeed{"the privileges of pg_create_subscription", why + "'s subscription", "GRANT pg_create_subscription TO " + pgutil.Quote(src.name)})
		}
		conninfo, err := serverConninfo(m.spec.To, "destination")
		if err != nil {
			return out, err
		}
		if !dsn.HasPassword(conninfo) {
			out[0] = append(out[0], privilegeNeed{"a password in the destination's connection string", "PostgreSQL makes a subscription owned by a role that is not a superuser authenticate with a password it stores, and " + why + " connects to the destination",
				"give the destination's dsn (or publisher_dsn) a password, and make its pg_hba.conf require one (scram-sha-256) for that role"})
		}
	}
	return out, nil
}

// libraryNeeds: both sides of a move change the active list, and so do
// allocating and activating.
func libraryNeeds(lib string, r roleFacts) []privilegeNeed {
	if r.superuser {
		return nil
	}
	var out []privilegeNeed
	if !r.libUsage {
		out = append(out, privilegeNeed{"USAGE on schema " + pgutil.Quote(lib), "the library's functions",
			fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", pgutil.Quote(lib), pgutil.Quote(r.name))})
	}
	if !r.libOwner {
		out = append(out, privilegeNeed{"ownership of the library's functions", "activating and deactivating a shard re-create the active list, which only their owner may",
			fmt.Sprintf("install the library as this role (pgms install), or GRANT the role that owns %s TO %s", pgutil.Quote(lib), pgutil.Quote(r.name))})
	}
	return out
}

// sourceNeeds lists what the source's role lacks, and returns the names of
// the roles owning the shard's objects, which the destination's role must
// be able to give them to.
func (m *move) sourceNeeds(ctx context.Context, r roleFacts) ([]privilegeNeed, []string, error) {
	var owners, notOwned []string
	err := m.src.Conn.QueryRow(ctx, `WITH objs AS (
		  SELECT 'schema ' || pg_catalog.quote_ident(n.nspname) AS what, n.nspowner AS owner FROM pg_catalog.pg_namespace n WHERE n.nspname = $1
		  UNION ALL
		  SELECT CASE WHEN c.relkind = 'S' THEN 'sequence ' ELSE 'table ' END || pg_catalog.quote_ident(c.relname), c.relowner
		  FROM pg_catalog.pg_class c WHERE c.relnamespace = to_regnamespace($2)::oid AND c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f')
		  UNION ALL
		  SELECT 'type ' || pg_catalog.quote_ident(t.typname), t.typowner FROM pg_catalog.pg_type t
		  WHERE t.typnamespace = to_regnamespace($2)::oid AND (t.typtype IN ('e', 'd', 'r', 'm')
		    OR t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
		  UNION ALL
		  SELECT 'function ' || pg_catalog.quote_ident(p.proname), p.proowner FROM pg_catalog.pg_proc p WHERE p.pronamespace = to_regnamespace($2)::oid
		)
		SELECT COALESCE(array_agg(DISTINCT pg_catalog.pg_get_userbyid(owner)), '{}'),
		  COALESCE(array_agg(what ORDER BY what) FILTER (WHERE what !~ '^(type|function) ' AND NOT pg_catalog.pg_has_role(current_user, owner, 'USAGE')), '{}')
		FROM objs`, m.schema, pgutil.Quote(m.schema)).Scan(&owners, &notOwned)
	if err != nil {
		return nil, nil, pgutil.Wrap(err, "node %s: read the owners of %s", m.src.Name, m.schema)
	}
	out := libraryNeeds(m.lib, r)
	if !r.superuser {
		role := pgutil.Quote(r.name)
		if !r.replication {
			out = append(out, privilegeNeed{"the REPLICATION attribute", "the move's logical replication slot", "ALTER ROLE " + role + " REPLICATION"})
		}
		if !r.createDB {
			out = append(out, privilegeNeed{"CREATE on the database", "the move's publication and the rename of the shard's schema at the cutover",
				fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", pgutil.Quote(m.src.Conn.Config().Database), role)})
		}
		if !r.readStats {
			out = append(out, privilegeNeed{"the privileges of pg_read_all_stats", "the cutover waits for the source's standbys, whose progress pg_stat_replication shows only to it",
				"GRANT pg_read_all_stats TO " + role})
		}
		if len(notOwned) > 0 {
			out = append(out, privilegeNeed{"ownership of " + abbreviateList(notOwned), "a publication takes only tables its creator owns, and the cutover locks the tables, reads the sequences and renames the schema",
				"make the role own the shard's objects (ALTER … OWNER TO " + role + "), or GRANT their owner TO " + role})
		}
	}
	needs, err := m.publisherRoleNeeds(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	return append(out, needs...), owners, nil
}

// publisherRoleNeeds checks the role the destination's subscription
// connects as, when it is not pgms's own on the source (publisher_dsn
// names another).
func (m *move) publisherRoleNeeds(ctx context.Context, r roleFacts) ([]privilegeNeed, error) {
	conninfo, err := m.publisherConninfo()
	if err != nil {
		return nil, err
	}
	cfg, err := pgconn.ParseConfig(conninfo)
	if err != nil || cfg.User == "" || cfg.User == r.name {
		// An unreadable string fails at the subscription, naming the cause.
		return nil, nil
	}
	var exists, replication bool
	var noSelect []string
	err = m.src.Conn.QueryRow(ctx, `SELECT r.rolname IS NOT NULL, COALESCE(r.rolsuper OR r.rolreplication, false),
		  COALESCE((SELECT array_agg(pg_catalog.quote_ident(c.relname) ORDER BY c.relname) FROM pg_catalog.pg_class c
		    WHERE c.relnamespace = to_regnamespace($2)::oid AND c.relkind = 'r' AND NOT pg_catalog.has_table_privilege(r.oid, c.oid, 'SELECT')), '{}')
		FROM (SELECT 1) one LEFT JOIN pg_catalog.pg_roles r ON r.rolname = $1`, cfg.User, pgutil.Quote(m.schema)).Scan(&exists, &replication, &noSelect)
	if err != nil {
		return nil, pgutil.Wrap(err, "node %s: read the privileges of role %s", m.src.Name, cfg.User)
	}
	role := pgutil.Quote(cfg.User)
	switch {
	case !exists:
		return []privilegeNeed{{"role " + role + " to exist", "the publisher_dsn connects as it", "CREATE ROLE " + role + " LOGIN REPLICATION"}}, nil
	case !replication:
		return []privilegeNeed{{"the REPLICATION attribute for " + role, "the subscription streams from the slot as it (publisher_dsn)", "ALTER ROLE " + role + " REPLICATION"}}, nil
	case len(noSelect) > 0 && m.strategy.Name() == "native":
		return []privilegeNeed{{"SELECT on " + abbreviateList(noSelect) + " for " + role, "the subscription copies the tables as it (publisher_dsn)",
			fmt.Sprintf("GRANT SELECT ON ALL TABLES IN SCHEMA %s TO %s", pgutil.Quote(m.schema), role)}}, nil
	}
	return nil, nil
}

// destinationNeeds lists what the destination's role lacks.
func (m *move) destinationNeeds(ctx context.Context, r roleFacts, owners []string) ([]privilegeNeed, error) {
	out := libraryNeeds(m.lib, r)
	role := pgutil.Quote(r.name)
	if !r.superuser && !r.createDB {
		why := "the shard's schema"
		if m.dstMajor >= 16 {
			why += " and the move's subscription"
		}
		out = append(out, privilegeNeed{"CREATE on the database", why,
			fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s", pgutil.Quote(m.dst.Conn.Config().Database), role)})
	}
	switch {
	case r.superuser:
	case m.dstMajor < 16:
		out = append(out, privilegeNeed{"superuser", "before PostgreSQL 16 only a superuser may create the move's subscription",
			"ALTER ROLE " + role + " SUPERUSER (or the managed service's equivalent), or move to a server of PostgreSQL 16 or later, where pg_create_subscription suffices"})
	default:
		if !r.createSub {
			out = append(out, privilegeNeed{"the privileges of pg_create_subscription", "the move's subscription",
				"GRANT pg_create_subscription TO " + role})
		}
		conninfo, err := m.publisherConninfo()
		if err != nil {
			return nil, err
		}
		if !dsn.HasPassword(conninfo) {
			out = append(out, privilegeNeed{"a password in the source's connection string", "PostgreSQL makes a subscription owned by a role that is not a superuser authenticate with a password it stores (password_required), and the source must ask for it",
				"give the source's dsn (or publisher_dsn) a password, and make the source's pg_hba.conf require one (scram-sha-256) for that role"})
		}
	}
	privilege := "MEMBER"
	if m.dstMajor >= 16 {
		privilege = "SET"
	}
	var absent, notMember []string
	err := m.dst.Conn.QueryRow(ctx, `SELECT
		  COALESCE(array_agg(o ORDER BY o) FILTER (WHERE r.oid IS NULL), '{}'),
		  COALESCE(array_agg(o ORDER BY o) FILTER (WHERE r.oid IS NOT NULL AND NOT pg_catalog.pg_has_role(current_user, r.oid, $2)
		    AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)), '{}')
		FROM unnest($1::text[]) o LEFT JOIN pg_catalog.pg_roles r ON r.rolname = o`, owners, privilege).Scan(&absent, &notMember)
	if err != nil {
		return nil, pgutil.Wrap(err, "node %s: check the owners of %s", m.dst.Name, m.schema)
	}
	quote := func(names []string) string {
		q := make([]string, len(names))
		for i, n := range names {
			q[i] = pgutil.Quote(n)
		}
		return strings.Join(q, ", ")
	}
	why := "the shard's definition gives its objects the owners they have on the source"
	if len(absent) > 0 {
		out = append(out, privilegeNeed{"roles " + quote(absent) + ", which own the shard's objects on the source and do not exist here", why,
			fmt.Sprintf("CREATE ROLE each of them, and GRANT %s TO %s", quote(absent), role)})
	}
	if len(notMember) > 0 {
		out = append(out, privilegeNeed{"membership in " + quote(notMember), why, fmt.Sprintf("GRANT %s TO %s", quote(notMember), role)})
	}
	return out, nil
}

// abbreviateList names up to five items and counts the rest.
func abbreviateList(items []string) string {
	if len(items) <= 5 {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:5], ", "), len(items)-5)
}
