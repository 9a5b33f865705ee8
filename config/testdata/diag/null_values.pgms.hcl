cluster {
  schema_digits = null
}

node "a" { dsn = null }

shards "1-10" { node = null }

removed { shards = null }
