node "a" { dsn = var.dsn_a }
node "b" { dsn = lookup("PGMS_DSN_B") }
