package asused

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pgms-dev/pgms/executor"
	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

// tlsOptions start servers that take connections other than the
// harness's only over TLS: SCRAM passwords, or client certificates for
// the role certrepl.
func tlsOptions(t *testing.T, ca *pgtest.TLS) pgtest.Options {
	return ca.ServerOptions(t, pgtest.Options{
		// Statements are logged as many servers log them: a password in
		// one would show in the log.
		Settings: map[string]string{"password_encryption": "scram-sha-256", "log_statement": "ddl"},
		HBA: append(append([]string(nil), pgtest.SuperuserTrustRules...),
			"hostssl all certrepl 127.0.0.1/32 cert",
			"hostssl all all 127.0.0.1/32 scram-sha-256"),
	})
}

// TestMoveOverTLS moves shards between servers that require TLS, with
// pgms's connections (pgx and pg_dump) and the subscription's verifying
// the server certificate (sslmode=verify-full) against a CA made for the
// test. It checks what the destination stores in pg_subscription for each
// way the subscription may reach the source: by default the source's DSN
// with its password; with a publisher_dsn naming a passfile, or a client
// certificate, on the destination server, no password at all. A password
// that fails must not show in the error. (The subscriptions are a
// superuser's: PostgreSQL requires the others to carry a password.)
func TestMoveOverTLS(t *testing.T) {
	ca := pgtest.NewTLS(t)
	servers := pgtest.StartServers(t, 2, tlsOptions(t, ca))
	const pw = "Tls-S3cret-pw"
	root, err := servers[0].WriteFile("root.crt", ca.CA)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := ca.ClientCert(t, "certrepl")
	certPath, _ := servers[1].WriteFile("certrepl.crt", cert)
	keyPath, err := servers[1].WriteFile("certrepl.key", key)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range servers {
		admin := pgtest.Connect(t, s.DSN("postgres"))
		// Not logged: the test looks for the password in the logs.
		pgtest.Exec(t, admin, "SET log_statement = 'none'")
		pgtest.Exec(t, admin, "CREATE ROLE pgms LOGIN SUPERUSER PASSWORD '"+pw+"'; CREATE ROLE certrepl LOGIN REPLICATION")
	}
	tlsParams := "sslmode=verify-full&sslrootcert=" + url.QueryEscape(root)
	for _, tc := range []struct {
		name string
		// publisher makes the source's publisher_dsn from its address,
		// database and the passfile's path ("" for the default).
		publisher func(addr, db, passfile string) string
		// stored must and unstored must not be in pg_subscription's
		// connection string.
		stored, unstored []string
		fails            string
	}{
		{name: "default", stored: []string{"sslmode=verify-full", "sslrootcert=", pw}},
		{
			name: "passfile",
			publisher: func(addr, db, passfile string) string {
				host, port, _ := strings.Cut(addr, ":")
				return fmt.Sprintf("host=%s port=%s dbname=%s user=pgms sslmode=verify-full sslrootcert=%s passfile=%s", host, port, db, root, passfile)
			},
			stored: []string{"passfile=", "sslmode=verify-full"}, unstored: []string{pw, "password"},
		},
		{
			name: "certificate",
			publisher: func(addr, db, _ string) string {
				host, port, _ := strings.Cut(addr, ":")
				return fmt.Sprintf("host=%s port=%s dbname=%s user=certrepl sslmode=verify-full sslrootcert=%s sslcert=%s sslkey=%s", host, port, db, root, certPath, keyPath)
			},
			stored: []string{"sslcert=", "user=certrepl"}, unstored: []string{pw, "password"},
		},
		{
			name: "wrong password",
			publisher: func(addr, db, _ string) string {
				return "postgres://pgms:Wrong-Pw-9@" + addr + "/" + db + "?" + tlsParams
			},
			fails: "password authentication failed",
		},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dbs := pgtest.DatabasesOn(t, servers)
			srcAdmin := pgtest.Connect(t, dbs[0].Server.DSN(dbs[0].Name))
			dstAdmin := pgtest.Connect(t, dbs[1].Server.DSN(dbs[1].Name))
			passfile, err := servers[1].WriteFile("pgms.pgpass", fmt.Appendf(nil, "%s:%d:%s:pgms:%s\n", servers[0].Host, servers[0].Port, dbs[0].Name, pw))
			if err != nil {
				t.Fatal(err)
			}
			srcDSN := roleDSN(dbs[0], "pgms", pw, tlsParams)
			dstDSN := roleDSN(dbs[1], "pgms", pw, tlsParams)
			src, dst := pgtest.Connect(t, srcDSN), pgtest.Connect(t, dstDSN)
			install(t, src, dst)
			makeShard(t, src, 1, rowsDDL)
			spec := executor.MoveSpec{
				Shard: 1, Activate: true,
				From:    executor.Endpoint{Name: "a", DSN: srcDSN},
				To:      executor.Endpoint{Name: "b", DSN: dstDSN},
				Options: executor.MoveOptions{PollInterval: 50 * time.Millisecond},
			}
			if tc.publisher != nil {
				spec.From.PublisherDSN = tc.publisher(servers[0].Addr(), dbs[0].Name, passfile)
			}
			var stored string
			ctx := fault.WithHook(context.Background(), func(point string) error {
				if point == "move.cutover.begin" {
					return dstAdmin.QueryRow(context.Background(), "SELECT subconninfo FROM pg_subscription WHERE subname = 'pgms_move_sh0001'").Scan(&stored)
				}
				return nil
			})
			ev := &events{}
			_, err = executor.Move(ctx, spec, nil, ev)
			if strings.Contains(ev.text(), pw) || err != nil && (strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "Wrong-Pw-9")) {
				t.Errorf("a password is printed:\n%v\n%s", err, ev.text())
			}
			for i, s := range servers {
				if strings.Contains(s.Log(), pw) || strings.Contains(s.Log(), "Wrong-Pw-9") {
					t.Errorf("the log of server %d holds a password", i)
				}
			}
			if tc.fails != "" {
				if err == nil || !strings.Contains(err.Error(), tc.fails) {
					t.Fatalf("got %v, want an error saying %q", err, tc.fails)
				}
				if left := replicationObjects(t, srcAdmin) + replicationObjects(t, dstAdmin); left != "" {
					t.Errorf("left behind: %s", left)
				}
				return
			}
			if err != nil {
				t.Fatalf("move: %v\n%s", err, ev.text())
			}
			for _, w := range tc.stored {
				if !strings.Contains(stored, w) {
					t.Errorf("pg_subscription.subconninfo lacks %q", w)
				}
			}
			for _, w := range tc.unstored {
				if strings.Contains(stored, w) {
					t.Errorf("pg_subscription.subconninfo holds %q", w)
				}
			}
			// Every session of the move used TLS: the subscription's
			// walsender, pgms's own (pgx and pg_dump, which come and go)
			// were refused otherwise by pg_hba.conf.
			var n int
			if err := dst.QueryRow(context.Background(), "SELECT count(*) FROM sh0001.items").Scan(&n); err != nil || n != 500 {
				t.Errorf("destination has %d rows (%v)", n, err)
			}
		})
	}
}
