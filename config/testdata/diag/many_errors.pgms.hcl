# Every mistake here is reported at once.
cluster {
  schema_digits = 0
  cleanup_after = "soon"
}

node "a" { dsn = env("PGMS_DSN_A") }
node "b" {}

shards "0-10"  { node = "a" }
shards "5-20"  { node = "b" }
shards "30-25" { node = "a" }
shards "40"    { node = "z" }
