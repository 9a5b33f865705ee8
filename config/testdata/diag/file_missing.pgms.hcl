node "a" { dsn = file("secrets/missing.dsn") }
