package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Superuser is the database superuser of servers the harness starts.
const Superuser = "postgres"

// DefaultSettings are the server settings the harness starts with: logical
// replication enabled with room for many moves, durability traded for speed.
// synchronous_commit stays on: walsenders only send flushed WAL, and off
// delays every streamed change by up to wal_writer_delay.
var DefaultSettings = map[string]string{
	"wal_level":                         "logical",
	"max_wal_senders":                   "40",
	"max_replication_slots":             "40",
	"max_worker_processes":              "32",
	"max_logical_replication_workers":   "16",
	"max_sync_workers_per_subscription": "4",
	"max_connections":                   "200",
	"shared_buffers":                    "64MB",
	"fsync":                             "off",
	"full_page_writes":                  "off",
	"wal_retrieve_retry_interval":       "1s",
	"max_wal_size":                      "2GB",
	"listen_addresses":                  "127.0.0.1",
	"unix_socket_directories":           "",
	"log_line_prefix":                   "%m [%p] %q%d ",
	"log_timezone":                      "UTC",
	"timezone":                          "UTC",
	"dynamic_shared_memory_type":        "posix",
	"huge_pages":                        "off",
}

// Server is one throwaway PostgreSQL server.
type Server struct {
	Name    string // s0, s1, … in start order
	Host    string
	Port    int
	DataDir string // empty for servers the harness did not start
	Version int

	dir      string // everything of this server: data, log
	logPath  string
	proc     *os.Process
	exited   chan struct{}
	exitErr  error
	mu       sync.Mutex
	owned    bool
	user     serverUser
	settings map[string]string
	bins     Binaries
	baseDSN  string // for external servers: how to reach them

	// Standbys (standby.go): a standby knows its primary and slot, so
	// that removing it frees the slot; a server knows the standbys made
	// from it, so that removing it removes them first.
	primary  *Server
	slot     string
	standbys []*Server // under mu
	nstandby int       // standbys started, for default names; under mu
}

// DSN returns a URL for database on this server as the superuser.
func (s *Server) DSN(database string) string {
	if s.baseDSN != "" {
		cfg, err := pgx.ParseConfig(s.baseDSN)
		if err == nil {
			return rewriteDatabase(s.baseDSN, cfg.Database, database)
		}
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", Superuser, s.Host, s.Port, database)
}

// Addr returns host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// LogTail returns the last n lines of the server log.
func (s *Server) LogTail(n int) string {
	if s.logPath == "" {
		return ""
	}
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Log returns the whole server log.
func (s *Server) Log() string {
	data, _ := os.ReadFile(s.logPath)
	return string(data)
}

// spawner forks every postmaster from one goroutine locked to an OS thread
// that never exits: the parent-death signal fires when the forking *thread*
// dies, and Go may retire ordinary threads at any time.
var spawner = struct {
	once sync.Once
	reqs chan spawnRequest
}{}

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread()
			for r := range spawner.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawner.reqs <- spawnRequest{cmd: cmd, done: done}
	return <-done
}

// rootDir is where all servers of this machine's test runs live: /dev/shm
// when it has room (a data directory is ~1000 files and disk-backed tmp makes
// every start ten times slower), the system temp directory otherwise.
func rootDir() string {
	if d := os.Getenv("PGMS_TEST_DIR"); d != "" {
		return d
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err == nil && uint64(st.Bavail)*uint64(st.Bsize) > 2<<30 {
		return "/dev/shm/pgms-test"
	}
	return filepath.Join(os.TempDir(), "pgms-test")
}

// prepareRoot creates the root directory and removes directories of earlier
// test processes that no longer run (a binary killed by -timeout runs no
// cleanups; its servers died with it through the parent-death signal).
func prepareRoot(root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "run-") && !strings.HasPrefix(name, "tmp-") {
			continue
		}
		parts := strings.SplitN(name, "-", 3)
		pid, err := strconv.Atoi(parts[1])
		if err != nil || processAlive(pid) {
			continue
		}
		os.RemoveAll(filepath.Join(root, name))
	}
	return nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func randomSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// template returns a data directory made by initdb, built once per machine
// for a given installation and argument list, and copied for every server.
// It is built in a private directory and renamed into place so that test
// binaries running side by side never see half a template.
func template(root string, bins Binaries, u serverUser) (string, error) {
	args := initdbArgs(bins.Version)
	h := sha256.Sum256([]byte(bins.Dir + "\x00" + strconv.Itoa(bins.Version) + "\x00" + strings.Join(args, "\x00") + "\x00" + u.Name))
	final := filepath.Join(root, "template-"+hex.EncodeToString(h[:8]))
	if _, err := os.Stat(filepath.Join(final, "PG_VERSION")); err == nil {
		return final, nil
	}
	tmp := filepath.Join(root, fmt.Sprintf("tmp-%d-%s", os.Getpid(), randomSuffix()))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := u.own(tmp); err != nil {
		return "", err
	}
	data := filepath.Join(tmp, "data")
	cmd := exec.Command(bins.Path("initdb"), append([]string{"-D", data}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.credential}
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if err := os.Rename(data, final); err != nil {
		// Another test binary won the race: use its template.
		if _, statErr := os.Stat(filepath.Join(final, "PG_VERSION")); statErr == nil {
			return final, nil
		}
		return "", err
	}
	return final, nil
}

// copyTree copies a data directory, keeping modes.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		if info.Mode()&os.ModeSymlink != 0 {
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_EXCL, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServer creates a data directory from the template and starts a
// postmaster on a free port, retrying when another process takes the port
// between picking and binding it.
func startServer(ctx context.Context, root, name string, bins Binaries, u serverUser, tmpl string, opts Options) (*Server, error) {
	dir := filepath.Join(root, fmt.Sprintf("run-%d-%s-%s", os.Getpid(), name, randomSuffix()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := copyTree(tmpl, data); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("copy template: %w", err)
	}
	if err := os.Chmod(data, 0o700); err != nil {
		return nil, err
	}
	if err := writeDataFiles(data, opts); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start server %s: %w", name, err)
	}
	if err := u.own(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{
		Name: name, Host: "127.0.0.1", DataDir: data, Version: bins.Version,
		dir: dir, logPath: filepath.Join(dir, "server.log"), owned: true,
		user: u, bins: bins, settings: map[string]string{},
	}
	for k, v := range DefaultSettings {
		s.settings[k] = v
	}
	for k, v := range opts.Settings {
		s.settings[k] = v
	}
	if err := s.launchOnFreePort(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start server %s: %w", name, err)
	}
	return s, nil
}

// launchOnFreePort starts the postmaster on a free port, retrying when
// another process takes the port between picking and binding it.
func (s *Server) launchOnFreePort(ctx context.Context) error {
	var lastErr error
	for attempt := 0; attempt < 8; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		s.Port = port
		lastErr = s.launch(ctx)
		if lastErr == nil || !strings.Contains(lastErr.Error(), "already in use") {
			break
		}
	}
	return lastErr
}

// launch starts the postmaster on s.Port and waits until it accepts
// connections for our own data directory.
func (s *Server) launch(ctx context.Context) error {
	keys := make([]string, 0, len(s.settings))
	for k := range s.settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", s.DataDir, "-c", "port=" + strconv.Itoa(s.Port)}
	for _, k := range keys {
		args = append(args, "-c", k+"="+s.settings[k])
	}
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	offset, _ := logFile.Seek(0, io.SeekEnd)

	cmd := exec.Command(s.bins.Path("postgres"), args...)
	cmd.Env = serverEnv(s.dir)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: s.user.credential,
		// Go sets the parent-death signal after switching credentials (a
		// credential switch would clear it). SIGQUIT is an immediate
		// shutdown that also ends the backends.
		Pdeathsig: syscall.SIGQUIT,
		Setpgid:   true,
	}
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("exec postgres: %w", err)
	}
	s.mu.Lock()
	s.proc = cmd.Process
	s.exited = make(chan struct{})
	s.exitErr = nil
	exited := s.exited
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.exitErr = err
		s.mu.Unlock()
		close(exited)
	}()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("postgres exited during start-up: %s", s.logSince(offset))
		default:
		}
		if ok, err := s.ready(ctx); ok {
			return nil
		} else if err != nil {
			s.kill()
			return err
		}
		if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("postgres did not accept connections within 60s: %s", s.logSince(offset))
		}
		select {
		case <-ctx.Done():
			s.kill()
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// serverEnv is the environment of a postmaster: this process's, with HOME
// the server's own directory. The server's libpq (subscriptions, standbys'
// WAL receivers) looks there for ~/.postgresql's client certificate and
// root certificates: not in the home of whoever runs the tests, which the
// server account may not enter, and whose files must not leak into tests.
func serverEnv(dir string) []string {
	env := []string{"HOME=" + dir}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

func (s *Server) logSince(offset int64) string {
	data, _ := os.ReadFile(s.logPath)
	if int64(len(data)) > offset {
		data = data[offset:]
	}
	return strings.TrimSpace(string(data))
}

// ready reports whether the server on s.Port is ours and accepts
// connections; an error means another server answers on that port.
func (s *Server) ready(ctx context.Context) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, s.DSN("postgres"))
	if err != nil {
		return false, nil
	}
	defer conn.Close(ctx)
	var dataDir string
	if err := conn.QueryRow(cctx, "SHOW data_directory").Scan(&dataDir); err != nil {
		return false, nil
	}
	if filepath.Clean(dataDir) != filepath.Clean(s.DataDir) {
		return false, fmt.Errorf("port %d already in use by another server (data directory %s)", s.Port, dataDir)
	}
	return true, nil
}

// Stop shuts the server down (fast mode: sessions are ended, nothing is
// flushed since fsync is off) and waits for it.
func (s *Server) Stop() error {
	s.mu.Lock()
	proc, exited := s.proc, s.exited
	s.mu.Unlock()
	if proc == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	proc.Signal(syscall.SIGINT)
	select {
	case <-exited:
		return nil
	case <-time.After(15 * time.Second):
	}
	proc.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
		return nil
	case <-time.After(5 * time.Second):
	}
	s.kill()
	return fmt.Errorf("server %s did not stop within 20s; killed", s.Name)
}

func (s *Server) kill() {
	s.mu.Lock()
	proc, exited := s.proc, s.exited
	s.mu.Unlock()
	if proc == nil {
		return
	}
	// PostgreSQL makes every child of the postmaster the leader of a
	// process group of its own, so killing the postmaster's group leaves
	// the backends running until they notice the postmaster's death, and
	// meanwhile they still serve (a WAL sender keeps sending) and keep the
	// shared memory a restart needs free. Stopping the postmaster first
	// means it forks no child after the list below is taken.
	syscall.Kill(proc.Pid, syscall.SIGSTOP)
	children := childrenOf(proc.Pid)
	for _, pid := range children {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	syscall.Kill(-proc.Pid, syscall.SIGKILL)
	<-exited
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if !slices.ContainsFunc(children, running) {
			break
		}
	}
}

// procStat returns the fields of /proc/<pid>/stat after the command name
// (state, ppid, pgrp, …), or nil if the process is gone.
func procStat(pid string) []string {
	stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return nil
	}
	// The command name is in parentheses and may hold spaces and
	// parentheses itself.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(stat[i+1:]))
}

// childrenOf lists the processes whose parent is ppid.
func childrenOf(ppid int) []int {
	entries, _ := os.ReadDir("/proc")
	want := strconv.Itoa(ppid)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := procStat(e.Name()); len(f) > 1 && f[1] == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// running reports whether a process exists and is not a zombie. A zombie
// has released its memory, and an init that does not reap orphans may keep
// it forever.
func running(pid int) bool {
	f := procStat(strconv.Itoa(pid))
	return len(f) > 0 && f[0] != "Z"
}

// StopImmediate stops the server the way pg_ctl stop -m immediate does:
// SIGQUIT makes the postmaster end every backend at once and exit without a
// shutdown checkpoint, so the next start runs crash recovery. Unlike Crash,
// the postmaster itself takes the server down.
func (s *Server) StopImmediate() error {
	s.mu.Lock()
	proc, exited := s.proc, s.exited
	s.mu.Unlock()
	if proc == nil {
		return nil
	}
	proc.Signal(syscall.SIGQUIT)
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	s.kill()
	return fmt.Errorf("server %s did not stop within 10s of SIGQUIT; killed", s.Name)
}

// Crash kills the server and every backend at once, like a power cut
// (without the data loss fsync=off would then cause: the OS keeps the pages).
func (s *Server) Crash() { s.kill() }

// Restart starts a stopped or crashed server again on the same port.
func (s *Server) Restart(ctx context.Context) error {
	if !s.owned {
		return errors.New("cannot restart a server the harness did not start")
	}
	s.Stop()
	// After a crash, backends killed with the postmaster may still be
	// detaching from its shared memory; the new postmaster refuses to start
	// until they have.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.launch(ctx)
		if err == nil || !strings.Contains(err.Error(), "pre-existing shared memory block") || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// remove stops the server and deletes its directory.
func (s *Server) remove() error {
	if !s.owned {
		return nil
	}
	s.removeStandbys()
	err := s.Stop()
	s.dropSlotOnPrimary()
	if rmErr := os.RemoveAll(s.dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}
