node "a" {
  dsn                  = env("PGMS_DSN_A")
  max_concurrent_moves = 0
}
