node "a" { dsn = "postgres://app@db-a/app" }
node "c" { dsn = "postgres://app@db-c/app" }
removed { node = "b" }
removed { node = "b" }
removed { node = "c" }
removed {
  node   = "d"
  shards = "1"
}
removed {
  shards = "9"
  lost   = true
}
shards "1-2" { node = "b" }
