package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgbin"
)

// StandbyOptions tune StartStandby.
type StandbyOptions struct {
	// Name names the standby's Server and directory; default
	// <primary>_standby<n>, e.g. s0_standby1.
	Name string
	// ApplicationName is the name the standby gives itself on the
	// replication connection: pg_stat_replication shows it and
	// synchronous_standby_names refers to it. Default: Name.
	ApplicationName string
	// Via is a host:port at which the standby reaches the primary for
	// streaming instead of the primary's own address, e.g. a
	// netfault.Proxy's. The base backup always connects directly.
	Via string
	// Slot names a physical replication slot, created on the primary by
	// the base backup, that the standby streams from. Removing the standby
	// drops it. Empty: no slot.
	Slot string
	// Settings are extra server settings on top of the primary's.
	Settings map[string]string
}

// StartStandby makes a streaming hot standby of s, a server the harness
// started: a base backup by pg_basebackup, standby.signal, and
// primary_conninfo (with primary_slot_name) in postgresql.auto.conf, where
// ALTER SYSTEM can later change them. The standby runs with s's settings on
// a free port, as the same account, and is removed with s (or by Remove);
// like every server here it dies with the test binary. StartStandby returns
// once the standby streams.
//
// The backup copies s's postgresql.auto.conf: a standby made after
// SetSynchronousStandbys keeps that setting, which matters once it is
// promoted.
func (s *Server) StartStandby(ctx context.Context, opts StandbyOptions) (*Server, error) {
	if !s.owned {
		return nil, errors.New("pgtest: standbys need a primary the harness started itself")
	}
	s.mu.Lock()
	s.nstandby++
	n := s.nstandby
	s.mu.Unlock()
	name := opts.Name
	if name == "" {
		name = fmt.Sprintf("%s_standby%d", s.Name, n)
	}
	app := opts.ApplicationName
	if app == "" {
		app = name
	}
	host, port := s.Host, strconv.Itoa(s.Port)
	if opts.Via != "" {
		var err error
		if host, port, err = net.SplitHostPort(opts.Via); err != nil {
			return nil, fmt.Errorf("pgtest: standby %s: Via: %w", name, err)
		}
	}

	// The run-<pid>- prefix lets a later run remove the directory if this
	// process dies without cleaning up, as for every other server.
	dir := filepath.Join(filepath.Dir(s.dir), fmt.Sprintf("run-%d-%s-%s", os.Getpid(), name, randomSuffix()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	sb := &Server{
		Name: name, Host: "127.0.0.1", DataDir: filepath.Join(dir, "data"), Version: s.Version,
		dir: dir, logPath: filepath.Join(dir, "server.log"), owned: true,
		user: s.user, bins: s.bins, settings: map[string]string{},
		primary: s,
	}
	for k, v := range s.settings {
		sb.settings[k] = v
	}
	for k, v := range opts.Settings {
		sb.settings[k] = v
	}
	fail := func(err error) (*Server, error) {
		sb.remove()
		return nil, fmt.Errorf("pgtest: standby %s of %s: %w", name, s.Name, err)
	}
	if err := s.user.own(dir); err != nil {
		return fail(err)
	}
	if err := s.baseBackup(ctx, sb.DataDir, opts.Slot); err != nil {
		return fail(err)
	}
	// Only now is the slot known to be this standby's, for removal to drop.
	sb.slot = opts.Slot

	conninfo := fmt.Sprintf("host=%s port=%s user=%s application_name=%s sslmode=disable",
		conninfoQuote(host), port, Superuser, conninfoQuote(app))
	conf := "\n# Streaming from the primary (pgtest).\nprimary_conninfo = " + confQuote(conninfo) + "\n"
	if opts.Slot != "" {
		conf += "primary_slot_name = " + confQuote(opts.Slot) + "\n"
	}
	if err := appendFile(filepath.Join(sb.DataDir, "postgresql.auto.conf"), conf); err != nil {
		return fail(err)
	}
	signal := filepath.Join(sb.DataDir, "standby.signal")
	if err := os.WriteFile(signal, nil, 0o600); err != nil {
		return fail(err)
	}
	if err := s.user.own(signal); err != nil {
		return fail(err)
	}
	if err := sb.launchOnFreePort(ctx); err != nil {
		return fail(err)
	}
	if err := sb.waitStreaming(ctx); err != nil {
		return fail(fmt.Errorf("%w\n%s", err, sb.LogTail(20)))
	}
	s.mu.Lock()
	s.standbys = append(s.standbys, sb)
	s.mu.Unlock()
	return sb, nil
}

// baseBackup copies s into data with pg_basebackup, run as the server
// account so that the copy belongs to it. WAL is streamed alongside so the
// copy is consistent on its own; a fast checkpoint and no fsync keep it
// quick.
func (s *Server) baseBackup(ctx context.Context, data, slot string) error {
	args := []string{
		"-D", data,
		"-d", fmt.Sprintf("host=%s port=%d user=%s sslmode=disable", s.Host, s.Port, Superuser),
		"-X", "stream", "-c", "fast", "--no-sync",
	}
	if slot != "" {
		args = append(args, "--create-slot", "--slot", slot)
	}
	cmd := exec.CommandContext(ctx, s.basebackupProgram(), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.user.credential}
	cmd.Dir = filepath.Dir(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_basebackup: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// basebackupProgram is the installation's pg_basebackup, or else one of
// the client programs able to back up a server of this version (the
// cached builds of scripts/pg-versions.sh have no client programs; the
// cached Debian clients do).
func (s *Server) basebackupProgram() string {
	p := s.bins.tool("pg_basebackup")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if dir := CachedClientDir(s.Version); dir != "" {
		return filepath.Join(dir, "pg_basebackup")
	}
	if found, err := pgbin.Find("pg_basebackup", s.Version); err == nil {
		return found.Path
	}
	return p
}

// waitStreaming waits until the standby's WAL receiver streams from its
// primary, for at most 30s.
func (s *Server) waitStreaming(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for {
		var status string
		err := conn.QueryRow(ctx, "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'not running')").Scan(&status)
		if err == nil && status == "streaming" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the standby does not stream (WAL receiver: %s, %v)", status, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Promote ends recovery on a standby, making it a primary, and returns once
// it accepts writes.
func (s *Server) Promote(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("promote %s: %w", s.Name, err)
	}
	defer conn.Close(context.Background())
	// pg_promote with wait = true returns once recovery has ended.
	var promoted bool
	if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&promoted); err != nil {
		return fmt.Errorf("promote %s: %w", s.Name, err)
	}
	if !promoted {
		return fmt.Errorf("promote %s: still in recovery after 60s\n%s", s.Name, s.LogTail(20))
	}
	return nil
}

// SetSynchronousStandbys sets synchronous_standby_names on s (ALTER SYSTEM
// and a reload): names in that setting's syntax, e.g. "sb1" or
// "FIRST 1 (sb1, sb2)", makes commits wait for those standbys; "" makes them
// wait for none. It returns once new commits follow the new value.
func (s *Server) SetSynchronousStandbys(ctx context.Context, names string) error {
	if _, ok := s.settings["synchronous_standby_names"]; ok {
		return fmt.Errorf("%s: synchronous_standby_names is set on the command line (Options.Settings), which ALTER SYSTEM cannot override", s.Name)
	}
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	stmt := "ALTER SYSTEM RESET synchronous_standby_names"
	if names != "" {
		stmt = "ALTER SYSTEM SET synchronous_standby_names = '" + strings.ReplaceAll(names, "'", "''") + "'"
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return err
	}
	// pg_reload_conf only signals the postmaster. Once a new session sees
	// the value, the postmaster has re-read the files and has signalled its
	// children, which it does before it forks again.
	for {
		c, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err != nil {
			return err
		}
		var v string
		err = c.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&v)
		c.Close(context.Background())
		if err != nil {
			return err
		}
		if v == names {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	// Whether a commit waits depends on a flag in shared memory that the
	// checkpointer sets when it handles the reload. It does so before it
	// starts a requested checkpoint, so once CHECKPOINT returns, every new
	// commit sees the new value.
	_, err = conn.Exec(ctx, "CHECKPOINT")
	return err
}

// Remove stops the server and deletes its directory, with the standbys made
// from it; a standby also drops its slot on its primary. Servers are removed
// with their cluster anyway: this is for a test that wants one gone sooner.
// Removing twice is harmless.
func (s *Server) Remove() error { return s.remove() }

// removeStandbys removes the standbys made from s, before s itself goes.
func (s *Server) removeStandbys() {
	s.mu.Lock()
	standbys := s.standbys
	s.standbys = nil
	s.mu.Unlock()
	for _, sb := range standbys {
		sb.remove()
	}
}

// dropSlotOnPrimary frees the replication slot of a stopped standby, if its
// primary still runs: a forgotten slot keeps WAL on the primary forever.
func (s *Server) dropSlotOnPrimary() {
	if s.primary == nil || s.slot == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.primary.DSN("postgres"))
	if err != nil {
		return
	}
	defer conn.Close(context.Background())
	// The primary's WAL sender may not have noticed yet that the standby
	// is gone, and a slot in use cannot be dropped.
	for ctx.Err() == nil {
		conn.Exec(ctx, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL", s.slot)
		conn.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", s.slot)
		var left int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", s.slot).Scan(&left); err != nil || left == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// conninfoQuote quotes a libpq connection-string value.
func conninfoQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// confQuote quotes a postgresql.conf string value, where a backslash is an
// escape character too.
func confQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(v) + "'"
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
