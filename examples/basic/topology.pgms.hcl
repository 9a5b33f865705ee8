# A small cluster: three PostgreSQL primaries and shards 0 to 12.
#
# pgms reads every *.pgms.hcl file of this directory; blocks may be split
# over several files. Check the files with:
#
#   PGMS_DSN_A=... PGMS_DSN_B=... PGMS_DSN_C=... pgms validate --config examples/basic
#
# and put them in canonical layout with pgms fmt --config examples/basic.

# Cluster-wide settings. Every one is optional; the values shown are the
# defaults unless said otherwise.
cluster {
  # Shard schemas are the prefix plus the zero-padded number: sh0000,
  # sh0001, ... The prefix takes lower-case letters, digits and '_'.
  schema_prefix = "sh"
  schema_digits = 4

  # Run after new shards are created and before they are activated, with
  # the node's DSN and the shard range in the environment. A list is run
  # directly; a single string is run with /bin/sh -c. Default: none.
  # migrate_command = ["./migrate.sh", "--up"]

  # The weight of a shard for rebalancing, run with search_path set to the
  # shard; the first column of its row is the weight. Default: the total
  # size of the shard's tables.
  # weight_sql = "SELECT count(*) FROM users"

  # How long the source copy of a moved shard is kept (renamed to
  # sh0007old<timestamp>) before cleanup drops it.
  cleanup_after = "168h"

  # The schema of the stored-function library on every node.
  library_schema = "microsharding"

  # The node keeping the journal of applies. Default: the first node by name.
  state_node = "a"
}

# The nodes. DSNs come from the environment so that no password is kept in
# git; a password may also live in ~/.pgpass.
node "a" {
  dsn = env("PGMS_DSN_A")
}

node "b" {
  dsn = env("PGMS_DSN_B")
  # b is twice the size of the others: rebalancing gives it twice the
  # weight (default 1.0).
  capacity = 2.0
  # Moves b takes part in at once, as source or destination (default 1).
  max_concurrent_moves = 2
}

node "c" {
  dsn = env("PGMS_DSN_C")
  # true would make rebalancing move every shard off c, before the node
  # is retired.
  drain = false
}

# Placement: which node holds each shard. The label is a shard number or
# an inclusive range.

# Shard 0 is the global shard; rebalancing never moves it.
shards "0" { node = "a" }

shards "1-4" { node = "a" }
shards "5-8" { node = "b" }
shards "9-10" { node = "c" }

# Created on c but not served yet: applications do not see them until
# active is true (the default).
shards "11-12" {
  node   = "c"
  active = false
}
