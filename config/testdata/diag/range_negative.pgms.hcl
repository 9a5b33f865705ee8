node "a" { dsn = env("PGMS_DSN_A") }

shards "-3"   { node = "a" }
shards "4--6" { node = "a" }
