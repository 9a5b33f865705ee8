package asused

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/sql"
)

// grantsFile is the README's ready snippet of the grants pgms needs; the
// tests grant exactly what it says.
const grantsFile = "../../examples/least-privilege/grants.sql"

// scramOptions start servers where every role but the harness's superuser
// authenticates with a SCRAM password: subscriptions owned by roles that
// are not superusers refuse sources that do not ask for one.
func scramOptions() pgtest.Options {
	return pgtest.Options{
		// Statements are logged as many servers log them: a password in
		// one would show in the log.
		Settings: map[string]string{"password_encryption": "scram-sha-256", "log_statement": "ddl"},
		HBA:      append(append([]string(nil), pgtest.SuperuserTrustRules...), "host all all 127.0.0.1/32 scram-sha-256"),
	}
}

var rolePattern = regexp.MustCompile(`\bpgms\b`)

// grantLeast creates role (LOGIN, with password) on db's server unless it
// exists, and runs the grants snippet for it in db, as the superuser.
func grantLeast(t *testing.T, db pgtest.DB, role, password string) {
	t.Helper()
	script, err := os.ReadFile(grantsFile)
	if err != nil {
		t.Fatal(err)
	}
	admin := pgtest.Connect(t, db.Server.DSN(db.Name))
	var exists bool
	if err := admin.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if !exists {
		// Not logged: tests look for passwords in the servers' logs.
		pgtest.Exec(t, admin, "SET log_statement = 'none'")
		pgtest.Exec(t, admin, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", pgx.Identifier{role}.Sanitize(), password))
		pgtest.Exec(t, admin, "RESET log_statement")
	}
	pgtest.Exec(t, admin, rolePattern.ReplaceAllString(string(script), pgx.Identifier{role}.Sanitize()))
}

// roleDSN is db's DSN for role with its password, over TCP without TLS
// unless params add it.
func roleDSN(db pgtest.DB, role, password, params string) string {
	u := url.URL{Scheme: "postgres", User: url.User(role), Host: db.Server.Addr(), Path: "/" + db.Name, RawQuery: "sslmode=disable"}
	if password != "" {
		u.User = url.UserPassword(role, password)
	}
	if params != "" {
		u.RawQuery = params
	}
	return u.String()
}

// makeShard creates and activates shard n on conn (as its role, which then
// owns it), with the library installed.
func makeShard(t *testing.T, conn *pgx.Conn, n int, ddl string) string {
	t.Helper()
	schema := sql.DefaultNaming.SchemaName(n)
	pgtest.Exec(t, conn, fmt.Sprintf("SELECT microsharding.microsharding_ensure_exist(%d)", n))
	pgtest.Exec(t, conn, "SET search_path = "+schema+"; "+ddl+"; RESET search_path")
	pgtest.Exec(t, conn, fmt.Sprintf("SELECT microsharding.microsharding_ensure_active(%d)", n))
	return schema
}

func install(t *testing.T, conns ...*pgx.Conn) {
	t.Helper()
	for _, c := range conns {
		if _, err := sql.Install(context.Background(), c, sql.Options{}); err != nil {
			t.Fatal(err)
		}
	}
}

// replicationObjects lists the publications, slots and subscriptions of
// conn's database, and the shard schemas.
func replicationObjects(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var s string
	err := conn.QueryRow(context.Background(), `SELECT concat_ws(' ',
		  (SELECT string_agg('publication ' || pubname, ' ') FROM pg_publication),
		  (SELECT string_agg('slot ' || slot_name, ' ') FROM pg_replication_slots WHERE database = current_database()),
		  (SELECT string_agg('subscription ' || subname, ' ') FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())))`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(s)
}
