cluster {
  keep_copy = "lots"
}

node "a" { dsn = "host=a" }

shards "0-3" { node = "a" }
