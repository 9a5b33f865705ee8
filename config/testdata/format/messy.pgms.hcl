# Layout and labels out of the canonical form.
cluster {
    schema_prefix="sh"
  cleanup_after =   "24h"   # a day
}

node "a" {
dsn = env("PGMS_DSN_A")
    max_concurrent_moves=2
  capacity = 1.5
}

shards "000" { node = "a" }
shards " 1 - 0010 " { node="a" }
shards "11-11" {
  node = "a"
     active = false # not yet
}
shards "x-y" { node = "a" } # malformed: left for validate

removed {
  shards = "0400 - 0410" # dropped in May
}
