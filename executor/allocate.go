package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
	"github.com/pgms-dev/pgms/state"
)

// AllocateSpec describes an allocation of a range of new shards on one node.
type AllocateSpec struct {
	From, To int
	// MigrateCommand is run (argv, no shell) after the schemas exist and
	// before they are activated; empty runs nothing. It finds the node and
	// the range in its environment: see MigrateEnv.
	MigrateCommand []string
	// Activate activates the range once the command succeeded.
	Activate bool
	// LibrarySchema is the library's schema; sql.DefaultSchema when empty.
	LibrarySchema string
	// Naming, when set, must agree with the names the node's library gives
	// the shards; a node named differently is refused before anything is
	// created.
	Naming sql.Naming
	// Fleet, when set, lists every node of the cluster. Allocate then claims
	// the range on the node for its whole run and, when it activates,
	// checks the fleet before creating anything and again just before
	// activating: shards active on another node, claimed by another run,
	// or on a node that cannot be read are refused.
	Fleet *state.Fleet
	// Who describes the run in its claims; default this process.
	Who state.Invocation
	// Stdout and Stderr receive the command's output, each line prefixed
	// with "[migrate <node>] "; nil discards it.
	Stdout, Stderr io.Writer
	// Before, when set, is called before each step that changes something:
	// "create", "migrate", "activate".
	Before func(step string)
}

// AllocateResult says what Allocate found and did.
type AllocateResult struct {
	Schemas   []string      // the range's schema names, in shard order
	Created   []string      // schemas that did not exist before
	Activated []string      // schemas that were not active before and are now
	Migrated  bool          // the migrate command ran and succeeded
	MigrateIn time.Duration // how long it ran
}

// MigrateError says that the migrate command failed. The shards of the
// range exist; those that were not active stay inactive.
type MigrateError struct {
	Node     string
	From, To int
	// Inactive are the shards of the range that stay inactive.
	Inactive []int
	// ExitCode is the command's exit status; -1 when it did not exit
	// normally (killed by a signal, or could not start).
	ExitCode    int
	Interrupted bool // the context was cancelled
	Err         error
}

func (e *MigrateError) Error() string {
	var how string
	switch {
	case e.Interrupted:
		how = "was interrupted"
	case e.ExitCode >= 0:
		how = fmt.Sprintf("failed (exit %d)", e.ExitCode)
	default:
		how = fmt.Sprintf("failed (%s)", e.Err)
	}
	stay := "the shards exist and stay inactive"
	if len(e.Inactive) != e.To-e.From+1 {
		if len(e.Inactive) == 0 {
			stay = "the shards were already active and stay so"
		} else {
			stay = fmt.Sprintf("shards %s exist and stay inactive", compactShards(e.Inactive))
		}
	}
	fix := "fix the migration and run again"
	if e.Interrupted {
		fix = "run again to finish"
	}
	return fmt.Sprintf("migrate command %s for %s on node %s; %s; %s", how, shardRange(e.From, e.To), e.Node, stay, fix)
}

func (e *MigrateError) Unwrap() error { return e.Err }

// Allocate creates the missing shard schemas from..to on node
// (microsharding_ensure_exist), runs the migrate command, and activates
// the range when asked. Every step is idempotent, so running it again after
// a failure converges; the migrate command must be idempotent itself, as
// migration tools are. When the command fails nothing is activated and the
// error is a *MigrateError.
func Allocate(ctx context.Context, node *pgutil.Node, spec AllocateSpec) (AllocateResult, error) {
	var res AllocateResult
	lib := libraryOf(spec.LibrarySchema)
	what := fmt.Sprintf("allocate %s on node %s", shardRange(spec.From, spec.To), node.Name)
	if err := checkRange(spec.From, spec.To); err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	if spec.Naming != (sql.Naming{}) && spec.To > spec.Naming.MaxShard() {
		return res, fmt.Errorf("%s: shard %d does not fit the schema naming %s (the largest is %d)",
			what, spec.To, spec.Naming.SchemaName(0), spec.Naming.MaxShard())
	}
	schemas, before, err := rangeState(ctx, node, lib, spec.From, spec.To)
	if err != nil {
		return res, pgutil.Wrap(err, "%s", what)
	}
	res.Schemas = schemas
	if spec.Naming != (sql.Naming{}) {
		if want := spec.Naming.SchemaName(spec.From); schemas[0] != want {
			return res, fmt.Errorf("%s: the node names shard %d %q, the configuration %q; align the naming (pgms install --schema-prefix/--schema-digits) first",
				what, spec.From, schemas[0], want)
		}
	}
	on := node
	if spec.Fleet != nil {
		claim, err := claimRange(ctx, node, lib, schemas, spec.From, spec.To, "allocate", spec.Who)
		if err != nil {
			return res, fmt.Errorf("%s: %w", what, err)
		}
		defer claim.Release(ctx)
		on = claim.Node()
		if spec.Activate {
			if err := checkFleet(ctx, spec.Fleet, node, lib, schemas, spec.From, spec.To); err != nil {
				return res, fmt.Errorf("%s: %w", what, err)
			}
		}
	}

	announce := func(step string) {
		if spec.Before != nil {
			spec.Before(step)
		}
	}
	announce("create")
	err = on.Conn.QueryRow(ctx,
		"SELECT ARRAY(SELECT s::text FROM "+pgutil.Quote(lib, "microsharding_ensure_exist")+"($1, $2) s)",
		spec.From, spec.To).Scan(&res.Created)
	if err != nil {
		return res, pgutil.Wrap(libraryHint(err, lib), "%s: create schemas", what)
	}

	if len(spec.MigrateCommand) > 0 {
		announce("migrate")
		start := time.Now()
		env := MigrateEnv(node.DSN, spec.From, spec.To, schemas)
		err := runCommand(ctx, spec.MigrateCommand, env, "[migrate "+node.Name+"] ", spec.Stdout, spec.Stderr)
		res.MigrateIn = time.Since(start)
		if err != nil {
			merr := &MigrateError{Node: node.Name, From: spec.From, To: spec.To, ExitCode: -1, Err: err}
			for i, s := range schemas {
				if !before[s] {
					merr.Inactive = append(merr.Inactive, spec.From+i)
				}
			}
			var exitErr *exec.ExitError
			switch {
			case ctx.Err() != nil:
				merr.Interrupted = true
			case errors.As(err, &exitErr) && exitErr.Exited():
				merr.ExitCode = exitErr.ExitCode()
			}
			return res, merr
		}
		res.Migrated = true
	}

	if spec.Activate {
		announce("activate")
		if spec.Fleet != nil {
			// The migration may have run for minutes: read the fleet again.
			if err := checkFleet(ctx, spec.Fleet, node, lib, schemas, spec.From, spec.To); err != nil {
				return res, fmt.Errorf("%s: %w", what, err)
			}
		}
		if err := ensure(ctx, on, lib, "microsharding_ensure_active", spec.From, spec.To); err != nil {
			return res, pgutil.Wrap(err, "%s: activate", what)
		}
		res.Activated = notIn(schemas, before)
	}
	return res, nil
}

// Environment variables the migrate command receives, on top of pgms's own
// environment.
const (
	EnvDSN       = "PGMS_DSN"        // the node's DSN, password included if it has one
	EnvShardFrom = "PGMS_SHARD_FROM" // first shard of the range
	EnvShardTo   = "PGMS_SHARD_TO"   // last shard of the range
	EnvSchemas   = "PGMS_SCHEMAS"    // the range's schema names, comma-separated
)

// libpqFiles are the DSN's TLS and password-file parameters a migrate
// command receives as libpq variables: a DSN that verifies the server
// against its own CA, or authenticates by certificate, does the same for
// the command.
var libpqFiles = map[string]string{
	"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
	"sslcrl": "PGSSLCRL", "passfile": "PGPASSFILE",
}

// MigrateEnv returns the environment of a migrate command: pgms's own,
// with the node's DSN and the range in PGMS_* variables, and the libpq
// variables (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGSSLMODE,
// and the DSN's TLS files) pointing at the node. pg-microsharding runs the command in its own
// environment, where those libpq variables name the node, so scripts
// written for it (psql, pg-mig) keep working.
func MigrateEnv(connString string, from, to int, schemas []string) []string {
	set := map[string]string{
		EnvDSN:       connString,
		EnvShardFrom: strconv.Itoa(from),
		EnvShardTo:   strconv.Itoa(to),
		EnvSchemas:   strings.Join(schemas, ","),
	}
	if cfg, err := pgconn.ParseConfig(connString); err == nil {
		set["PGHOST"] = cfg.Host
		set["PGPORT"] = strconv.Itoa(int(cfg.Port))
		set["PGDATABASE"] = cfg.Database
		set["PGUSER"] = cfg.User
		if cfg.Password != "" {
			set["PGPASSWORD"] = cfg.Password
		}
	}
	for param, variable := range libpqFiles {
		if v, ok := dsn.Param(connString, param); ok {
			set[variable] = v
		}
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		// A service definition would take precedence over PGHOST and
		// friends and could point the command at another server.
		if _, overridden := set[name]; overridden || name == "PGSERVICE" {
			continue
		}
		env = append(env, kv)
	}
	for name, value := range set {
		env = append(env, name+"="+value)
	}
	return env
}

// killGrace is how long a cancelled command's process group has between
// SIGTERM and SIGKILL.
const killGrace = 5 * time.Second

// runCommand runs argv in its own process group with its output streamed
// line by line with a prefix. Cancelling ctx ends the whole group (a shell
// and what it started), politely first.
func runCommand(ctx context.Context, argv []string, env []string, prefix string, stdout, stderr io.Writer) error {
	out := newPrefixWriter(stdout, prefix)
	errOut := newPrefixWriter(stderr, prefix)
	defer out.Flush()
	defer errOut.Flush()

	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done := make(chan struct{})
	defer close(done)
	cmd.Cancel = func() error {
		pgid := cmd.Process.Pid
		err := syscall.Kill(-pgid, syscall.SIGTERM)
		go func() {
			select {
			case <-done:
			case <-time.After(killGrace):
				syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}()
		return err
	}
	// A child that outlives the command and keeps its output open must not
	// hold Allocate forever.
	cmd.WaitDelay = killGrace + time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	return cmd.Wait()
}

// prefixWriter writes whole lines, each prefixed; a trailing partial line
// waits for its end or for Flush. It is safe for concurrent use.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func newPrefixWriter(w io.Writer, prefix string) *prefixWriter {
	if w == nil {
		w = io.Discard
	}
	return &prefixWriter{w: w, prefix: prefix}
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		if _, err := io.WriteString(p.w, p.prefix+string(p.buf[:i+1])); err != nil {
			return len(b), err
		}
		p.buf = p.buf[i+1:]
	}
	return len(b), nil
}

// Flush writes a pending partial line.
func (p *prefixWriter) Flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) > 0 {
		io.WriteString(p.w, p.prefix+string(p.buf)+"\n")
		p.buf = nil
	}
}
