package state

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgbin"
	"github.com/pgms-dev/pgms/internal/pgtest"
)

// startStandby makes a streaming standby of srv with pg_basebackup and
// starts it as the account that runs srv, returning its DSN for database.
// It skips the test for servers the harness did not start.
func startStandby(t *testing.T, srv *pgtest.Server, database string) string {
	t.Helper()
	if srv.DataDir == "" {
		t.Skip("standby needs a server started by the harness")
	}
	bins, err := pgtest.FindBinaries()
	if err != nil {
		t.Skip(err)
	}
	basebackup, err := pgbin.Find("pg_basebackup", srv.Version)
	if err != nil {
		t.Skip(err)
	}
	st, err := os.Stat(srv.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	cred := &syscall.Credential{Uid: sys.Uid, Gid: sys.Gid, NoSetGroups: true}

	parent := "/dev/shm"
	if _, err := os.Stat(parent); err != nil {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "pgms-standby-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, int(sys.Uid), int(sys.Gid)); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	backup := exec.Command(basebackup.Path, "-h", srv.Host, "-p", strconv.Itoa(srv.Port), "-U", pgtest.Superuser,
		"-D", data, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	backup.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	backup.Dir = dir
	if out, err := backup.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	logFile, err := os.Create(filepath.Join(dir, "standby.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	// A standby refuses to start with lower limits than its primary's.
	args := []string{"-D", data, "-c", "port=" + strconv.Itoa(port), "-c", "hot_standby=on"}
	for k, v := range pgtest.DefaultSettings {
		args = append(args, "-c", k+"="+v)
	}
	cmd := exec.Command(bins.Path("postgres"), args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	// The parent-death signal follows the thread that forks: keep that
	// thread alive for as long as the standby should live.
	started, stop := make(chan error), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		started <- cmd.Start()
		<-stop
	}()
	if err := <-started; err != nil {
		t.Fatalf("start standby: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGQUIT)
		<-exited
		close(stop)
	})

	standbyDSN := fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", pgtest.Superuser, port, database)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, standbyDSN)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return standbyDSN
		}
		select {
		case <-exited:
		case <-time.After(20 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
		}
		log, _ := os.ReadFile(filepath.Join(dir, "standby.log"))
		t.Fatalf("standby did not start: %v\n%s", err, log)
	}
}
