node "1st" { dsn = env("PGMS_DSN_A") }
node "db one" { dsn = env("PGMS_DSN_B") }
