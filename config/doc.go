// Package config reads the topology files (*.pgms.hcl) that describe the
// desired cluster into a typed Topology, with a diagnostic pointing at
// file:line:col for every problem, and writes them back: Generate for a
// new file, RewritePlacement to move shards in existing files keeping
// comments, Format for canonical layout.
//
// config never opens a database connection and knows nothing of the live
// cluster (package state) or of plans (package planner). The only outside
// things it reads are the files, the environment variables named by env()
// and the files named by file().
//
// # Files
//
// A topology is every *.pgms.hcl file of one directory (not its
// subdirectories), or a single file. Blocks may be spread over the files
// in any way; their order does not matter.
//
// # Grammar
//
//	# At most one cluster block in all files; every attribute is optional.
//	cluster {
//	  schema_prefix   = "sh"            # shard schemas are sh0000, sh0001, …: [a-z_][a-z0-9_]*
//	  schema_digits   = 4               # zero-padded width of the number, 1..9
//	  migrate_command = ["./migrate.sh", "--up"]
//	  weight_sql      = "SELECT pg_total_relation_size('users')"
//	  deactivate_sql  = "CREATE TRIGGER reject_writes BEFORE INSERT ON $1 ..."
//	  cleanup_after   = "168h"          # Go duration: h, m, s
//	  library_schema  = "microsharding" # schema of the stored-function library
//	  state_node      = "a"             # node holding the apply journal
//	  verify          = "full"          # moves' verification gate: off, count, full
//	  keep_copy       = "64MB"          # interrupted fast copies this big are continued
//	  rollback_window = "1h"            # moved shards can be rolled back this long
//	}
//
//	# A node: one PostgreSQL primary. The label is its name: letters,
//	# digits, '_' and '-', starting with a letter or '_'.
//	node "a" {
//	  dsn = env("PGMS_DSN_A")           # required, not empty
//	}
//	node "b" {
//	  dsn                  = "postgres://app@db-b:5432/app"
//	  drain                = false      # true: rebalance moves every shard off
//	  max_concurrent_moves = 2          # moves this node takes part in at once, >= 1 (default 1)
//	  capacity             = 2.0        # relative size for rebalancing, > 0 (default 1.0)
//	  publisher_dsn        = "host=db-b.internal dbname=app user=pgms passfile=/etc/pgms/pgpass"
//	}
//
//	# Placement: the label is a shard number or an inclusive range.
//	shards "0"       { node = "a" }
//	shards "1-128"   { node = "a" }
//	shards "129-256" { node = "b" }
//	shards "257-260" {
//	  node   = "b"
//	  active = false                    # exists on b but is not served (default true)
//	}
//	shards "300" {
//	  node   = "b"
//	  pinned = true                     # rebalance never moves it (default false)
//	}
//
//	# Shards to drop: live shards are never dropped unless listed here.
//	removed { shards = "400-410" }
//
//	# A node to retire: its shards move off as the shards blocks place
//	# them, then the node registry forgets it. A node block deleted without
//	# this is still visited (its shards are live data).
//	removed {
//	  node = "old1"
//	  dsn  = env("PGMS_DSN_OLD1")       # optional; default: the registered address
//	  lost = false                      # true: the server is gone for good with its data
//	}
//
// HCL allows one attribute in a one-line block: a shards block with active
// or pinned takes several lines.
//
// Defaults: schema_prefix "sh", schema_digits 4, no migrate_command, the
// total relation size as weight, no deactivate_sql, cleanup_after "168h",
// library_schema "microsharding", state_node the first node by name,
// verify "full", keep_copy "64MB", no rollback_window.
//
// verify is the level of the gate that compares a move's fast copy with
// the snapshot it was copied from, before streaming starts: "count"
// compares row counts per chunk of each table, "full" also a hash of the
// rows' content; a difference stops the move before the switch. The
// --verify flag of apply overrides it. keep_copy: a move's fast copy
// interrupted (or killed) after writing at least this much is kept, and
// the next apply continues it, copying again only what differs; "0"
// undoes every interrupted copy. The --keep-copy flag overrides it.
// rollback_window: after a move's cutover the source stays, inactive and
// fenced against writes, under its own name, and the new home streams the
// shard's changes back to it for this long, so that pgms rollback can
// switch back with no write lost; then cleanup renames it as usual. The
// --rollback-window flag of apply and move overrides it.
//
// publisher_dsn is how the destination server of a move from this node
// connects to it, for the move's subscription (and the source server of
// a move to this node, for a rollback window's stream back); it is stored in the
// destination's pg_subscription and read by that server, not by pgms. By
// default it is the dsn with the password pgms found (in the DSN,
// PGPASSWORD or .pgpass) added. Set it when the servers reach each other
// by other names than pgms does, or to store no password there: libpq's
// passfile=… or sslcert=…/sslkey=… name files on the destination servers
// (a subscription owned by a role that is not a superuser must carry a
// password on PostgreSQL 16 and later). See the README, "TLS and
// passwords".
//
// migrate_command runs after new shards are allocated and before they are
// activated. A list of strings is executed directly, with no shell: the
// first element is the program. A single string is run with /bin/sh -c,
// so it may use shell syntax (pipes, variables, &&).
//
// weight_sql runs once per shard with search_path set to the shard's
// schema and returns one row whose first column is the weight (a number,
// optionally with a unit such as "120 MB"). deactivate_sql runs on a move's
// source for each table of the renamed schema, $1 replaced by the quoted
// table name.
//
// Shard 0 is the global shard: rebalancing never moves it, pinned or not.
// Shard numbers must fit schema_digits (at most 9999 with 4 digits), and
// the files may list at most a million shards (MaxShards). No shard may be
// in two blocks, whether on the same node, on two nodes, or both placed and
// removed. An attribute set to null counts as not set.
//
// # Functions
//
// Expressions may call two functions; there are no variables.
//
//	env("NAME")            the environment variable NAME; an error if it is unset
//	env("NAME", "default") the variable, or the default when it is unset
//	file("path")           a file's content without its trailing newline,
//	                       the path relative to the directory of the
//	                       topology file
//
// Keep passwords out of the files: take DSNs from env(), or put the
// password in ~/.pgpass. A literal DSN with a password draws a warning,
// and everything pgms prints has passwords removed.
//
// # Diagnostics
//
// Load collects every problem rather than stopping at the first. Each is an
// hcl.Diagnostic whose Subject points at the offending text and whose
// Detail says how to fix it; WriteDiagnostics prints them with the
// position as file:line:col and the source lines.
package config
