# The topology `make demo` starts from: every shard on node a, and two new
# nodes, b and c, still empty. The demo then asks pgms rebalance to spread
# the shards by weight and applies the result.

cluster {
  # Runs after new shards are created and before they are activated, with
  # the node in the libpq variables and the new schemas in PGMS_SCHEMAS.
  # The path is relative to the directory pgms runs in.
  migrate_command = ["./examples/demo/migrate.sh"]
}

node "a" { dsn = env("PGMS_DSN_A") }
node "b" { dsn = env("PGMS_DSN_B") }
node "c" { dsn = env("PGMS_DSN_C") }

# Shard 0 is the global shard; rebalancing never moves it.
shards "0" { node = "a" }

shards "1-12" { node = "a" }
