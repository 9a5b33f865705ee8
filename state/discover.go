package state

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/pgms-dev/pgms/internal/dsn"
	"github.com/pgms-dev/pgms/internal/names"
	"github.com/pgms-dev/pgms/internal/pgutil"
	"github.com/pgms-dev/pgms/sql"
)

// NodeSpec names a node to read: Name is the topology's node name (or
// dsn.Name(DSN) when nodes are given on the command line).
type NodeSpec struct {
	Name string
	DSN  string // may hold a password; never printed
}

// RefreshOptions tune Refresh.
type RefreshOptions struct {
	// LibrarySchema is the schema of the stored-function library;
	// sql.DefaultSchema when empty.
	LibrarySchema string
	// Naming is how shard schemas are named; sql.DefaultNaming when zero.
	Naming sql.Naming
	// Weights asks for shard weights: the default measure, or WeightSQL.
	Weights   bool
	WeightSQL string
	// ActiveWeightsOnly limits Weights to active shards, what pgms list
	// shows: a weight query may fail on a shard not migrated yet.
	ActiveWeightsOnly bool
	// Parallelism is how many nodes are read at once; 8 when zero.
	Parallelism int
}

func (o RefreshOptions) withDefaults() RefreshOptions {
	if o.LibrarySchema == "" {
		o.LibrarySchema = sql.DefaultSchema
	}
	if o.Naming == (sql.Naming{}) {
		o.Naming = sql.DefaultNaming
	}
	if o.Parallelism <= 0 {
		o.Parallelism = 8
	}
	return o
}

// Cluster is the live state of every node, as read by one Refresh.
type Cluster struct {
	Nodes []*NodeState // sorted by Name
}

// NodeState is what one node looked like when it was read.
type NodeState struct {
	Name string
	Addr string // host:port/database, never a password
	// Err says why the node could not be read (it names the node and the
	// cause); the other fields are then incomplete.
	Err error

	ServerVersion int // server_version_num, e.g. 150004
	Standby       bool
	WalLevel      string

	MaxReplicationSlots, UsedReplicationSlots int
	MaxWalSenders, UsedWalSenders             int
	// MaxSlotWalKeepSize is max_slot_wal_keep_size in bytes, -1 when
	// unlimited (or not supported by the server).
	MaxSlotWalKeepSize int64

	// Library is the stored-function library in the library schema.
	// Version 0 is pg-microsharding's own library (it has no version
	// function). Without a library no shard is active.
	Library struct {
		Installed bool
		Version   int
	}

	Shards    []ShardState // shard schemas present, sorted by number
	Leftovers []Leftover   // sorted by shard, kind and name

	// Identity is what the node says about itself.
	Identity Identity
	// Registry is the node registry this node keeps (see Register).
	Registry []RegisteredNode
	// Claims are the shard claims the node records or holds (see
	// ClaimShards), sorted by shard.
	Claims []ClaimInfo
	// Registered marks a node that is not in the topology files but was
	// found in the registry of nodes that are (set by the caller that
	// read it so).
	Registered bool
}

// Claim returns the node's claim of a shard, or nil.
func (n *NodeState) Claim(shard int) *ClaimInfo {
	for i := range n.Claims {
		if n.Claims[i].Shard == shard {
			return &n.Claims[i]
		}
	}
	return nil
}

// LiveClaim returns the node's claim of a shard when a session holds it.
func (n *NodeState) LiveClaim(shard int) *ClaimInfo {
	if c := n.Claim(shard); c != nil && c.Live {
		return c
	}
	return nil
}

// ShardState is one shard schema present on a node.
type ShardState struct {
	Shard  int
	Schema string
	Active bool
	Tables int   // tables, partitioned ones included
	Bytes  int64 // total relation size of its tables and materialized views
	// TablesWithoutKey lists the tables that have neither a primary key
	// nor REPLICA IDENTITY FULL or USING INDEX: logical replication cannot
	// carry their updates and deletes, so a move of the shard would fail.
	TablesWithoutKey []string
	// Weight is set when RefreshOptions.Weights asks for it.
	Weight *Weight
	// Copy marks an unfinished copy made by a move (its schema comment
	// says so); CopyFrom is the source the mark names.
	Copy     bool
	CopyFrom string
	// Window is set when the schema is a move source in its rollback
	// window (its comment says so): inactive, fenced, streamed to from the
	// node the shard moved to.
	Window *names.Window
}

// Node returns the node named name, or nil.
func (c *Cluster) Node(name string) *NodeState {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Shard returns the node's state of shard n, or nil when its schema is
// absent.
func (n *NodeState) Shard(shard int) *ShardState {
	i := sort.Search(len(n.Shards), func(i int) bool { return n.Shards[i].Shard >= shard })
	if i < len(n.Shards) && n.Shards[i].Shard == shard {
		return &n.Shards[i]
	}
	return nil
}

// Label names the node in messages: "b (127.0.0.1:5433/app)", or only the
// address when the name is the address.
func (n *NodeState) Label() string { return nodeLabel(n.Name, n.Addr) }

func nodeLabel(name, addr string) string {
	if name == "" || name == addr {
		return addr
	}
	return name + " (" + addr + ")"
}

// Refresh reads the live state of every node, at most opts.Parallelism at a
// time. A node that cannot be read has its Err set; Refresh itself does not
// fail, so that callers decide how much an unreachable node matters.
func Refresh(ctx context.Context, nodes []NodeSpec, opts RefreshOptions) *Cluster {
	opts = opts.withDefaults()
	c := &Cluster{Nodes: make([]*NodeState, len(nodes))}
	sem := make(chan struct{}, opts.Parallelism)
	var wg sync.WaitGroup
	for i, spec := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c.Nodes[i] = refreshNode(ctx, spec, opts)
		}()
	}
	wg.Wait()
	sort.SliceStable(c.Nodes, func(i, j int) bool { return c.Nodes[i].Name < c.Nodes[j].Name })
	return c
}

func refreshNode(ctx context.Context, spec NodeSpec, opts RefreshOptions) *NodeState {
	n := &NodeState{Name: spec.Name, Addr: dsn.Name(spec.DSN)}
	if n.Name == "" {
		n.Name = n.Addr
	}
	cfg, err := pgutil.ParseConfig(spec.DSN)
	if err != nil {
		// A DSN that does not parse has no address: n.Addr is then the
		// redacted DSN, which pgutil's message already starts with.
		n.Err = fmt.Errorf("node %s: %s", n.Label(), strings.TrimPrefix(err.Error(), "node "+n.Addr+": "))
		return n
	}
	// The connection lives for a handful of statements: preparing them
	// would cost a round trip each and save nothing.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		n.Err = fmt.Errorf("node %s: cannot connect: %s", n.Label(), pgutil.ConnectCause(err))
		return n
	}
	defer conn.Close(context.Background())
	if err := readNode(ctx, conn, n, opts); err != nil {
		n.Err = fmt.Errorf("node %s: %s", n.Label(), pgutil.Describe(err))
	}
	return n
}

// The catalog queries of a refresh, sent together in one batch.
const (
	settingsQuery = `
		SELECT current_setting('server_version_num')::int,
		       pg_is_in_recovery(),
		       current_setting('wal_level'),
		       current_setting('max_replication_slots')::int,
		       (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int,
		       current_setting('max_wal_senders')::int,
		       (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'walsender')::int,
		       COALESCE((SELECT CASE WHEN setting::bigint < 0 THEN -1 ELSE setting::bigint * 1024 * 1024 END
		                 FROM pg_catalog.pg_settings WHERE name = 'max_slot_wal_keep_size'), -1)`

	// Every schema that starts with the shard prefix: the shards and the
	// leftovers of moves, told apart in Go by name. A table lacks a key
	// when its replica identity is NOTHING, or DEFAULT without a primary
	// key.
	schemasQuery = `
		SELECT n.nspname::text, COALESCE(pg_catalog.obj_description(n.oid, 'pg_namespace'), ''),
		       count(c.oid) FILTER (WHERE c.relkind IN ('r', 'p'))::int,
		       COALESCE(sum(pg_catalog.pg_total_relation_size(c.oid)), 0)::bigint,
		       COALESCE(array_agg(c.relname::text ORDER BY c.relname) FILTER (
		         WHERE c.relkind = 'r' AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS (
		           SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))), '{}')
		FROM pg_catalog.pg_namespace n
		LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'm')
		WHERE starts_with(n.nspname, $1)
		GROUP BY n.oid, n.nspname`

	publicationsQuery = `SELECT pubname::text FROM pg_catalog.pg_publication`

	// Logical slots of this database. The walsender's application_name is
	// the subscription's name when a subscription streams from the slot.
	slotsQuery = `
		SELECT s.slot_name::text, s.active, COALESCE(s.active_pid, 0), COALESCE(a.application_name, ''),
		       COALESCE(pg_catalog.pg_wal_lsn_diff(
		         CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
		              ELSE pg_catalog.pg_current_wal_lsn() END,
		         s.restart_lsn), 0)::bigint
		FROM pg_catalog.pg_replication_slots s
		LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = s.active_pid
		WHERE s.database = current_database() AND s.slot_type = 'logical'`

	subscriptionsQuery = `
		SELECT s.subname::text, s.subenabled, COALESCE(s.subslotname::text, '')
		FROM pg_catalog.pg_subscription s
		JOIN pg_catalog.pg_database d ON d.oid = s.subdbid
		WHERE d.datname = current_database()`
)

func readNode(ctx context.Context, conn *pgx.Conn, n *NodeState, opts RefreshOptions) error {
	naming := opts.Naming
	b := &pgx.Batch{}
	b.Queue(settingsQuery)
	b.Queue(schemasQuery, naming.Prefix)
	b.Queue(publicationsQuery)
	b.Queue(slotsQuery)
	b.Queue(subscriptionsQuery)
	br := conn.SendBatch(ctx, b)
	var schemas []schemaRow
	var pubs []string
	var slots []slotRow
	var subs []subRow
	err := func() error {
		defer br.Close()
		if err := br.QueryRow().Scan(&n.ServerVersion, &n.Standby, &n.WalLevel,
			&n.MaxReplicationSlots, &n.UsedReplicationSlots, &n.MaxWalSenders, &n.UsedWalSenders,
			&n.MaxSlotWalKeepSize); err != nil {
			return fmt.Errorf("read settings: %w", err)
		}
		var err error
		if schemas, err = collect(br, func(r pgx.Rows, s *schemaRow) error {
			return r.Scan(&s.name, &s.comment, &s.tables, &s.bytes, &s.withoutKey)
		}); err != nil {
			return fmt.Errorf("read shard schemas: %w", err)
		}
		if pubs, err = collect(br, func(r pgx.Rows, s *string) error { return r.Scan(s) }); err != nil {
			return fmt.Errorf("read publications: %w", err)
		}
		if slots, err = collect(br, func(r pgx.Rows, s *slotRow) error {
			return r.Scan(&s.name, &s.active, &s.pid, &s.client, &s.retained)
		}); err != nil {
			return fmt.Errorf("read replication slots: %w", err)
		}
		if subs, err = collect(br, func(r pgx.Rows, s *subRow) error {
			return r.Scan(&s.name, &s.enabled, &s.slot)
		}); err != nil {
			return fmt.Errorf("read subscriptions: %w", err)
		}
		return br.Close()
	}()
	if err != nil {
		return err
	}

	version, err := sql.InstalledVersion(ctx, conn, opts.LibrarySchema)
	if err != nil {
		return err
	}
	active := map[string]bool{}
	if version >= 0 {
		n.Library.Installed, n.Library.Version = true, version
		// The raw list, not microsharding_list_active_shards(): only the
		// former exists in every library version, pg-microsharding's too.
		var names []string
		if err := conn.QueryRow(ctx, "SELECT "+pgutil.Quote(opts.LibrarySchema, "microsharding_active_shards_")+"()").Scan(&names); err != nil {
			return fmt.Errorf("read the active shard list: %w", err)
		}
		for _, s := range names {
			active[s] = true
		}
	}

	isShard := func(name string) bool { _, ok := shardNumber(naming, name); return ok }
	for _, s := range schemas {
		if shard, ok := shardNumber(naming, s.name); ok {
			st := ShardState{
				Shard: shard, Schema: s.name, Active: active[s.name],
				Tables: s.tables, Bytes: s.bytes, TablesWithoutKey: s.withoutKey,
			}
			st.CopyFrom, st.Copy = names.ParseCopyMark(s.comment)
			if w, ok := names.ParseWindowMark(s.comment); ok {
				st.Window = &w
			}
			n.Shards = append(n.Shards, st)
			if st.Copy {
				n.Leftovers = append(n.Leftovers, Leftover{Kind: LeftoverCopy, Name: s.name, Schema: s.name, Shard: shard, Tool: ToolPGMS, Bytes: s.bytes})
			}
			continue
		}
		if l, ok := schemaLeftover(s.name, isShard, naming); ok {
			l.Bytes = s.bytes
			l.Active = active[s.name]
			n.Leftovers = append(n.Leftovers, l)
		}
	}
	for _, p := range pubs {
		if l, ok := artifactLeftover(LeftoverPublication, p, naming); ok {
			n.Leftovers = append(n.Leftovers, l)
		}
	}
	for _, s := range slots {
		if l, ok := artifactLeftover(LeftoverSlot, s.name, naming); ok {
			l.Active, l.RetainedBytes = s.active, s.retained
			l.WalsenderPID, l.WalsenderClient = s.pid, s.client
			n.Leftovers = append(n.Leftovers, l)
		}
	}
	for _, s := range subs {
		if l, ok := artifactLeftover(LeftoverSubscription, s.name, naming); ok {
			l.Active, l.Slot = s.enabled, s.slot
			n.Leftovers = append(n.Leftovers, l)
		}
	}
	sort.Slice(n.Shards, func(i, j int) bool { return n.Shards[i].Shard < n.Shards[j].Shard })
	sortLeftovers(n.Leftovers)

	if n.Identity, err = ReadIdentity(ctx, conn, opts.LibrarySchema); err != nil {
		return fmt.Errorf("read the node's identity: %w", err)
	}
	if version >= 0 {
		if n.Registry, err = ReadRegistry(ctx, conn, opts.LibrarySchema); err != nil {
			return fmt.Errorf("read the node registry: %w", err)
		}
		if n.Claims, err = ReadClaims(ctx, conn, opts.LibrarySchema); err != nil {
			return fmt.Errorf("read shard claims: %w", err)
		}
	}

	if opts.Weights && len(n.Shards) > 0 {
		schemas := make([]string, 0, len(n.Shards))
		for _, s := range n.Shards {
			if s.Active || !opts.ActiveWeightsOnly {
				schemas = append(schemas, s.Schema)
			}
		}
		var weights map[string]Weight
		if opts.WeightSQL == "" {
			weights, err = DefaultWeights(ctx, conn, schemas)
		} else {
			weights, err = QueryWeights(ctx, conn, schemas, opts.WeightSQL)
		}
		if err != nil {
			return fmt.Errorf("measure shard weights: %w", err)
		}
		for i := range n.Shards {
			if w, ok := weights[n.Shards[i].Schema]; ok {
				n.Shards[i].Weight = &w
			}
		}
	}
	return nil
}

type schemaRow struct {
	name       string
	comment    string
	tables     int
	bytes      int64
	withoutKey []string
}

type slotRow struct {
	name     string
	active   bool
	pid      int
	client   string
	retained int64
}

type subRow struct {
	name    string
	enabled bool
	slot    string
}

// collect reads the next result of a batch into a slice.
func collect[T any](br pgx.BatchResults, scan func(pgx.Rows, *T) error) ([]T, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := scan(rows, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ShardNumber returns the shard a schema name stands for under naming,
// when the name is exactly the prefix followed by the number's digits.
func ShardNumber(naming sql.Naming, name string) (int, bool) { return shardNumber(naming, name) }

// shardNumber returns the shard a schema name stands for when the name is
// exactly the naming's prefix followed by its number of digits.
func shardNumber(naming sql.Naming, name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, naming.Prefix)
	if !ok || len(digits) != naming.Digits {
		return 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	shard, err := strconv.Atoi(digits)
	return shard, err == nil
}

// Snapshot describes the topology-relevant live state as sorted lines, one
// fact each: every node (unreachable, or primary/standby with its address
// and library version), every shard schema with its active flag, every
// leftover. Weights, sizes and replication counters are left out: they move
// all the time without making a plan stale. Two snapshots differ exactly
// where the cluster changed in a way that matters, so a saved plan can say
// what changed; the order of nodes, shards and leftovers does not matter.
func (c *Cluster) Snapshot() []string {
	var lines []string
	for _, n := range c.Nodes {
		if n.Err != nil {
			lines = append(lines, fmt.Sprintf("node %s: unreachable", n.Name))
			continue
		}
		role := "primary"
		if n.Standby {
			role = "standby"
		}
		lib := "no library"
		if n.Library.Installed {
			lib = fmt.Sprintf("library version %d", n.Library.Version)
		}
		lines = append(lines, fmt.Sprintf("node %s: %s at %s, %s", n.Name, role, n.Addr, lib))
		for _, s := range n.Shards {
			flag := "inactive"
			if s.Active {
				flag = "active"
			}
			if s.Copy {
				flag += ", unfinished copy from " + s.CopyFrom
			}
			lines = append(lines, fmt.Sprintf("node %s: shard %s %s", n.Name, s.Schema, flag))
		}
		for _, l := range n.Leftovers {
			lines = append(lines, fmt.Sprintf("node %s: %s %s", n.Name, kindNoun(l.Kind), l.Name))
		}
	}
	sort.Strings(lines)
	return lines
}

// Fingerprint is the SHA-256 (hex) of the Snapshot; an empty cluster has
// one too.
func (c *Cluster) Fingerprint() string {
	h := sha256.New()
	for _, l := range c.Snapshot() {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}
