node "a" { dsn = env("PGMS_DSN_A") }

shards "5-3" { node = "a" }
