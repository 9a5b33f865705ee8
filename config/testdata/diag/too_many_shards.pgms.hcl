cluster {
  schema_digits = 9
}

node "a" { dsn = env("PGMS_DSN_A") }

shards "1-1000"           { node = "a" }
shards "100000-199999999" { node = "a" }
