node "a" {
  dsn  = env("PGMS_DSN_A")
  drian = true
}
