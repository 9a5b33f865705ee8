package state

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/internal/words"
)

// Shard claims make work on a shard exclusive, cluster-wide, whoever runs
// it (apply, pgms move, pgms cleanup) and wherever its journal lives.
//
// A claim is held on every node the work touches: a move claims its shard
// on the source and on the destination, a cleanup claims the shard of each
// object it drops on that object's node, an allocation claims its shards
// on its node. On a node, a claim is one session of the claiming run,
// holding a session advisory lock keyed by a random claim id for as long
// as the work lasts, and one row per shard in <library>.pgms_claims
// carrying that id and naming the run: its token (pgutil.RunToken), host,
// pid, user, command and purpose. The rows' primary key (the shard) makes
// claims exclusive; one lock per claim, rather than per shard, keeps a
// claim of thousands of shards within the server's lock table.
//
// The lock says whether the owner is alive: the server releases it when
// the owner's session ends, however it ends. A row whose lock is free is
// stale. Nothing else is taken as proof: an idle slot, an old timestamp or
// a missing journal entry say nothing about whether a run still works on
// the shard.
//
// The row says who owned the shard last. A run that takes a claim whose
// row names another run ends every remaining session of that run on the
// node before it looks at anything, so that a transaction of the old run
// cannot commit after the new owner has read the state. A run that lost
// its claim session may take the claim back only if the row still names it
// (nobody took the shard in between); otherwise it stops without touching
// anything.

// claimClass is the first key of claim locks ("pgms"); the second is the
// claim's id. Two-key advisory locks never collide with the one-key
// (bigint) locks of the run lock and the library.
const claimClass int32 = 0x70676d73

const claimsDDL = `
CREATE TABLE IF NOT EXISTS %[1]s.pgms_claims (
  shard       integer PRIMARY KEY,
  schema_name text NOT NULL,
  claim_id    integer NOT NULL,
  token       text NOT NULL,
  purpose     text NOT NULL DEFAULT '',
  backend_pid integer NOT NULL,
  host        text NOT NULL DEFAULT '',
  pid         integer NOT NULL DEFAULT 0,
  os_user     text NOT NULL DEFAULT '',
  command     text NOT NULL DEFAULT '',
  since       timestamptz NOT NULL DEFAULT now()
);
`

// ClaimInfo describes a claim as a node records it.
type ClaimInfo struct {
	Shard   int    `json:"shard"`
	Schema  string `json:"schema"`
	ClaimID int32  `json:"claim_id"`
	Token   string `json:"token"`
	Purpose string `json:"purpose"` // e.g. "move a → b (source)"
	// BackendPID is the session that held the lock when the row was
	// written.
	BackendPID int       `json:"backend_pid"`
	Host       string    `json:"host"`
	PID        int       `json:"pid"`
	User       string    `json:"user"`
	Command    string    `json:"command"`
	Since      time.Time `json:"since"`
	// Live: a session holds the claim's lock now.
	Live bool `json:"live"`
}

// String names the owner and the work for people: "`pgms move` (pid 42
// on host ci-7, user deploy, since …, move a → b (source))".
func (c ClaimInfo) String() string {
	s := c.Who()
	if c.Purpose != "" {
		s = strings.TrimSuffix(s, ")") + ", " + c.Purpose + ")"
	}
	return s
}

// Who names the owner for people, without the work.
func (c ClaimInfo) Who() string {
	var b strings.Builder
	cmd := c.Command
	if cmd == "" {
		cmd = "pgms"
	} else if !strings.HasPrefix(cmd, "pgms") {
		cmd = "pgms " + cmd
	}
	fmt.Fprintf(&b, "`%s` (pid %d on host %s", cmd, c.PID, orUnknown(c.Host))
	if c.User != "" {
		fmt.Fprintf(&b, ", user %s", c.User)
	}
	fmt.Fprintf(&b, ", since %s)", c.Since.UTC().Format("2006-01-02 15:04:05 UTC"))
	return b.String()
}

// ClaimHeldError says a live run holds a shard on a node.
type ClaimHeldError struct {
	Node   string
	Shard  int
	Holder *ClaimInfo // nil when the holder wrote no row yet
}

func (e *ClaimHeldError) Error() string {
	who := "another session (it has not written its claim row yet)"
	if e.Holder != nil {
		who = e.Holder.String()
	}
	return fmt.Sprintf("shard %d is claimed on node %s by a running %s; one run works on a shard at a time: wait for it to finish", e.Shard, e.Node, who)
}

// ErrClaimHeld matches a *ClaimHeldError with errors.Is.
var ErrClaimHeld = errors.New("the shard is claimed by another run")

// Is makes errors.Is(err, ErrClaimHeld) true.
func (e *ClaimHeldError) Is(target error) bool { return target == ErrClaimHeld }

// ErrClaimLost says a run lost a claim it held and may not take it back:
// another run took the shard meanwhile, or the proof that nobody did is
// gone. Work on the shard must stop without changing anything more.
var ErrClaimLost = errors.New("lost the claim on the shard")

// ClaimSpec says what to claim.
type ClaimSpec struct {
	// DSN reaches the node; Node is its printable name.
	DSN, Node string
	// LibrarySchema holds the claims table.
	LibrarySchema string
	// Shards and their schema names, index-aligned.
	Shards  []int
	Schemas []string
	Purpose string
	Who     Invocation
}

// Claim is a held claim: one session on one node holding one or more
// shards. Its connection may be used for work on the node, which then
// runs exactly while the claim is held (a statement on a session that
// died fails). A Claim is not safe for concurrent use: its user and its
// connection are one.
type Claim struct {
	spec ClaimSpec
	id   int32
	node *pgutil.Node
	// session is the server process holding the lock, so that a Reacquire
	// can end it if it outlived its connection (a query the client gave
	// up on keeps running until it tries to answer).
	session struct {
		pid   uint32
		start time.Time
	}
	// Previous is the claim row a takeover replaced, one per shard that had
	// one (the earlier owner's session had ended); nil otherwise.
	Previous []ClaimInfo
	released bool
}

// Node is the claim's session, named as the spec names the node.
func (c *Claim) Node() *pgutil.Node { return c.node }

// BackendPID is the server process of the claim's session.
func (c *Claim) BackendPID() uint32 { return c.node.Conn.PgConn().PID() }

// ClaimShards takes the claim of spec.Shards on the node without waiting.
// A shard held by a live session fails the claim with *ClaimHeldError,
// naming the holder. A row left by a run whose session ended is taken
// over: that run's remaining sessions on the server are ended first.
func ClaimShards(ctx context.Context, spec ClaimSpec) (*Claim, error) {
	if len(spec.Shards) == 0 || len(spec.Shards) != len(spec.Schemas) {
		return nil, fmt.Errorf("claim on node %s: %d shards and %d schemas", spec.Node, len(spec.Shards), len(spec.Schemas))
	}
	n, err := pgutil.Connect(ctx, spec.DSN)
	if err != nil {
		return nil, err
	}
	if spec.Node != "" {
		n.Name = spec.Node
	}
	c := &Claim{spec: spec, node: n, id: rand.Int32N(1<<31-1) + 1}
	if err := c.acquire(ctx, false); err != nil {
		n.Close()
		return nil, err
	}
	return c, nil
}

// Reacquire reopens the claim after its session ended (a dropped
// connection, a terminated backend, a restarted server): it takes the
// locks again and checks that every row still names this process, which
// proves that no other run held the shards in between. Otherwise it fails
// with ErrClaimLost and the caller must stop.
func (c *Claim) Reacquire(ctx context.Context) error {
	if c.node.Conn != nil && !c.node.Conn.IsClosed() {
		if err := c.node.Conn.Ping(ctx); err == nil {
			return c.verify(ctx)
		}
	}
	n, err := pgutil.Connect(ctx, c.spec.DSN)
	if err != nil {
		return err
	}
	n.Name = c.node.Name
	c.node.Close()
	c.node = n
	if err := c.endOldSession(ctx); err != nil {
		n.Close()
		return err
	}
	if err := c.acquire(ctx, true); err != nil {
		n.Close()
		return err
	}
	return nil
}

// endOldSession ends the claim's previous server process if it is still
// there: its client is gone, but it may still run a statement, holding
// the lock.
func (c *Claim) endOldSession(ctx context.Context) error {
	if c.session.pid == 0 {
		return nil
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var alive bool
		err := c.node.Conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = $1 AND backend_start = $2)`,
			c.session.pid, c.session.start).Scan(&alive)
		if err != nil {
			return pgutil.Wrap(err, "node %s: look for the claim's earlier session", c.node.Name)
		}
		if !alive {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: the claim's earlier session (pid %d) is still there 15s after being ended", c.node.Name, c.session.pid)
		}
		c.node.Conn.Exec(ctx, "SELECT pg_catalog.pg_terminate_backend($1)", c.session.pid) //nolint:errcheck // looked at again above
		time.Sleep(20 * time.Millisecond)
	}
}

// verify checks, on the claim's own session, that it still holds the
// lock and that every row still names this claim.
func (c *Claim) verify(ctx context.Context) error {
	var held bool
	var ours int
	err := c.node.Conn.QueryRow(ctx, `SELECT
		  EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_catalog.pg_backend_pid()
		     AND classid = $1::int::oid AND objid = $2::int::oid AND objsubid = 2),
		  (SELECT count(*) FROM `+pgutil.Quote(c.spec.LibrarySchema, "pgms_claims")+` WHERE shard = ANY($3::int[]) AND claim_id = $2 AND token = $4)::int`,
		claimClass, c.id, c.spec.Shards, pgutil.RunToken).Scan(&held, &ours)
	if err != nil {
		return pgutil.Wrap(err, "node %s: check the claim of %s", c.node.Name, c.shardText())
	}
	if !held || ours != len(c.spec.Shards) {
		return fmt.Errorf("node %s: %w of %s: another run took it over", c.node.Name, ErrClaimLost, c.shardText())
	}
	return nil
}

func (c *Claim) shardText() string {
	if len(c.spec.Shards) == 1 {
		return fmt.Sprintf("shard %d", c.spec.Shards[0])
	}
	return "shards " + words.Shards(c.spec.Shards, 0)
}

// acquire takes the claim's lock on c.node and writes the rows. With
// again set (Reacquire), every row must already name this claim.
func (c *Claim) acquire(ctx context.Context, again bool) error {
	if err := ensureTable(ctx, c.node.Conn, c.spec.LibrarySchema, claimsDDL, "pgms_claims"); err != nil {
		return pgutil.Wrap(err, "node %s", c.node.Name)
	}
	// idle_session_timeout, set by some servers, would end the claim while
	// the move copies through other sessions.
	c.node.Conn.Exec(ctx, `SELECT pg_catalog.set_config('idle_session_timeout', '0', false) WHERE current_setting('server_version_num')::int >= 140000`) //nolint:errcheck // a server without the setting has nothing to lift
	var got bool
	if err := c.node.Conn.QueryRow(ctx, "SELECT pg_catalog.pg_try_advisory_lock($1, $2)", claimClass, c.id).Scan(&got); err != nil {
		return pgutil.Wrap(err, "node %s: claim %s", c.node.Name, c.shardText())
	}
	if !got {
		// Only a live session of this same claim can hold it: a Reacquire
		// racing the end of the old session.
		return fmt.Errorf("node %s: %w of %s: its old session still holds it", c.node.Name, ErrClaimLost, c.shardText())
	}
	if err := c.writeRows(ctx, again); err != nil {
		c.unlock(ctx)
		return err
	}
	err := c.node.Conn.QueryRow(ctx, "SELECT pg_catalog.pg_backend_pid(), backend_start FROM pg_catalog.pg_stat_activity WHERE pid = pg_catalog.pg_backend_pid()").
		Scan(&c.session.pid, &c.session.start)
	return pgutil.Wrap(err, "node %s: identify the claim's session", c.node.Name)
}

// writeRows records the claim of every shard, in one transaction: a shard
// claimed by a live claim fails it, a stale row (its claim's lock is free)
// is taken over after its run's remaining sessions are ended.
func (c *Claim) writeRows(ctx context.Context, again bool) error {
	table := pgutil.Quote(c.spec.LibrarySchema, "pgms_claims")
	who := c.spec.Who
	return pgx.BeginFunc(ctx, c.node.Conn, func(tx pgx.Tx) error {
		// New shards first; a row another transaction is inserting makes
		// this wait until that one ends, so what follows sees settled rows.
		_, err := tx.Exec(ctx, `INSERT INTO `+table+` (shard, schema_name, claim_id, token, purpose, backend_pid, host, pid, os_user, command, since)
			SELECT s, n, $3, $4, $5, pg_catalog.pg_backend_pid(), $6, $7, $8, $9, now() FROM unnest($1::int[], $2::text[]) AS u(s, n)
			ON CONFLICT (shard) DO NOTHING`,
			c.spec.Shards, c.spec.Schemas, c.id, pgutil.RunToken, c.spec.Purpose, who.Host, who.PID, who.User, commandLine(who))
		if err != nil {
			return pgutil.Wrap(err, "node %s: record the claim of %s", c.node.Name, c.shardText())
		}
		rows, err := tx.Query(ctx, `SELECT `+claimColumns+`, EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE l.locktype = 'advisory' AND l.granted
			  AND l.classid = $2::int::oid AND l.objid = c.claim_id::oid AND l.objsubid = 2
			  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
			FROM `+table+` c WHERE shard = ANY($1::int[]) ORDER BY shard FOR UPDATE`, c.spec.Shards, claimClass)
		if err != nil {
			return pgutil.Wrap(err, "node %s: read claims", c.node.Name)
		}
		list, err := pgx.CollectRows(rows, scanLiveClaim)
		if err != nil {
			return pgutil.Wrap(err, "node %s: read claims", c.node.Name)
		}
		var stale []ClaimInfo
		tokens := map[string]bool{}
		for _, r := range list {
			mine := r.ClaimID == c.id && r.Token == pgutil.RunToken
			switch {
			case mine:
			case again:
				return fmt.Errorf("node %s: %w %d: %s took it over meanwhile", c.node.Name, ErrClaimLost, r.Shard, r)
			case r.Live:
				holder := r
				return &ClaimHeldError{Node: c.node.Name, Shard: r.Shard, Holder: &holder}
			default:
				stale = append(stale, r)
				tokens[r.Token] = true
			}
		}
		if again && len(list) != len(c.spec.Shards) {
			return fmt.Errorf("node %s: %w of %s: its record is gone, so another run may have worked on it meanwhile", c.node.Name, ErrClaimLost, c.shardText())
		}
		if len(stale) == 0 {
			_, err := tx.Exec(ctx, "UPDATE "+table+" SET backend_pid = pg_catalog.pg_backend_pid() WHERE shard = ANY($1::int[]) AND claim_id = $2", c.spec.Shards, c.id)
			return err
		}
		delete(tokens, pgutil.RunToken)
		if len(tokens) > 0 {
			if err := endSessionsOf(ctx, tx, c.node.Name, tokens); err != nil {
				return err
			}
		}
		staleShards := make([]int, len(stale))
		for i, r := range stale {
			staleShards[i] = r.Shard
		}
		_, err = tx.Exec(ctx, `UPDATE `+table+` SET claim_id = $2, token = $3, purpose = $4, backend_pid = pg_catalog.pg_backend_pid(),
			  host = $5, pid = $6, os_user = $7, command = $8, since = now()
			WHERE shard = ANY($1::int[])`, staleShards, c.id, pgutil.RunToken, c.spec.Purpose, who.Host, who.PID, who.User, commandLine(who))
		if err != nil {
			return pgutil.Wrap(err, "node %s: take over the claim of %s", c.node.Name, c.shardText())
		}
		c.Previous = stale
		return nil
	})
}

func (c *Claim) unlock(ctx context.Context) {
	c.node.Conn.Exec(ctx, "SELECT pg_catalog.pg_advisory_unlock($1, $2)", claimClass, c.id) //nolint:errcheck // the session end releases it anyway
}

// endSessionsOf ends every session of the given runs on the node's server
// and waits until they are gone: a transaction of a run that lost its claim
// must not commit after the new owner has read the state.
func endSessionsOf(ctx context.Context, q Querier, node string, tokens map[string]bool) error {
	names := make([]string, 0, len(tokens))
	for t := range tokens {
		names = append(names, pgutil.ApplicationName+"/"+t)
	}
	sort.Strings(names)
	deadline := time.Now().Add(15 * time.Second)
	for {
		var pids []int32
		// Statistics views are read once per transaction unless the
		// snapshot is cleared.
		if _, err := q.Exec(ctx, "SELECT pg_catalog.pg_stat_clear_snapshot()"); err != nil {
			return pgutil.Wrap(err, "node %s: look for the sessions of the run that held the claim before", node)
		}
		err := q.QueryRow(ctx, `SELECT COALESCE(array_agg(pid ORDER BY pid), '{}') FROM pg_catalog.pg_stat_activity
			WHERE pid <> pg_catalog.pg_backend_pid() AND application_name = ANY($1::text[])`, names).Scan(&pids)
		if err != nil {
			return pgutil.Wrap(err, "node %s: look for the sessions of the run that held the claim before", node)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: sessions %v of the run that held the claim before (%s) are still there 15s after being ended; end them (pg_terminate_backend) and run again",
				node, pids, strings.Join(names, ", "))
		}
		var ended []bool
		if err := q.QueryRow(ctx, `SELECT array_agg(pg_catalog.pg_terminate_backend(p)) FROM unnest($1::int[]) p`, pids).Scan(&ended); err != nil {
			return pgutil.Wrap(err, "node %s: end the sessions %v of the run that held the claim before (the role needs pg_signal_backend, or to be their owner)", node, pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Release removes the claim's rows and ends its session. It may run any
// number of times.
func (c *Claim) Release(ctx context.Context) {
	if c == nil || c.released {
		return
	}
	c.released = true
	if c.node.Conn != nil && !c.node.Conn.IsClosed() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		c.node.Conn.Exec(rctx, "DELETE FROM "+pgutil.Quote(c.spec.LibrarySchema, "pgms_claims")+" WHERE shard = ANY($1::int[]) AND claim_id = $2", //nolint:errcheck // a row left behind is stale once the lock goes, and taken over by the next claim
			c.spec.Shards, c.id)
		cancel()
	}
	c.node.Close()
}

// HeldSQL is a query that another session of this run can put in a
// transaction to check, atomically with its own work, that the claim
// still holds: one boolean column.
func (c *Claim) HeldSQL() string {
	return fmt.Sprintf(`SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted AND pid = %d
		AND classid = %d::int::oid AND objid = %d::int::oid AND objsubid = 2)
	  AND (SELECT count(*) FROM %s WHERE shard = ANY('{%s}'::int[]) AND claim_id = %d) = %d`,
		c.BackendPID(), claimClass, c.id, pgutil.Quote(c.spec.LibrarySchema, "pgms_claims"), intList(c.spec.Shards), c.id, len(c.spec.Shards))
}

func intList(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, ",")
}

const claimColumns = "c.shard, c.schema_name, c.claim_id, c.token, c.purpose, c.backend_pid, c.host, c.pid, c.os_user, c.command, c.since"

func scanLiveClaim(r pgx.CollectableRow) (ClaimInfo, error) {
	var c ClaimInfo
	err := r.Scan(&c.Shard, &c.Schema, &c.ClaimID, &c.Token, &c.Purpose, &c.BackendPID, &c.Host, &c.PID, &c.User, &c.Command, &c.Since, &c.Live)
	return c, err
}

// ReadClaims returns the claims a node records, by shard, each with
// whether its claim's lock is held now. Without a claims table the list is
// empty.
func ReadClaims(ctx context.Context, q Querier, lib string) ([]ClaimInfo, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgutil.Quote(lib, "pgms_claims")).Scan(&exists); err != nil || !exists {
		return nil, err
	}
	rows, err := q.Query(ctx, `SELECT `+claimColumns+`, EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE l.locktype = 'advisory' AND l.granted
		  AND l.classid = $1::int::oid AND l.objid = c.claim_id::oid AND l.objsubid = 2
		  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))
		FROM `+pgutil.Quote(lib, "pgms_claims")+` c ORDER BY c.shard`, claimClass)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanLiveClaim)
}

var ddlMu sync.Mutex

// ensureTable creates one of pgms's bookkeeping tables in the library
// schema when it is missing. Concurrent first runs are serialised on the
// server, whose CREATE TABLE IF NOT EXISTS would otherwise race on the
// catalog.
func ensureTable(ctx context.Context, conn *pgx.Conn, lib, ddl, table string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", pgutil.Quote(lib, table)).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	var schema bool
	if err := conn.QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL", pgutil.Quote(lib)).Scan(&schema); err != nil {
		return err
	}
	if !schema {
		return fmt.Errorf("the microsharding library is not installed in schema %q; run pgms install", lib)
	}
	ddlMu.Lock()
	defer ddlMu.Unlock()
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(journalDDLLock)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, fmt.Sprintf(ddl, pgutil.Quote(lib)))
		return err
	})
}
