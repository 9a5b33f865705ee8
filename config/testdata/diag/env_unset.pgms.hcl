node "a" { dsn = env("PGMS_DSN_UNSET") }
node "b" { dsn = env("PGMS_DSN_B", "x", "y") }
