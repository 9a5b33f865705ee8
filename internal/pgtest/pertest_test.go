package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestStartServersOfAVersion: a test starts servers of a chosen major
// version beside the shared ones, whatever the default version is.
func TestStartServersOfAVersion(t *testing.T) {
	for _, major := range []int{13, 18} {
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			servers := StartServers(t, 1, Options{Version: major})
			var got int
			conn := Connect(t, servers[0].DSN("postgres"))
			if err := conn.QueryRow(context.Background(), "SELECT current_setting('server_version_num')::int / 10000").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != major || servers[0].Version != major {
				t.Errorf("server runs %d (Version %d), want %d", got, servers[0].Version, major)
			}
			dbs := DatabasesOn(t, servers)
			Connect(t, dbs[0].DSN)
		})
	}
}

// TestStartServersVersionMissing: a version that is not installed skips
// the test, or fails it under PGMS_REQUIRE_PG_VERSIONS=1.
func TestStartServersVersionMissing(t *testing.T) {
	t.Setenv(EnvCache, t.TempDir())
	for _, require := range []string{"", "1"} {
		t.Setenv(EnvRequireVersions, require)
		rec := &recorder{TB: t}
		func() {
			defer func() { recover() }() // Skip and Fatal end the goroutine's work
			StartServers(rec, 1, Options{Version: 16})
		}()
		switch {
		case require == "" && !rec.skipped:
			t.Errorf("without %s: not skipped (%q)", EnvRequireVersions, rec.msg)
		case require == "1" && !rec.failed:
			t.Errorf("with %s=1: did not fail (%q)", EnvRequireVersions, rec.msg)
		case !strings.Contains(rec.msg, "scripts/pg-versions.sh install 16"):
			t.Errorf("message lacks the install command: %q", rec.msg)
		}
	}
}

// recorder stands in for a test whose Skip and Fatal are observed.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	panic("skip")
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	panic("fatal")
}

func (r *recorder) Cleanup(func()) {}

// TestTLSAndPasswords: a server with its own certificates and pg_hba.conf
// takes TLS with verify-full and SCRAM passwords, or client certificates,
// and refuses connections without TLS; the harness still gets in.
func TestTLSAndPasswords(t *testing.T) {
	ca := NewTLS(t)
	opts := ca.ServerOptions(t, Options{
		Settings: map[string]string{"password_encryption": "scram-sha-256"},
		HBA: append(SuperuserTrustRules,
			"hostssl all certrole 127.0.0.1/32 cert",
			"hostssl all all 127.0.0.1/32 scram-sha-256"),
	})
	s := StartServers(t, 1, opts)[0]
	admin := Connect(t, s.DSN("postgres"))
	Exec(t, admin, "CREATE ROLE pwrole LOGIN PASSWORD 'Pw-s3cret'; CREATE ROLE certrole LOGIN")

	root, err := s.WriteFile("root.crt", ca.CA)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := ca.ClientCert(t, "certrole")
	certPath, _ := s.WriteFile("certrole.crt", cert)
	keyPath, err := s.WriteFile("certrole.key", key)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v", err, st.Mode())
	}
	verified := func(userinfo string) string {
		return "postgres://" + userinfo + "@" + s.Addr() + "/postgres?sslmode=verify-full&sslrootcert=" + url.QueryEscape(root)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name, dsn string
		ok        bool
	}{
		{"scram over verify-full", verified("pwrole:Pw-s3cret"), true},
		{"wrong password", verified("pwrole:wrong"), false},
		{"certificate", verified("certrole") + "&sslcert=" + url.QueryEscape(certPath) + "&sslkey=" + url.QueryEscape(keyPath), true},
		{"certificate missing", verified("certrole"), false},
		{"no TLS", fmt.Sprintf("postgres://pwrole:Pw-s3cret@%s/postgres?sslmode=disable", s.Addr()), false},
	} {
		conn, err := pgx.Connect(ctx, tc.dsn)
		if err != nil {
			if tc.ok {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var ssl bool
		err = conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl)
		conn.Close(ctx)
		switch {
		case !tc.ok:
			t.Errorf("%s: connected", tc.name)
		case err != nil || !ssl:
			t.Errorf("%s: ssl %v, %v", tc.name, ssl, err)
		}
	}
}
