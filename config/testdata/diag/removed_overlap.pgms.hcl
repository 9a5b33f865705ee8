node "a" { dsn = env("PGMS_DSN_A") }

shards "1-100" { node = "a" }

removed { shards = "90-110" }
removed { shards = "105" }
