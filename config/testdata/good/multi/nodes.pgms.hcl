node "b" {
  dsn                  = env("PGMS_DSN_B")
  max_concurrent_moves = 2
  capacity             = 2.5
  publisher_dsn        = "host=db-b.internal dbname=app user=pgms passfile=/etc/pgms/pgpass"
}

node "a" { dsn = env("PGMS_DSN_A") }

node "c" {
  dsn   = env("PGMS_DSN_C", "postgres://app@db-c:5432/app")
  drain = true
}
