package executor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/fault"
	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgbin"
	"github.com/pgms-dev/pgms/internal/pgutil"
)

// copyDDL dumps the shard's schema definition from the source and creates
// it on the destination in one transaction, marked as an unfinished copy.
//
// A strategy that builds indexes and constraints after the data gets the
// pre-data section only: tables, types, functions, sequences, defaults.
func (m *move) copyDDL(ctx context.Context) error {
	var args []string
	if m.strategy.defersPostData() {
		args = append(args, "--section=pre-data")
	}
	script, err := m.dumpSchema(ctx, args...)
	if err != nil {
		return err
	}
	// A connection of its own: the dump's SET commands change the session.
	conn, err := pgutil.Connect(ctx, m.spec.To.DSN)
	if err != nil {
		return err
	}
	defer conn.Close()
	tx, err := conn.Conn.Begin(ctx)
	if err != nil {
		return pgutil.Wrap(err, "node %s", m.dst.Name)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
	if _, err := tx.Exec(ctx, script); err != nil {
		return pgutil.Wrap(err, "node %s: create the definition of %s from pg_dump's output", m.dst.Name, m.schema)
	}
	mark := "COMMENT ON SCHEMA " + pgutil.Quote(m.schema) + " IS " + quoteLiteral(names.CopyMark(m.schema, m.src.Name))
	if _, err := tx.Exec(ctx, mark); err != nil {
		return pgutil.Wrap(err, "node %s: mark the copy of %s", m.dst.Name, m.schema)
	}
	if err := tx.Commit(ctx); err != nil {
		return pgutil.Wrap(err, "node %s: commit the definition of %s", m.dst.Name, m.schema)
	}
	return fault.Point(ctx, "move.ddl.end")
}

// dumpSchema runs pg_dump --schema-only for the shard's schema, with extra
// arguments such as a --section. The password travels in PGPASSWORD, never
// on the command line where any user of the machine could read it.
func (m *move) dumpSchema(ctx context.Context, extra ...string) (string, error) {
	program := m.opts.PgDump
	if program == "" {
		p, err := pgbin.PgDump(m.srcMajor)
		if err != nil {
			return "", fmt.Errorf("dump the definition of %s: %w", m.schema, err)
		}
		program = p.Path
	}
	cfg, err := pgutil.ParseConfig(m.spec.From.DSN)
	if err != nil {
		return "", err
	}
	args := []string{
		"--schema-only", "--no-publications", "--no-subscriptions", "--strict-names",
		// Inside double quotes a pg_dump pattern matches literally.
		"--schema=" + pgutil.Quote(m.schema),
		"--dbname=" + dsn.WithoutPassword(m.spec.From.DSN),
	}
	args = append(args, extra...)
	cmd := exec.CommandContext(ctx, program, args...)
	cmd.Env = os.Environ()
	if cfg.Password != "" {
		cmd.Env = append(cmd.Env, "PGPASSWORD="+cfg.Password)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("node %s: pg_dump of %s failed (%v): %s", m.src.Name, m.schema, err, dsn.Redact(strings.TrimSpace(stderr.String())))
	}
	return dropNewerSettings(stripRestrict(stdout.String()), m.dstMajor), nil
}

// newerSettings are session settings a pg_dump newer than the destination
// may put in its preamble, with the major version that introduced them:
// pg_dump 17 and later write "SET transaction_timeout = 0;", which an older
// server rejects as an unrecognized configuration parameter.
var newerSettings = []struct {
	line  string
	major int
}{
	{"SET transaction_timeout = 0;", 17},
}

// dropNewerSettings removes from a dump's preamble (the settings before
// its first object) the settings the destination, of major version
// dstMajor, does not know. Lines after the preamble, such as a function
// body that happens to hold the same text, are left alone.
func dropNewerSettings(script string, dstMajor int) string {
	var drop []string
	for _, s := range newerSettings {
		if dstMajor < s.major {
			drop = append(drop, s.line)
		}
	}
	if len(drop) == 0 {
		return script
	}
	lines := strings.SplitAfter(script, "\n")
	out := make([]string, 0, len(lines))
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		if !inPreamble(t) {
			out = append(out, lines[i:]...)
			break
		}
		if !slices.Contains(drop, t) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// inPreamble: a line of the settings pg_dump writes before the first object.
func inPreamble(line string) bool {
	return line == "" || strings.HasPrefix(line, "--") || strings.HasPrefix(line, "SET ") ||
		strings.HasPrefix(line, "SELECT pg_catalog.set_config(")
}

var restrictLine = regexp.MustCompile(`(?m)^\\restrict ([A-Za-z0-9]+)\r?$`)

// stripRestrict removes the \restrict KEY and \unrestrict KEY lines that
// pg_dump 15.14 and later put around a dump for psql; the server would take
// them for SQL. Only lines carrying the dump's own key are removed, so a
// function body that happens to hold such text elsewhere is untouched.
func stripRestrict(script string) string {
	m := restrictLine.FindStringSubmatch(script)
	if m == nil {
		return script
	}
	key := m[1]
	lines := strings.SplitAfter(script, "\n")
	out := lines[:0]
	for _, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		if t == `\restrict `+key || t == `\unrestrict `+key {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}

// quoteLiteral returns s as an SQL string literal, valid whatever
// standard_conforming_strings says.
func quoteLiteral(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		return "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}
