cluster {
  cleanup_after = "7 days"
}
node "a" { dsn = env("PGMS_DSN_A") }
