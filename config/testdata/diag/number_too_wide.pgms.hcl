cluster {
  schema_digits = 2
}

node "a" { dsn = env("PGMS_DSN_A") }

shards "0-99"  { node = "a" }
shards "100"   { node = "a" }
removed { shards = "150-160" }
