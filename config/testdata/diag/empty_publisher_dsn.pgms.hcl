node "a" {
  dsn           = env("PGMS_DSN_A")
  publisher_dsn = env("PGMS_EMPTY")
}
