package executor

import (
	"context"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
)

// CREATE SUBSCRIPTION takes the connection string as a literal: no bind
// parameter can carry it, so a password in it is part of the statement's
// text. PostgreSQL stores the string in pg_subscription.subconninfo (a
// column only superusers may read), and the text of the statement may
// also reach the destination's server log (log_statement = ddl or all,
// log_min_duration_statement, and log_min_error_statement when the
// statement fails, which is on by default) and pg_stat_statements (which
// keeps utility statements unless track_utility is off).
//
// quietSettings turn those off for the one statement, where the role may
// set them (superusers; from PostgreSQL 15, roles granted SET on them).
// The stored connection string is what it is: publisher_dsn with a
// passfile or a client certificate keeps the password out of it (see the
// README, "TLS and passwords").
var quietSettings = []struct{ name, value string }{
	{"log_statement", "none"},
	{"log_min_duration_statement", "-1"},
	{"log_min_error_statement", "panic"},
	{"pg_stat_statements.track_utility", "off"},
}

// withoutStatementLog runs run, which sends a statement holding conninfo
// on node n's session (the destination's for a move's subscription, the
// old home's for a rollback window's), with the settings above turned off
// when conninfo holds a password and the role may change them; they are
// reset afterwards.
func withoutStatementLog(ctx context.Context, n *pgutil.Node, major int, conninfo string, run func() error) error {
	if !dsn.HasPassword(conninfo) {
		return run()
	}
	conn := n.Conn
	type saved struct{ name, value string }
	var restore []saved
	for _, s := range quietSettings {
		var ok bool
		q := `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name = $1)
			AND (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)`
		if major >= 15 {
			q = `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name = $1)
				AND ((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) OR pg_catalog.has_parameter_privilege($1, 'SET'))`
		}
		if err := conn.QueryRow(ctx, q, s.name).Scan(&ok); err != nil {
			return pgutil.Wrap(err, "node %s: read setting %s", n.Name, s.name)
		}
		if !ok {
			continue
		}
		// A setting of its own message: log_statement applies to a whole
		// message as it arrives.
		var before string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1), pg_catalog.set_config($1, $2, false)", s.name, s.value).Scan(&before, new(string)); err != nil {
			return pgutil.Wrap(err, "node %s: set %s for the subscription's statement", n.Name, s.name)
		}
		restore = append(restore, saved{s.name, before})
	}
	err := run()
	for _, s := range restore {
		// The session is a move's claim: it goes on serving the move,
		// with the settings it had.
		conn.Exec(ctx, "SELECT pg_catalog.set_config($1, $2, false)", s.name, s.value) //nolint:errcheck // a broken session ends, and its settings with it
	}
	return err
}
