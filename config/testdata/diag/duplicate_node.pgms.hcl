node "a" { dsn = env("PGMS_DSN_A") }
node "b" { dsn = env("PGMS_DSN_B") }
node "a" { dsn = env("PGMS_DSN_B") }
