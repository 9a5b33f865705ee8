node "a" { dsn = env("PGMS_DSN_A") }
node "b" { dsn = env("PGMS_DSN_B") }

shards "1-10" { node = "a" }
shards "7"    { node = "b" }
