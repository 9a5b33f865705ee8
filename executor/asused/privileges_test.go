package asused

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

const rowsDDL = `CREATE TABLE items (id bigserial PRIMARY KEY, val bigint NOT NULL);
	CREATE SEQUENCE free_seq;
	INSERT INTO items (val) SELECT g FROM generate_series(1, 500) g`

// TestMovePrivileges moves a shard as roles with exactly the documented
// grants (examples/least-privilege/grants.sql), no superuser where the
// destination's version allows it; then takes one privilege away at a
// time and checks that the preflight names it, with the statement that
// grants it, before anything changes on either node.
func TestMovePrivileges(t *testing.T) {
	servers := pgtest.StartServers(t, 2, scramOptions())
	major := servers[1].Version
	const pw = "Mv-pw-1"
	cannotSubscribe := "REVOKE pg_create_subscription FROM %s"
	subscribeWant := "GRANT pg_create_subscription TO"
	if major < 16 {
		cannotSubscribe = "ALTER ROLE %s NOSUPERUSER"
		subscribeWant = "only a superuser may create the move's subscription"
	}
	for _, tc := range []struct {
		name string
		// srcSQL and dstSQL run as the superuser after the grants, %s
		// being the role.
		srcSQL, dstSQL string
		// ownedBy, when set, is a role owning the shard's table on the
		// source, granted to the move's role there.
		ownedBy string
		// publisher is the source's publisher_dsn; %s is its DSN without
		// the password.
		publisher string
		want      []string
		// only16: the destination is a superuser before 16, which has
		// every privilege the case takes away.
		only16 bool
		// window is the move's rollback window.
		window time.Duration
	}{
		{name: "documented grants"},
		{name: "documented grants, rollback window", window: time.Hour, only16: true},
		{name: "no REPLICATION", srcSQL: "ALTER ROLE %s NOREPLICATION", want: []string{"the REPLICATION attribute (the move's logical replication slot): ALTER ROLE"}},
		{name: "no pg_read_all_stats", srcSQL: "REVOKE pg_read_all_stats FROM %s", want: []string{"pg_read_all_stats", "GRANT pg_read_all_stats TO"}},
		{name: "no CREATE on the source's database", srcSQL: "REVOKE CREATE ON DATABASE current_db FROM %s", want: []string{"CREATE on the database (the move's publication", "GRANT CREATE ON DATABASE"}},
		{name: "shard owned by another role", srcSQL: "ALTER TABLE sh0001.items OWNER TO postgres", want: []string{"ownership of sequence items_id_seq, table items", "OWNER TO"}},
		{name: "cannot subscribe", dstSQL: cannotSubscribe, want: []string{subscribeWant}},
		{name: "no CREATE on the destination's database", dstSQL: "REVOKE CREATE ON DATABASE current_db FROM %s", only16: true, want: []string{"CREATE on the database (the shard's schema and the move's subscription)", "GRANT CREATE ON DATABASE"}},
		{name: "owner missing on the destination", ownedBy: "app_owner", want: []string{`roles "app_owner", which own the shard's objects on the source and do not exist here`}},
		{name: "no password for the subscription", publisher: "%s", only16: true, want: []string{"a password in the source's connection string"}},
		{name: "window without REPLICATION on the destination", window: time.Hour, dstSQL: "ALTER ROLE %s NOREPLICATION", only16: true,
			want: []string{"the REPLICATION attribute (the rollback window's stream back streams from a logical slot here)", "the move's destination"}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			if tc.only16 && major < 16 {
				t.Skipf("PostgreSQL %d: the destination's role must be a superuser, which has what this case takes away", major)
			}
			role := "mv_" + strings.NewReplacer(" ", "_", "'", "").Replace(tc.name)
			if len(role) > 40 {
				role = role[:40]
			}
			dbs := pgtest.DatabasesOn(t, servers)
			for _, db := range dbs {
				grantLeast(t, db, role, pw)
			}
			if major < 16 {
				pgtest.Exec(t, pgtest.Connect(t, dbs[1].Server.DSN(dbs[1].Name)), "ALTER ROLE "+pgx.Identifier{role}.Sanitize()+" SUPERUSER")
			}
			srcDSN, dstDSN := roleDSN(dbs[0], role, pw, ""), roleDSN(dbs[1], role, pw, "")
			src, dst := pgtest.Connect(t, srcDSN), pgtest.Connect(t, dstDSN)
			install(t, src, dst)
			srcAdmin := pgtest.Connect(t, dbs[0].Server.DSN(dbs[0].Name))
			dstAdmin := pgtest.Connect(t, dbs[1].Server.DSN(dbs[1].Name))
			makeShard(t, src, 1, rowsDDL)
			if tc.ownedBy != "" {
				pgtest.Exec(t, srcAdmin, fmt.Sprintf("CREATE ROLE %[1]s; GRANT %[1]s TO %[2]s; ALTER TABLE sh0001.items OWNER TO %[1]s", tc.ownedBy, pgx.Identifier{role}.Sanitize()))
			}
			run := func(conn *pgx.Conn, db pgtest.DB, q string) {
				if q != "" {
					q = strings.NewReplacer("%s", pgx.Identifier{role}.Sanitize(), "current_db", pgx.Identifier{db.Name}.Sanitize()).Replace(q)
					pgtest.Exec(t, conn, q)
				}
			}
			run(srcAdmin, dbs[0], tc.srcSQL)
			run(dstAdmin, dbs[1], tc.dstSQL)
			spec := executor.MoveSpec{
				Shard: 1, Activate: true,
				From:    executor.Endpoint{Name: "a", DSN: srcDSN},
				To:      executor.Endpoint{Name: "b", DSN: dstDSN},
				Options: executor.MoveOptions{PollInterval: 50 * time.Millisecond, RollbackWindow: tc.window},
			}
			if tc.publisher != "" {
				spec.From.PublisherDSN = fmt.Sprintf(tc.publisher, roleDSN(dbs[0], role, "", ""))
			}
			ev := &events{}
			_, err := executor.Move(context.Background(), spec, nil, ev)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("move as %s with the documented grants: %v\n%s", role, err, ev.text())
				}
				var n int
				if err := dst.QueryRow(context.Background(), "SELECT count(*) FROM sh0001.items").Scan(&n); err != nil || n != 500 {
					t.Errorf("destination has %d rows (%v)", n, err)
				}
				left := replicationObjects(t, srcAdmin) + replicationObjects(t, dstAdmin)
				if tc.window > 0 {
					// The stream back: the new home publishes, the old
					// home subscribes, as the role.
					if !strings.Contains(left, "subscription") || !strings.Contains(left, "slot") {
						t.Errorf("no stream back for the window: %q", left)
					}
				} else if left != "" {
					t.Errorf("left behind: %s", left)
				}
				// The subscription's statement held the password; the
				// grants let pgms keep it out of the log.
				for i, s := range servers {
					if strings.Contains(s.Log(), pw) {
						t.Errorf("the log of server %d holds the password", i)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("the move succeeded; want an error naming %q", tc.want)
			}
			if !errors.Is(err, executor.ErrPrivileges) {
				t.Errorf("error is not ErrPrivileges: %v", err)
			}
			for _, w := range append(tc.want, `role "`+role+`" lacks what the move's`) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("the error holds the password: %v", err)
			}
			// Nothing changed: no replication object, no copy.
			if left := replicationObjects(t, srcAdmin) + replicationObjects(t, dstAdmin); left != "" {
				t.Errorf("the failed preflight left %s", left)
			}
			var copies int
			if err := dstAdmin.QueryRow(context.Background(), "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'sh%'").Scan(&copies); err != nil || copies != 0 {
				t.Errorf("destination has %d shard schemas (%v)", copies, err)
			}
		})
	}
}
