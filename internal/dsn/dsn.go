// Package dsn handles node connection strings: it names nodes for humans,
// removes passwords from anything that may be printed, and reads the DSN
// lists pgms and pg-microsharding take from the environment.
//
// Nothing here opens a connection.
package dsn

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Redacted stands in for a removed password.
const Redacted = "xxxxx"

var (
	// password=… in keyword/value strings, quoted or not.
	kvPassword = regexp.MustCompile(`(?i)((?:^|\s)password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s]*)`)
	// user:password@ in URLs anywhere in a text.
	urlPassword = regexp.MustCompile(`(?i)(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)`)
	// password=… as a URL query parameter.
	queryPassword = regexp.MustCompile(`(?i)([?&]password=)([^&\s]*)`)
)

// Redact returns s with every password it can recognise replaced: URL user
// info, password= query parameters and keyword/value password entries. It
// works on whole DSNs and on free text (error messages, logs) that contain
// them.
func Redact(s string) string {
	s = urlPassword.ReplaceAllString(s, "${1}"+Redacted+"${3}")
	s = queryPassword.ReplaceAllString(s, "${1}"+Redacted)
	s = kvPassword.ReplaceAllString(s, "${1}"+Redacted)
	return s
}

// Name returns a short, password-free name for the node a DSN points at:
// host:port/database. Empty fields fall back to what libpq would use
// (environment variables, then defaults).
func Name(connString string) string {
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		return Redact(connString)
	}
	return NameOf(cfg.Host, cfg.Port, cfg.Database)
}

// NameOf formats host, port and database the way Name does.
func NameOf(host string, port uint16, database string) string {
	if strings.HasPrefix(host, "/") {
		host = "[" + host + "]"
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port))) + "/" + database
}

// Split splits a comma-separated DSN list, trimming blanks and dropping
// empty entries.
func Split(list string) []string {
	var out []string
	for _, part := range strings.Split(list, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// EnvLists are the variables that may hold comma-separated node DSNs, in
// order of precedence: pgms's own, then pg-microsharding's.
var EnvLists = []string{"PGMS_DSNS", "PGDSNS", "DSNS"}

// FromEnv returns the node DSNs from the first non-empty variable of
// EnvLists, and the variable's name.
func FromEnv() (dsns []string, from string) {
	for _, name := range EnvLists {
		if v := os.Getenv(name); strings.TrimSpace(v) != "" {
			return Split(v), name
		}
	}
	return nil, ""
}

// Resolve returns the DSNs given on the command line, or else those of the
// environment lists, or else one empty DSN that libpq environment variables
// (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, …) complete. Duplicates
// (the same host, port and database) are dropped.
func Resolve(flags []string) ([]string, error) {
	list := flags
	if len(list) == 0 {
		list, _ = FromEnv()
	}
	if len(list) == 0 {
		if os.Getenv("PGHOST") == "" && os.Getenv("PGSERVICE") == "" {
			return nil, fmt.Errorf("no nodes given: pass --dsn (repeatable), or set PGMS_DSNS (comma-separated), or PGHOST and the other libpq variables")
		}
		list = []string{""}
	}
	seen := map[string]bool{}
	var out []string
	for i, d := range list {
		cfg, err := pgconn.ParseConfig(d)
		if err != nil {
			return nil, fmt.Errorf("invalid DSN %d (%s): %s", i+1, Redact(d), ParseErrorCause(err))
		}
		key := NameOf(cfg.Host, cfg.Port, cfg.Database)
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, d)
	}
	return out, nil
}

// WithoutPassword returns a DSN with its password removed, for places that
// store a DSN (plan files, journals). libpq finds the password again in
// PGPASSWORD or .pgpass at use.
func WithoutPassword(connString string) string {
	if u, err := url.Parse(connString); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if u.User != nil {
			u.User = url.User(u.User.Username())
		}
		q := u.Query()
		if q.Has("password") {
			q.Del("password")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return strings.TrimSpace(kvPassword.ReplaceAllString(connString, ""))
}

// ParseErrorCause returns the cause of a DSN parse error without the DSN
// itself, which pgconn repeats (unredacted) in its message.
func ParseErrorCause(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		msg = msg[i+3:]
	}
	return Redact(msg)
}

// ResolveOne picks the one node a command acts on: the --dsn given, else
// the only node of the environment lists, else the libpq variables.
func ResolveOne(flags []string, command string) (string, error) {
	switch len(flags) {
	case 0:
	case 1:
		return flags[0], nil
	default:
		return "", fmt.Errorf("%s acts on one node and --dsn was given %d times", command, len(flags))
	}
	if list, from := FromEnv(); len(list) > 1 {
		return "", fmt.Errorf("%s acts on one node and %s lists %d; pass --dsn to choose one", command, from, len(list))
	}
	list, err := Resolve(nil)
	if err != nil {
		return "", err
	}
	return list[0], nil
}

var notNameChars = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// NodeName derives a node name from a DSN's host and port, for a node given
// without one: db-a.example:5432 becomes db_a_example_5432.
func NodeName(d string) string {
	name := strings.Trim(notNameChars.ReplaceAllString(strings.SplitN(Name(d), "/", 2)[0], "_"), "_")
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		name = "node_" + name
	}
	return name
}
