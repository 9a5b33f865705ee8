node "a" { dsn = env("PGMS_DSN_A") }

shards "a-b" { node = "a" }
