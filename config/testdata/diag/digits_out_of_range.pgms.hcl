cluster {
  schema_digits = 10
}
node "a" { dsn = env("PGMS_DSN_A") }
shards "0" { node = "a" }
