node "a" { dsn = env("PGMS_DSN_A") }
node "b" { dsn = env("PGMS_DSN_B") }

shards "1-50" { node = "a" }
