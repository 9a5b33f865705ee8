node "a" { dsn = env("PGMS_DSN_A") }

shard "1-10" { node = "a" }
