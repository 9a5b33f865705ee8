node "a" { dsn = "" }
node "b" { dsn = env("PGMS_EMPTY") }
