package executor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pgms-dev/pgms/internal/pgtest"
	"github.com/pgms-dev/pgms/sql"
)

// smallDisk mounts a tmpfs of size bytes for a test, or skips the test
// where mounting is not allowed.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgms-small-disk-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		os.Remove(dir)
		t.Skipf("cannot mount a tmpfs here (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("umount", "-l", dir).Run()
		os.Remove(dir)
	})
	return dir
}

// fill writes a file on the file system of dir until about leave bytes
// are free.
func fill(t *testing.T, dir string, leave int64) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for written := int64(0); written < free-leave; written += int64(len(chunk)) {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
}

// TestDestinationOutOfDisk: a destination without room for the copy is
// refused at preflight, naming the node and the sizes; one that runs out
// during the copy fails the move naming it, and the undo still removes the
// source's slot and publication, which would otherwise retain WAL; once
// room is made, the same move runs to the end.
func TestDestinationOutOfDisk(t *testing.T) {
	disk := smallDisk(t, "200m")
	cl, err := pgtest.Start(context.Background(), 1, pgtest.Options{Dir: disk, Settings: map[string]string{"max_wal_size": "64MB", "min_wal_size": "32MB"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	dstServer := cl.Servers[0]
	admin := pgtest.Connect(t, dstServer.DSN("postgres"))
	pgtest.Exec(t, admin, "CREATE DATABASE app")
	c := newCluster(t)
	c.dst = pgtest.DB{DSN: dstServer.DSN("app")}
	c.b = pgtest.Connect(t, c.dst.DSN)
	if _, err := sql.Install(context.Background(), c.b, sql.Options{}); err != nil {
		t.Fatal(err)
	}

	// Too big for the room there: refused before anything is created.
	c.shard(40, `CREATE TABLE big (id bigserial PRIMARY KEY, pad text);
		INSERT INTO big (pad) SELECT repeat('x', 900) FROM generate_series(1, 120000) g`)
	_, err = Move(context.Background(), c.spec(40, true), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "node b has") || !strings.Contains(err.Error(), "free on its data directory's file system") {
		t.Fatalf("move of a shard too big: %v", err)
	}
	c.noArtifacts()

	// Room enough at preflight, gone during the copy.
	c.shard(41, `CREATE TABLE mid (id bigserial PRIMARY KEY, pad text);
		INSERT INTO mid (pad) SELECT repeat('y', 900) FROM generate_series(1, 20000) g`)
	ctx := hookAt("move.replicate.end", func() error { fill(t, disk, 2<<20); return nil })
	_, err = Move(ctx, c.spec(41, true), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "node b") {
		t.Fatalf("move onto a full disk: %v", err)
	}
	t.Logf("move onto a full disk: %v", err)
	var pubs, slots int
	c.a.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM pg_publication), (SELECT count(*) FROM pg_replication_slots WHERE database = current_database())").Scan(&pubs, &slots)
	if pubs+slots > 0 {
		t.Errorf("the source kept %d publications and %d slots after the undo", pubs, slots)
	}
	// Room again: the server may have stopped on the full disk.
	os.Remove(filepath.Join(disk, "filler"))
	if err := dstServer.Restart(context.Background()); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	c.b = pgtest.Connect(t, c.dst.DSN)
	if _, err := Move(context.Background(), c.spec(41, true), nil, nil); err != nil {
		t.Fatalf("move once room was made: %v", err)
	}
	c.noArtifacts()
}
