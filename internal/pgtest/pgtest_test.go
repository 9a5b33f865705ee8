package pgtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m, 3)) }

func TestServersAreLogicalAndSeparate(t *testing.T) {
	servers := Servers(t)
	if len(servers) != 3 {
		t.Fatalf("got %d servers", len(servers))
	}
	seen := map[int]bool{}
	for _, s := range servers {
		if seen[s.Port] {
			t.Fatalf("port %d used twice", s.Port)
		}
		seen[s.Port] = true
		conn := Connect(t, s.DSN("postgres"))
		var walLevel, dataDir string
		if err := conn.QueryRow(context.Background(), "SELECT current_setting('wal_level'), current_setting('data_directory')").Scan(&walLevel, &dataDir); err != nil {
			t.Fatal(err)
		}
		if walLevel != "logical" {
			t.Errorf("%s: wal_level = %s", s.Name, walLevel)
		}
		if s.DataDir != "" && filepath.Clean(dataDir) != filepath.Clean(s.DataDir) {
			t.Errorf("%s answers for %s, want %s", s.Name, dataDir, s.DataDir)
		}
	}
}

func TestServersDoNotRunAsRoot(t *testing.T) {
	for _, s := range Servers(t) {
		if s.proc == nil {
			t.Skip("external servers")
		}
		st, err := os.Stat(filepath.Join("/proc", itoa(s.proc.Pid)))
		if err != nil {
			t.Fatal(err)
		}
		if uid := statUID(st); uid == 0 {
			t.Errorf("%s runs as root", s.Name)
		}
	}
}

func TestDatabasesAreFreshAndDropped(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		dbs := Databases(t, 2)
		name = dbs[0].Name
		if dbs[1].Name != name {
			t.Fatalf("databases differ in name: %s, %s", name, dbs[1].Name)
		}
		conn := Connect(t, dbs[0].DSN)
		Exec(t, conn, "CREATE TABLE x (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE x")
		// A slot in the database would block DROP DATABASE.
		Exec(t, conn, "SELECT pg_create_logical_replication_slot('leftover_slot', 'pgoutput')")
		other := Connect(t, dbs[1].DSN)
		Exec(t, other, "CREATE TABLE x (id int PRIMARY KEY)")
		Exec(t, other, "CREATE SUBSCRIPTION s CONNECTION '"+dbs[0].DSN+"' PUBLICATION p WITH (create_slot = false, slot_name = 'leftover_slot', enabled = false)")
	})
	for _, s := range Servers(t)[:2] {
		conn := Connect(t, s.DSN("postgres"))
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s: database %s still exists", s.Name, name)
		}
	}
}

func TestCrashAndRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, 1, Options{Settings: map[string]string{"max_connections": "20"}})
	if err != nil {
		t.Skipf("cannot start an extra server: %v", err)
	}
	defer c.Close()
	s := c.Servers[0]
	if s.proc == nil {
		t.Skip("external servers cannot crash")
	}
	dir := s.dir
	s.Crash()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	conn := Connect(t, s.DSN("postgres"))
	var mc string
	if err := conn.QueryRow(ctx, "SHOW max_connections").Scan(&mc); err != nil || mc != "20" {
		t.Fatalf("max_connections = %q, %v", mc, err)
	}
	conn.Close(ctx)
	c.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory %s left behind", dir)
	}
	if !strings.HasPrefix(s.LogTail(5), "") {
		t.Error("unreachable")
	}
}
