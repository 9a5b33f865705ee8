node "a" { dsn = env("PGMS_DSN_A") }

shards "1-128"   { node = "a" }
shards "100-200" { node = "a" }
