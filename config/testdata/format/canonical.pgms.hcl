node "a" { dsn = env("PGMS_DSN_A") }

shards "0" { node = "a" }
