// Package pgtest starts throwaway PostgreSQL servers for tests.
//
// A test package starts its servers once in TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, 2)) }
//
// and each test takes fresh databases on them:
//
//	dbs := pgtest.Databases(t, 2) // one new database per server
//	conn := pgtest.Connect(t, dbs[0].DSN)
//
// By default the servers come from the local PostgreSQL binaries: initdb
// once into a cached template, a copy per server on /dev/shm, a free
// 127.0.0.1 port, wal_level=logical. As root, the servers run as an
// unprivileged account. Everything is stopped and removed when the package's
// tests end, pass or fail; a test binary killed outright takes its servers
// with it (parent-death signal) and the next run removes their directories.
// A test can also make streaming standbys of a server it started, make them
// synchronous and promote them (standby.go).
//
// Other backends, chosen by environment variables:
//
//	PGMS_TEST_DSNS=dsn1,dsn2   use running servers (superuser DSNs)
//	PGMS_TEST_BACKEND=testcontainers   containers (needs a Docker engine and
//	                                   a binary built with -tags testcontainers)
//
// Without binaries and without a backend, tests that need a server are
// skipped with the reason, or fail when PGMS_REQUIRE_POSTGRES=1 (CI).
package pgtest

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a set of servers shared by the tests of one package.
type Cluster struct {
	Servers []*Server
	cleanup func()
}

// Close stops and removes every server of the cluster.
func (c *Cluster) Close() {
	if c.cleanup != nil {
		c.cleanup()
		c.cleanup = nil
	}
}

// Options tune Start.
type Options struct {
	// Settings are extra server settings (name → value) on top of
	// DefaultSettings.
	Settings map[string]string
	// Dir, when set, is where the servers' data directories go instead of
	// the harness's root (the cached template stays there): a small file
	// system of the test's own, for example, to run a server out of disk.
	Dir string
}

// backendStarter starts n servers for a non-default backend.
type backendStarter func(ctx context.Context, n int, opts Options) (*Cluster, error)

// backends registered by files behind build tags.
var backends = map[string]backendStarter{}

// Start starts n servers in parallel with the backend the environment
// selects.
func Start(ctx context.Context, n int, opts Options) (*Cluster, error) {
	if dsns := os.Getenv("PGMS_TEST_DSNS"); dsns != "" {
		return external(ctx, n, strings.Split(dsns, ","))
	}
	if name := os.Getenv("PGMS_TEST_BACKEND"); name != "" && name != "local" {
		start, ok := backends[name]
		if !ok {
			return nil, fmt.Errorf("PGMS_TEST_BACKEND=%s is not built into this test binary (build with -tags %s)", name, name)
		}
		return start(ctx, n, opts)
	}
	return startLocal(ctx, n, opts)
}

// localSetup is what starting local servers needs: the binaries, the
// account they run as, the root directory and the initdb template.
type localSetup struct {
	bins Binaries
	user serverUser
	root string
	tmpl string
}

func prepareLocal() (localSetup, error) {
	var l localSetup
	var err error
	if l.bins, err = FindBinaries(); err != nil {
		return l, err
	}
	if l.user, err = resolveServerUser(); err != nil {
		return l, err
	}
	if err := checkReachable(l.bins.Dir, l.user); err != nil {
		return l, err
	}
	useCachedClients(l.bins)
	l.root = rootDir()
	if err := prepareRoot(l.root); err != nil {
		return l, fmt.Errorf("prepare %s: %w", l.root, err)
	}
	l.tmpl, err = template(l.root, l.bins, l.user)
	return l, err
}

func startLocal(ctx context.Context, n int, opts Options) (*Cluster, error) {
	l, err := prepareLocal()
	if err != nil {
		return nil, err
	}
	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			root := l.root
			if opts.Dir != "" {
				root = opts.Dir
			}
			servers[i], errs[i] = startServer(ctx, root, fmt.Sprintf("s%d", i), l.bins, l.user, l.tmpl, opts.Settings)
		}()
	}
	wg.Wait()
	c := &Cluster{Servers: servers}
	c.cleanup = func() {
		var wg sync.WaitGroup
		for _, s := range servers {
			if s == nil {
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); s.remove() }()
		}
		wg.Wait()
	}
	for _, err := range errs {
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// external wraps servers someone else runs.
func external(ctx context.Context, n int, dsns []string) (*Cluster, error) {
	if len(dsns) < n {
		return nil, fmt.Errorf("PGMS_TEST_DSNS names %d servers, the tests need %d", len(dsns), n)
	}
	var servers []*Server
	for i, dsn := range dsns[:n] {
		cfg, err := pgx.ParseConfig(strings.TrimSpace(dsn))
		if err != nil {
			return nil, fmt.Errorf("PGMS_TEST_DSNS entry %d: %w", i+1, err)
		}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("PGMS_TEST_DSNS entry %d (%s:%d): %w", i+1, cfg.Host, cfg.Port, err)
		}
		var version int
		err = conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int / 10000").Scan(&version)
		conn.Close(ctx)
		if err != nil {
			return nil, err
		}
		servers = append(servers, &Server{
			Name: fmt.Sprintf("s%d", i), Host: cfg.Host, Port: int(cfg.Port),
			Version: version, baseDSN: strings.TrimSpace(dsn),
		})
	}
	return &Cluster{Servers: servers}, nil
}

// rewriteDatabase returns dsn pointing at database instead.
func rewriteDatabase(dsn, _ string, database string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + database
		return u.String()
	}
	return dsn + " dbname='" + strings.ReplaceAll(database, "'", `\'`) + "'"
}

var shared struct {
	cluster *Cluster
	err     error
}

// Main starts n servers, runs the package's tests and removes the servers,
// returning the exit code for os.Exit. Without PostgreSQL, tests that need
// it are skipped (or fail under PGMS_REQUIRE_POSTGRES=1).
func Main(m *testing.M, n int) int {
	return MainWith(m, n, Options{})
}

// MainWith is Main with options.
func MainWith(m *testing.M, n int, opts Options) int {
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	begin := time.Now()
	shared.cluster, shared.err = Start(ctx, n, opts)
	cancel()
	if shared.err == nil && testing.Verbose() {
		fmt.Fprintf(os.Stderr, "pgtest: %d servers ready in %v\n", n, time.Since(begin).Round(time.Millisecond))
	}
	code := m.Run()
	if shared.cluster != nil {
		shared.cluster.Close()
	}
	return code
}

// Servers returns the package's shared servers, skipping (or failing) the
// test when they could not be started.
func Servers(t testing.TB) []*Server {
	t.Helper()
	if shared.err != nil {
		if os.Getenv("PGMS_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL test servers are required (PGMS_REQUIRE_POSTGRES=1): %v", shared.err)
		}
		t.Skipf("no PostgreSQL test servers: %v", shared.err)
	}
	if shared.cluster == nil {
		t.Fatal("pgtest: servers not started; call pgtest.Main from TestMain")
	}
	return shared.cluster.Servers
}

// DB is a database created for one test on one server.
type DB struct {
	Server *Server
	Name   string
	DSN    string
}

var dbCounter atomic.Int64

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]+`)

// Databases creates one new database per shared server (all with the same
// name, so that cross-server features such as postgres_fdw find their
// peers) and drops them when the test ends, together with any replication
// slot or subscription the test left in them.
func Databases(t testing.TB, n int) []DB {
	t.Helper()
	servers := Servers(t)
	if len(servers) < n {
		t.Fatalf("pgtest: test needs %d servers, TestMain started %d", n, len(servers))
	}
	name := unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "_")
	suffix := fmt.Sprintf("_%d_%d", os.Getpid()%100000, dbCounter.Add(1))
	if len(name) > 40 {
		name = name[:40]
	}
	name = "t_" + name + suffix

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dbs := make([]DB, n)
	for i, s := range servers[:n] {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err != nil {
			t.Fatalf("pgtest: connect to %s: %v", s.Name, err)
		}
		_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		conn.Close(ctx)
		if err != nil {
			t.Fatalf("pgtest: create database on %s: %v", s.Name, err)
		}
		dbs[i] = DB{Server: s, Name: name, DSN: s.DSN(name)}
	}
	t.Cleanup(func() {
		for _, db := range dbs {
			if err := dropDatabase(db); err != nil {
				t.Errorf("pgtest: %v", err)
			}
		}
	})
	return dbs
}

// Database is Databases(t, 1)[0].
func Database(t testing.TB) DB {
	t.Helper()
	return Databases(t, 1)[0]
}

// dropDatabase removes a test database. DROP DATABASE refuses while a
// subscription or a replication slot belongs to the database, so those go
// first: subscriptions are detached from their slots (the slot may be gone
// or on a stopped server) and slots are dropped after ending their senders.
func dropDatabase(db DB) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, db.DSN); err == nil {
		rows, _ := conn.Query(ctx, "SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
		subs, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, sub := range subs {
			id := pgx.Identifier{sub}.Sanitize()
			conn.Exec(ctx, "ALTER SUBSCRIPTION "+id+" DISABLE")
			conn.Exec(ctx, "ALTER SUBSCRIPTION "+id+" SET (slot_name = NONE)")
			conn.Exec(ctx, "DROP SUBSCRIPTION "+id)
		}
		conn.Close(ctx)
	}
	conn, err := pgx.Connect(ctx, db.Server.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("drop database %s on %s: %w", db.Name, db.Server.Name, err)
	}
	defer conn.Close(ctx)
	for attempt := 0; ; attempt++ {
		conn.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL`, db.Name)
		conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`, db.Name)
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db.Name}.Sanitize()+" WITH (FORCE)")
		if err == nil || attempt >= 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("drop database %s on %s: %w", db.Name, db.Server.Name, err)
	}
	return nil
}

// Connect opens a connection closed at the end of the test.
func Connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// Exec runs statements (simple protocol, several allowed) or fails the test.
func Exec(t testing.TB, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", firstLine(sql), err)
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}
