cluster {
  verify = "paranoid"
}

node "a" { dsn = "host=a" }

shards "0-3" { node = "a" }
