package pgtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgms-dev/pgms/internal/netfault"
)

// startPrimary starts a server of the test's own, since standbys and
// synchronous replication change a server for everyone using it.
func startPrimary(t *testing.T) *Server {
	t.Helper()
	if Servers(t)[0].DataDir == "" {
		t.Skip("standbys need servers the harness starts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, 1, Options{})
	if err != nil {
		t.Fatalf("start a primary: %v", err)
	}
	t.Cleanup(c.Close)
	return c.Servers[0]
}

func startStandby(t *testing.T, primary *Server, opts StandbyOptions) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	begin := time.Now()
	sb, err := primary.StartStandby(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("standby %s streaming in %v", sb.Name, time.Since(begin).Round(time.Millisecond))
	return sb
}

// waitFor polls a query returning one boolean until it is true, for at most
// 10s.
func waitFor(t *testing.T, conn *pgx.Conn, what, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var ok bool
		err := conn.QueryRow(context.Background(), query, args...).Scan(&ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error: %v)", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitReplayed waits until the standby has replayed everything the primary
// has flushed so far.
func waitReplayed(t *testing.T, primary, standby *pgx.Conn) {
	t.Helper()
	var lsn string
	if err := primary.QueryRow(context.Background(), "SELECT pg_current_wal_flush_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	waitFor(t, standby, "replay of "+lsn, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", lsn)
}

func TestStandbyStreams(t *testing.T) {
	ctx := context.Background()
	p := startPrimary(t)
	sb := startStandby(t, p, StandbyOptions{ApplicationName: "replica_a", Slot: "replica_a_slot"})
	if sb.Port == p.Port || sb.DataDir == p.DataDir {
		t.Fatalf("standby shares the primary's port or directory: %d %s", sb.Port, sb.DataDir)
	}
	st, err := os.Stat(filepath.Join("/proc", itoa(sb.proc.Pid)))
	if err != nil {
		t.Fatal(err)
	}
	if statUID(st) == 0 {
		t.Error("the standby runs as root")
	}

	pc := Connect(t, p.DSN("postgres"))
	sc := Connect(t, sb.DSN("postgres"))
	Exec(t, pc, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
	waitReplayed(t, pc, sc)
	var n int
	var inRecovery bool
	var maxConns string
	if err := sc.QueryRow(ctx, "SELECT (SELECT count(*) FROM t), pg_is_in_recovery(), current_setting('max_connections')").Scan(&n, &inRecovery, &maxConns); err != nil {
		t.Fatal(err)
	}
	if n != 1 || !inRecovery || maxConns != DefaultSettings["max_connections"] {
		t.Fatalf("standby: %d rows, in recovery %v, max_connections %s", n, inRecovery, maxConns)
	}

	var app, state, syncState string
	if err := pc.QueryRow(ctx, "SELECT application_name, state, sync_state FROM pg_stat_replication").Scan(&app, &state, &syncState); err != nil {
		t.Fatal(err)
	}
	if app != "replica_a" || state != "streaming" || syncState != "async" {
		t.Fatalf("pg_stat_replication: %s %s %s", app, state, syncState)
	}
	var active bool
	if err := pc.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = 'replica_a_slot' AND slot_type = 'physical'").Scan(&active); err != nil || !active {
		t.Fatalf("slot: active %v, %v", active, err)
	}

	dir := sb.dir
	if err := sb.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory %s left behind", dir)
	}
	if err := pc.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d slots left on the primary, %v", n, err)
	}
}

func TestSyncStandbyPartitionedHoldsCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := startPrimary(t)
	link, err := netfault.Start(p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { link.Close() })
	sb := startStandby(t, p, StandbyOptions{ApplicationName: "sync_a", Via: link.Addr()})

	cfg, err := pgx.ParseConfig(p.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	notices := make(chan *pgconn.Notice, 10)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices <- n }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	mon := Connect(t, p.DSN("postgres"))
	Exec(t, conn, "CREATE TABLE t (id int)")

	// Cut the link first: the very first commit after
	// SetSynchronousStandbys returns must wait, with no settling time.
	link.Set(netfault.Blackhole)
	if err := p.SetSynchronousStandbys(ctx, "sync_a"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "INSERT INTO t VALUES (1)")
		done <- err
	}()
	waitFor(t, mon, "the commit to wait for the standby", "SELECT coalesce(bool_or(wait_event = 'SyncRep'), false) FROM pg_stat_activity WHERE pid = $1", conn.PgConn().PID())
	select {
	case err := <-done:
		t.Fatalf("commit returned with its standby cut off: %v", err)
	case <-time.After(200 * time.Millisecond):
	}

	// Cancelling the wait does not undo the commit: PostgreSQL warns and
	// reports success.
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("cancelled commit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled commit did not return")
	}
	select {
	case n := <-notices:
		if n.Severity != "WARNING" || !strings.Contains(n.Message, "canceling wait for synchronous replication") {
			t.Fatalf("notice %s: %s", n.Severity, n.Message)
		}
		t.Logf("%s: %s (%s)", n.Severity, n.Message, n.Detail)
	default:
		t.Fatal("no warning about the cancelled wait")
	}

	// The partition heals: the held WAL reaches the standby, which is
	// the synchronous one, and commits get its acknowledgement again.
	link.Set(netfault.Pass)
	sc := Connect(t, sb.DSN("postgres"))
	waitFor(t, sc, "the row on the standby", "SELECT count(*) = 1 FROM t")
	waitFor(t, mon, "sync_a to be synchronous", "SELECT coalesce(bool_or(sync_state = 'sync' AND state = 'streaming'), false) FROM pg_stat_replication WHERE application_name = 'sync_a'")
	Exec(t, conn, "INSERT INTO t VALUES (2)")
	if len(notices) != 0 {
		t.Fatalf("a commit with the standby reachable warned: %s", (<-notices).Message)
	}
	// A synchronous commit has been flushed by the standby, not
	// necessarily replayed.
	waitFor(t, sc, "the second row on the standby", "SELECT count(*) = 2 FROM t")

	if err := p.SetSynchronousStandbys(ctx, ""); err != nil {
		t.Fatal(err)
	}
	link.Set(netfault.Blackhole)
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	if _, err := conn.Exec(cctx, "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatalf("commit after dropping the synchronous standby: %v", err)
	}
}

func TestPromote(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := startPrimary(t)
	sb := startStandby(t, p, StandbyOptions{})
	if want := p.Name + "_standby1"; sb.Name != want {
		t.Errorf("default name %s, want %s", sb.Name, want)
	}
	pc := Connect(t, p.DSN("postgres"))
	sc := Connect(t, sb.DSN("postgres"))
	var app string
	if err := pc.QueryRow(ctx, "SELECT application_name FROM pg_stat_replication").Scan(&app); err != nil || app != sb.Name {
		t.Fatalf("application_name %q, %v; want the standby's name", app, err)
	}
	Exec(t, pc, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
	waitReplayed(t, pc, sc)

	if err := p.StopImmediate(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.LogTail(20), "immediate shutdown request") {
		t.Errorf("the old primary did not stop in immediate mode:\n%s", p.LogTail(20))
	}
	if err := sb.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	var inRecovery bool
	if err := sc.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil || inRecovery {
		t.Fatalf("in recovery after promotion: %v, %v", inRecovery, err)
	}
	Exec(t, sc, "INSERT INTO t VALUES (2)")
	var n int
	if err := sc.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d rows on the promoted standby, %v", n, err)
	}
}
