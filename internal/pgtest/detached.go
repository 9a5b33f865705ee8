package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// StartDetached starts servers that keep running after this process exits,
// for demos: their data directories live under dir (dir/<name>/data), they
// are started with pg_ctl, and StopDetached stops them. Settings go into
// postgresql.conf so that a later pg_ctl start or stop needs no options.
func StartDetached(ctx context.Context, dir string, names []string, opts Options) ([]*Server, error) {
	l, err := prepareLocal(0)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(abs, 0o755); err != nil {
		return nil, err
	}
	var servers []*Server
	for _, name := range names {
		s, err := startDetached(ctx, filepath.Join(abs, name), name, l.bins, l.user, l.tmpl, opts.Settings)
		if err != nil {
			StopDetached(dir)
			return nil, err
		}
		servers = append(servers, s)
	}
	return servers, nil
}

func startDetached(ctx context.Context, dir, name string, bins Binaries, u serverUser, tmpl string, extra map[string]string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := copyTree(tmpl, data); err != nil {
		return nil, fmt.Errorf("copy template: %w", err)
	}
	if err := os.Chmod(data, 0o700); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	settings := map[string]string{}
	for k, v := range DefaultSettings {
		settings[k] = v
	}
	for k, v := range extra {
		settings[k] = v
	}
	settings["port"] = fmt.Sprint(port)
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var conf strings.Builder
	conf.WriteString("\n# Settings of a pgms demo server.\n")
	for _, k := range keys {
		fmt.Fprintf(&conf, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteString(conf.String()); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	if err := u.own(dir); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "server.log")
	cmd := exec.CommandContext(ctx, bins.Path("pg_ctl"), "start", "-w", "-t", "60", "-D", data, "-l", logPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.credential, Setsid: true}
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("start server %s: pg_ctl: %v: %s\n%s", name, err, out, log)
	}
	s := &Server{Name: name, Host: "127.0.0.1", Port: port, DataDir: data, Version: bins.Version, dir: dir, logPath: logPath}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := s.ready(ctx)
		if ok {
			return s, nil
		}
		if err != nil || time.Now().After(deadline) {
			return nil, fmt.Errorf("server %s on port %d: not ready: %v", name, port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StopDetached stops every server StartDetached started under dir.
func StopDetached(dir string) error {
	bins, err := FindBinaries()
	if err != nil {
		return err
	}
	u, err := resolveServerUser()
	if err != nil {
		return err
	}
	datas, _ := filepath.Glob(filepath.Join(dir, "*", "data"))
	var firstErr error
	for _, data := range datas {
		if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err != nil {
			continue
		}
		cmd := exec.Command(bins.Path("pg_ctl"), "stop", "-w", "-m", "fast", "-D", data)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.credential}
		if out, err := cmd.CombinedOutput(); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("stop %s: %v: %s", data, err, out)
		}
	}
	return firstErr
}
