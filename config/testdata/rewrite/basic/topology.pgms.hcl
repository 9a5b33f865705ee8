# Nodes
node "a" { dsn = env("PGMS_DSN_A") }
node "b" { dsn = env("PGMS_DSN_B") }
node "c" { dsn = env("PGMS_DSN_C", "postgres://app@db-c/app") }

# The global shard.
shards "0" { node = "a" } # never moves

# First half on a.
shards "1-128" { node = "a" }
# Second half on b.
shards "129-256" { node = "b" } # busy
shards "257-260" {
  node   = "b" # new customers
  active = false
}
shards "300" {
  node   = "b"
  pinned = true
}
