node "a" {
  dsn      = env("PGMS_DSN_A")
  capacity = 0
}
node "b" {
  dsn      = env("PGMS_DSN_B")
  capacity = -1.5
}
