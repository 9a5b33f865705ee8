node "a" { dsn = env("PGMS_DSN_A") }

shards "1-" { node = "a" }
