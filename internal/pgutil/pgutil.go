// Package pgutil holds the small database conventions every pgms package
// shares: how a node connection is opened and named, and how database errors
// are reported (SQLSTATE, detail and hint kept, passwords removed) and
// classified for retries.
package pgutil

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgms-dev/pgms/internal/dsn"
)

// ApplicationName marks pgms sessions in pg_stat_activity.
const ApplicationName = "pgms"

// DefaultConnectTimeout applies when the DSN sets no connect_timeout.
const DefaultConnectTimeout = 10 * time.Second

// Node is an open connection to one node together with its printable name.
type Node struct {
	Name string // host:port/database, never a password
	DSN  string // as given; may hold a password, never print it
	Conn *pgx.Conn
}

// ParseConfig parses a DSN, filling in pgms's defaults, and reports errors
// without the password.
func ParseConfig(connString string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("invalid DSN %s: %s", dsn.Redact(connString), dsn.ParseErrorCause(err))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = SessionName()
	}
	cfg.DialFunc = Dial
	return cfg, nil
}

// Connect opens a connection to the node a DSN names. Errors name the node
// and say the cause in one line.
func Connect(ctx context.Context, connString string) (*Node, error) {
	name := dsn.Name(connString)
	cfg, err := ParseConfig(connString)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("node %s: cannot connect: %s", name, ConnectCause(err))
	}
	return &Node{Name: name, DSN: connString, Conn: conn}, nil
}

// Close closes the node's connection.
func (n *Node) Close() {
	if n != nil && n.Conn != nil {
		n.Conn.Close(context.Background())
	}
}

// ConnectCause reduces a pgx connection error to its cause: pgx repeats the
// user and database and wraps the dial error in several layers, the person
// reading wants "connection refused" or "password authentication failed".
func ConnectCause(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return Describe(pgErr)
	}
	msg := err.Error()
	// "failed to connect to `user=… database=…`: 127.0.0.1:1 (127.0.0.1): dial error: dial tcp …: connect: connection refused"
	if i := strings.LastIndex(msg, "dial error: "); i >= 0 {
		msg = msg[i+len("dial error: "):]
	} else if i := strings.Index(msg, "`: "); i >= 0 {
		msg = msg[i+len("`: "):]
	}
	return dsn.Redact(msg)
}

// Describe formats an error for a person on one logical line: the message
// with its context, and for database errors the SQLSTATE (pgx already prints
// it), detail and hint, which the plain message leaves out.
func Describe(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Detail != "" && !strings.Contains(msg, pgErr.Detail) {
			msg += "; detail: " + pgErr.Detail
		}
		if pgErr.Hint != "" && !strings.Contains(msg, pgErr.Hint) {
			msg += "; hint: " + pgErr.Hint
		}
	}
	return dsn.Redact(msg)
}

// Error wraps a database error with the context it happened in, keeping
// the *pgconn.PgError reachable through errors.As and its detail and hint in
// the message.
type Error struct {
	Context string // e.g. "node db1:5432/app: ensure_active(3, 4)"
	Err     error
}

func (e *Error) Error() string { return Describe(fmt.Errorf("%s: %w", e.Context, e.Err)) }
func (e *Error) Unwrap() error { return e.Err }

// Wrap returns err in an *Error with a context built like fmt.Sprintf, or
// nil when err is nil.
func Wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Context: fmt.Sprintf(format, args...), Err: err}
}

// SQLState returns the SQLSTATE of a database error, or "".
func SQLState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// IsLockTimeout reports whether err is a lock_timeout expiry.
func IsLockTimeout(err error) bool { return SQLState(err) == CodeLockNotAvailable }

// IsRetryable reports whether running the same transaction again may
// succeed: lock and statement timeouts, serialization failures, deadlocks.
func IsRetryable(err error) bool {
	switch SQLState(err) {
	case CodeLockNotAvailable, CodeQueryCanceled, CodeSerializationFailure, CodeDeadlockDetected:
		return true
	}
	return false
}

// Quote returns a quoted SQL identifier, possibly schema-qualified.
func Quote(parts ...string) string { return pgx.Identifier(parts).Sanitize() }
