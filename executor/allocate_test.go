package executor

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgbin"
	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// openNode connects to a test database the way commands do.
func openNode(t *testing.T, dsn string) *pgutil.Node {
	t.Helper()
	n, err := pgutil.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func installed(t *testing.T, db pgtest.DB) *pgutil.Node {
	t.Helper()
	n := openNode(t, db.DSN)
	if _, err := sql.Install(context.Background(), n.Conn, sql.Options{}); err != nil {
		t.Fatal(err)
	}
	return n
}

// clientPath finds a PostgreSQL client program or skips the test.
func clientPath(t *testing.T, program string) string {
	t.Helper()
	p, err := pgbin.Find(program, 0)
	if err != nil {
		t.Skip(err)
	}
	return p.Path
}

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "migrate.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func activeShards(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	var out []string
	if err := conn.QueryRow(context.Background(), "SELECT microsharding.microsharding_list_active_shards()::text[]").Scan(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func schemasLike(t *testing.T, conn *pgx.Conn, like string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1 ORDER BY 1", like)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAllocate(t *testing.T) {
	db := pgtest.Database(t)
	node := installed(t, db)
	migrate := script(t, `set -e
echo "range $PGMS_SHARD_FROM-$PGMS_SHARD_TO on $PGHOST:$PGPORT/$PGDATABASE as $PGUSER, dsn ${PGMS_DSN:+given}"
for s in $(echo "$PGMS_SCHEMAS" | tr , ' '); do
  `+clientPath(t, "psql")+` -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS \"$s\".users (id bigint PRIMARY KEY)"
done
echo "to stderr" >&2
printf "no newline at the end"
`)
	var stdout, stderr bytes.Buffer
	spec := AllocateSpec{From: 5, To: 8, MigrateCommand: []string{migrate}, Activate: true, Stdout: &stdout, Stderr: &stderr}
	res, err := Allocate(context.Background(), node, spec)
	if err != nil {
		t.Fatalf("allocate: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	want := []string{"sh0005", "sh0006", "sh0007", "sh0008"}
	if !reflect.DeepEqual(res.Schemas, want) || !reflect.DeepEqual(res.Created, want) || !reflect.DeepEqual(res.Activated, want) || !res.Migrated {
		t.Errorf("result %+v", res)
	}
	if got := activeShards(t, node.Conn); !reflect.DeepEqual(got, want) {
		t.Errorf("active %v", got)
	}
	var tables int
	node.Conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE tablename = 'users' AND schemaname LIKE 'sh%'").Scan(&tables)
	if tables != 4 {
		t.Errorf("the migrate command made %d tables, want 4", tables)
	}
	prefix := "[migrate " + node.Name + "] "
	wantOut := prefix + "range 5-8 on 127.0.0.1:" + strconv.Itoa(db.Server.Port) + "/" + db.Name + " as postgres, dsn given\n" +
		prefix + "no newline at the end\n"
	if stdout.String() != wantOut || stderr.String() != prefix+"to stderr\n" {
		t.Errorf("output:\n%q\nwant\n%q\nstderr %q", stdout.String(), wantOut, stderr.String())
	}

	// Again: nothing to create or activate, the command runs again.
	res, err = Allocate(context.Background(), node, spec)
	if err != nil || len(res.Created) != 0 || len(res.Activated) != 0 || !res.Migrated {
		t.Errorf("re-run: %+v, %v", res, err)
	}

	// Without a command and without activation: created, inactive.
	res, err = Allocate(context.Background(), node, AllocateSpec{From: 9, To: 9})
	if err != nil || !reflect.DeepEqual(res.Created, []string{"sh0009"}) || res.Migrated || res.Activated != nil {
		t.Errorf("bare allocate: %+v, %v", res, err)
	}
	if got := activeShards(t, node.Conn); len(got) != 4 {
		t.Errorf("shard 9 was activated: %v", got)
	}
}

func TestAllocateFailingCommand(t *testing.T) {
	db := pgtest.Database(t)
	node := installed(t, db)
	pgtest.Exec(t, node.Conn, "SELECT microsharding.microsharding_ensure_exist(5); SELECT microsharding.microsharding_ensure_active(5)")
	failing := script(t, `echo "migration 42 failed" >&2; exit 3`)

	tests := []struct {
		from, to int
		msg      string
	}{
		{6, 8, "migrate command failed (exit 3) for shards 6-8 on node " + node.Name +
			"; the shards exist and stay inactive; fix the migration and run again"},
		{5, 7, "migrate command failed (exit 3) for shards 5-7 on node " + node.Name +
			"; shards 6-7 exist and stay inactive; fix the migration and run again"},
		{5, 5, "migrate command failed (exit 3) for shard 5 on node " + node.Name +
			"; the shards were already active and stay so; fix the migration and run again"},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		_, err := Allocate(context.Background(), node, AllocateSpec{From: tt.from, To: tt.to, MigrateCommand: []string{failing}, Activate: true, Stderr: &stderr})
		var merr *MigrateError
		if !errors.As(err, &merr) || merr.ExitCode != 3 || err.Error() != tt.msg {
			t.Errorf("error:\n%v\nwant\n%s", err, tt.msg)
		}
		if !strings.Contains(stderr.String(), "migration 42 failed") {
			t.Errorf("command output not streamed: %q", stderr.String())
		}
	}
	if got := schemasLike(t, node.Conn, "sh%"); !reflect.DeepEqual(got, []string{"sh0005", "sh0006", "sh0007", "sh0008"}) {
		t.Errorf("schemas %v", got)
	}
	if got := activeShards(t, node.Conn); !reflect.DeepEqual(got, []string{"sh0005"}) {
		t.Errorf("active after failures: %v", got)
	}

	// A command that cannot start.
	_, err := Allocate(context.Background(), node, AllocateSpec{From: 6, To: 6, MigrateCommand: []string{"/nonexistent/migrate"}, Activate: true})
	if err == nil || !strings.Contains(err.Error(), "migrate command failed (start /nonexistent/migrate:") {
		t.Errorf("missing command: %v", err)
	}

	// Fixed: the next run activates.
	res, err := Allocate(context.Background(), node, AllocateSpec{From: 5, To: 8, MigrateCommand: []string{"true"}, Activate: true})
	if err != nil || !reflect.DeepEqual(res.Activated, []string{"sh0006", "sh0007", "sh0008"}) || len(res.Created) != 0 {
		t.Errorf("after the fix: %+v, %v", res, err)
	}
}

func TestAllocateInterrupted(t *testing.T) {
	db := pgtest.Database(t)
	node := installed(t, db)
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// The shell starts a child of its own: cancelling must end both.
	slow := script(t, `sleep 60 & echo $! > `+pidFile+`; wait`)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for {
			if _, err := os.Stat(pidFile); err == nil {
				time.Sleep(50 * time.Millisecond)
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	start := time.Now()
	_, err := Allocate(ctx, node, AllocateSpec{From: 1, To: 2, MigrateCommand: []string{slow}, Activate: true})
	took := time.Since(start)
	var merr *MigrateError
	if !errors.As(err, &merr) || !merr.Interrupted ||
		err.Error() != "migrate command was interrupted for shards 1-2 on node "+node.Name+"; the shards exist and stay inactive; run again to finish" {
		t.Errorf("error: %v", err)
	}
	if took > 3*time.Second {
		t.Errorf("cancel took %v", took)
	}
	data, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid <= 0 || alive(pid) {
		t.Errorf("the command's child (pid %d) survived the cancel", pid)
	}
	if got := activeShards(t, node.Conn); len(got) != 0 {
		t.Errorf("activated after an interrupt: %v", got)
	}
}

// alive reports whether a process runs a while later; a zombie waiting for
// a parent that does not reap (PID 1 in some containers) counts as ended.
func alive(pid int) bool {
	for range 50 {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || syscall.Kill(pid, 0) != nil {
			return false
		}
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func TestAllocateRefusals(t *testing.T) {
	dbs := pgtest.Databases(t, 2)
	a, b := installed(t, dbs[0]), installed(t, dbs[1])
	pgtest.Exec(t, a.Conn, "SELECT microsharding.microsharding_ensure_exist(3); SELECT microsharding.microsharding_ensure_active(3)")
	bare := openNode(t, pgtest.Databases(t, 1)[0].DSN)

	live := &state.Fleet{Nodes: []state.NodeSpec{{Name: "a", DSN: dbs[0].DSN}, {Name: b.Name, DSN: dbs[1].DSN}}}
	tests := []struct {
		name string
		node *pgutil.Node
		spec AllocateSpec
		err  string
	}{
		{"reversed", b, AllocateSpec{From: 8, To: 5}, "invalid shard range 8-5: the first shard is greater than the last (did you mean 5-8?)"},
		{"negative", b, AllocateSpec{From: -1, To: 5}, "shard numbers cannot be negative"},
		{"too wide for the node", b, AllocateSpec{From: 9999, To: 10000}, "does not fit the schema naming"},
		{"too wide for the naming", b, AllocateSpec{From: 1, To: 100, Naming: sql.Naming{Prefix: "sh", Digits: 2}}, "shard 100 does not fit the schema naming sh00 (the largest is 99)"},
		{"other naming", b, AllocateSpec{From: 1, To: 2, Naming: sql.Naming{Prefix: "s", Digits: 4}}, `the node names shard 1 "sh0001", the configuration "s0001"`},
		{"active elsewhere", b, AllocateSpec{From: 2, To: 4, Activate: true, Fleet: live}, "refusing to activate: sh0003 is active on node a ("},
		{"no library", bare, AllocateSpec{From: 1, To: 2}, `the microsharding library is missing or incomplete in schema "microsharding" (run pgms install)`},
	}
	for _, tt := range tests {
		_, err := Allocate(context.Background(), tt.node, tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "on node "+tt.node.Name) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.err)
		}
	}
	if got := schemasLike(t, b.Conn, "sh%"); len(got) != 0 {
		t.Errorf("refused allocations created %v", got)
	}
	// The same range inactive is fine.
	if _, err := Allocate(context.Background(), b, AllocateSpec{From: 2, To: 4, Fleet: live}); err != nil {
		t.Errorf("inactive allocation of an active shard elsewhere: %v", err)
	}
}

func TestMigrateEnv(t *testing.T) {
	// A service named in the environment must not redirect the command:
	// libpq prefers a service's settings to PGHOST and friends.
	services := filepath.Join(t.TempDir(), "pg_service.conf")
	os.WriteFile(services, []byte("[elsewhere]\nhost=service-host\n"), 0o644)
	t.Setenv("PGSERVICEFILE", services)
	t.Setenv("PGSERVICE", "elsewhere")
	t.Setenv("PGHOST", "wrong-host")
	t.Setenv("KEEP_ME", "1")
	// The DSN's CA file goes to the command too (it must exist: parsing
	// the DSN reads it).
	ca := filepath.Join(t.TempDir(), "ca.crt")
	os.WriteFile(ca, pgtest.NewTLS(t).CA, 0o644)
	dsnWithCA := "postgres://app:pa%20ss@db1.example:6432/shop?sslmode=verify-full&sslrootcert=" + url.QueryEscape(ca)
	env := map[string]string{}
	for _, kv := range MigrateEnv(dsnWithCA, 3, 4, []string{"sh0003", "sh0004"}) {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := env[k]; dup {
			t.Errorf("%s set twice", k)
		}
		env[k] = v
	}
	want := map[string]string{
		"PGHOST": "db1.example", "PGPORT": "6432", "PGDATABASE": "shop", "PGUSER": "app", "PGPASSWORD": "pa ss",
		"PGSSLMODE": "verify-full", "PGSSLROOTCERT": ca, "PGMS_SHARD_FROM": "3", "PGMS_SHARD_TO": "4", "PGMS_SCHEMAS": "sh0003,sh0004",
		"PGMS_DSN": dsnWithCA, "KEEP_ME": "1",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env["PGSERVICE"]; ok {
		t.Error("PGSERVICE kept: it would override PGHOST")
	}
	env = map[string]string{}
	for _, kv := range MigrateEnv("host=/run/pg port=5433 dbname=app user=u sslmode=disable", 1, 1, []string{"sh0001"}) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	if env["PGHOST"] != "/run/pg" || env["PGPORT"] != "5433" || env["PGSSLMODE"] != "disable" || env["PGDATABASE"] != "app" {
		t.Errorf("keyword/value DSN: %v", env)
	}
}
