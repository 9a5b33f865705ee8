node "b" { dsn = env("PGMS_DSN_B") }

shards "257-260" { node = "b"  active = false }
