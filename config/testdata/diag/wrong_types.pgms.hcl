cluster {
  schema_digits   = "four"
  migrate_command = 42
  weight_sql      = ["SELECT 1"]
}
node "a" {
  dsn   = env("PGMS_DSN_A")
  drain = "maybe"
}
shards "1" {
  node   = "a"
  active = 1
}
