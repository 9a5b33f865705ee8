package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/pgms-dev/pgms/sql"
)

// Defaults of the cluster block.
const (
	DefaultCleanupAfter       = 168 * time.Hour
	DefaultMaxConcurrentMoves = 1
	DefaultCapacity           = 1.0
)

type (
	// Topology is the desired cluster described by a directory of
	// *.pgms.hcl files.
	Topology struct {
		Cluster Cluster
		Nodes   []Node       // sorted by name
		Shards  []ShardRange // sorted by From; never overlapping
		Removed []ShardRange // from removed blocks, sorted by From; Node empty
		// Retired are nodes removed blocks retire (node = "b"), in file
		// order.
		Retired []RetiredNode
		Files   []string // the files read, sorted
		// Sources maps a file name (as in Files and in every hcl.Range)
		// to its content, for diagnostics and rewriting.
		Sources map[string][]byte
	}

	// Cluster holds the settings of the cluster block, defaults applied.
	Cluster struct {
		SchemaPrefix string // default "sh"
		SchemaDigits int    // default 4 (1..9)
		// MigrateCommand is the argv of the command run after allocating
		// shards. A list of strings in the file is executed directly; a
		// single string s becomes ["/bin/sh", "-c", s]. Empty: none.
		MigrateCommand []string
		WeightSQL      string // optional; empty: total relation size
		// DeactivateSQL runs on a move's source for each table of the
		// renamed schema, $1 replaced by the quoted table name (the
		// DEACTIVATE_SQL of pg-microsharding). Optional.
		DeactivateSQL string
		// Verify is the level of the moves' verification gate: "off",
		// "count" or "full"; empty: the executor's default.
		Verify string
		// KeepCopy is the least a move's interrupted fast copy must have
		// written to be kept and continued by the next run: 0 for the
		// executor's default, -1 for never (keep_copy = "0").
		KeepCopy int64
		// RollbackWindow keeps a moved shard's source fenced, with a stream
		// back from its new home, this long after the cutover, so that
		// pgms rollback can switch back; 0: no window.
		RollbackWindow time.Duration
		CleanupAfter   time.Duration // default 168h
		LibrarySchema  string        // default "microsharding"
		// StateNode names the node holding the apply journal; default
		// the first node by name.
		StateNode string
		// DeclRange is the cluster block's header; zero when the files
		// have no cluster block.
		DeclRange hcl.Range
	}

	// Node is a PostgreSQL primary of the cluster.
	Node struct {
		Name string
		// DSN is the evaluated connection string. It may hold a password:
		// print it only through dsn.Redact or dsn.Name.
		DSN string
		// DSNExpr is the HCL expression that produces DSN, as source text
		// (for example env("PGMS_DSN_A")). Load fills it from the file;
		// Generate writes it in place of the literal DSN when set, so that
		// secrets taken from the environment stay there.
		DSNExpr string
		// PublisherDSN, when set, is the connection string the
		// subscriptions of moves from this node store and use (in
		// pg_subscription on the destination, read by the destination
		// server): a host name the other servers resolve, a replication
		// role, a passfile or a client certificate on those servers, so
		// that no password need be stored there. Empty: the DSN, with the
		// password pgms found added.
		PublisherDSN string
		// PublisherDSNExpr is the HCL expression of PublisherDSN, as
		// DSNExpr is DSN's.
		PublisherDSNExpr   string
		Drain              bool    // rebalance moves every shard off
		MaxConcurrentMoves int     // default 1
		Capacity           float64 // default 1.0, > 0: relative size for rebalancing
		DeclRange          hcl.Range
	}

	// RetiredNode is a node a removed block retires: pgms moves its shards
	// off as the files place them, then forgets it. Until then it is still
	// visited, through its registry entry (or DSN when given).
	RetiredNode struct {
		Name string
		// DSN, when given, reaches the node; otherwise the address its
		// registry entry records is used (with .pgpass, PGPASSWORD …).
		DSN string
		// Lost declares the server gone for good: pgms stops visiting it,
		// and whatever it held is given up.
		Lost      bool
		DeclRange hcl.Range
		NameRange hcl.Range
	}

	// ShardRange is one shards block (or removed block): the inclusive
	// range From..To placed on Node.
	ShardRange struct {
		From, To int
		Node     string // empty for removed ranges
		Active   bool   // default true
		// Pinned ranges are never moved by rebalance. Shard 0 is always
		// treated as pinned whatever this says: see IsPinned.
		Pinned bool
		// DeclRange is the block's header, for messages such as
		// "placed on c in topology.pgms.hcl:14" (see Pos).
		DeclRange hcl.Range
	}
)

// IsPinned reports whether rebalancing must leave shard n (a member of r)
// where it is: shard 0, the global shard, always stays.
func (r ShardRange) IsPinned(n int) bool { return r.Pinned || n == 0 }

// Pos writes a range as file:line, the short form used in messages.
func Pos(r hcl.Range) string {
	if r.Filename == "" {
		return "(default)"
	}
	return r.Filename + ":" + strconv.Itoa(r.Start.Line)
}

// defaultCluster is the cluster used when the files have no cluster block.
func defaultCluster() Cluster {
	return Cluster{
		SchemaPrefix:  sql.DefaultNaming.Prefix,
		SchemaDigits:  sql.DefaultNaming.Digits,
		CleanupAfter:  DefaultCleanupAfter,
		LibrarySchema: sql.DefaultSchema,
	}
}

// Naming returns the shard schema naming of the cluster.
func (c Cluster) Naming() sql.Naming {
	return sql.Naming{Prefix: c.SchemaPrefix, Digits: c.SchemaDigits}
}

// Node returns the node named name. It does not rely on Nodes being
// sorted, so that it also works on a Topology built in code.
func (t *Topology) Node(name string) (*Node, bool) {
	for i := range t.Nodes {
		if t.Nodes[i].Name == name {
			return &t.Nodes[i], true
		}
	}
	return nil, false
}

// RetiredNode returns the retired node named name.
func (t *Topology) RetiredNode(name string) (*RetiredNode, bool) {
	for i := range t.Retired {
		if t.Retired[i].Name == name {
			return &t.Retired[i], true
		}
	}
	return nil, false
}

// Placement maps every placed shard number to the range that places it.
func (t *Topology) Placement() map[int]ShardRange {
	m := make(map[int]ShardRange)
	for _, r := range t.Shards {
		for n := r.From; n <= r.To; n++ {
			m[n] = r
		}
	}
	return m
}

// SchemaName returns the schema name of a shard: the prefix followed by
// the zero-padded number (sh0007).
func (t *Topology) SchemaName(shard int) string { return t.Cluster.Naming().SchemaName(shard) }

// Counts returns the number of placed shards and how many of them are
// active.
func (t *Topology) Counts() (shards, active int) {
	for _, r := range t.Shards {
		shards += r.Len()
		if r.Active {
			active += r.Len()
		}
	}
	return shards, active
}

// Fingerprint is a sha256 (hex) of the files' base names and contents in
// name order. Base names keep it stable whichever way the directory was
// named on the command line; a saved plan records it to notice edits.
func (t *Topology) Fingerprint() string {
	type file struct{ name, path string }
	files := make([]file, 0, len(t.Files))
	for _, f := range t.Files {
		files = append(files, file{filepath.Base(f), f})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	h := sha256.New()
	for _, f := range files {
		src := t.Sources[f.path]
		fmt.Fprintf(h, "%s\x00%d\x00", f.name, len(src))
		h.Write(src)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Option tunes Load.
type Option func(*options)

type options struct {
	lookupEnv     func(string) (string, bool)
	allowUnsetEnv bool
}

// WithLookupEnv makes env() read variables through lookup instead of
// os.LookupEnv.
func WithLookupEnv(lookup func(name string) (string, bool)) Option {
	return func(o *options) { o.lookupEnv = lookup }
}

// AllowUnsetEnv turns env() of an unset variable without default into a
// warning; the value is left unknown (a node's DSN is then empty). It lets
// offline checks run where the secrets are not available.
func AllowUnsetEnv() Option {
	return func(o *options) { o.allowUnsetEnv = true }
}

// VerifyLevels are the values verify accepts in the cluster block.
var VerifyLevels = []string{"off", "count", "full"}

// DefaultVerify is the verification level of moves when the files name
// none.
const DefaultVerify = "full"

// VerifyLevel is the cluster's verification level, the default filled in.
func (t *Topology) VerifyLevel() string {
	if t == nil || t.Cluster.Verify == "" {
		return DefaultVerify
	}
	return t.Cluster.Verify
}
