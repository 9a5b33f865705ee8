cluster {
  state_node = "primary2"
}
node "primary1" { dsn = env("PGMS_DSN_A") }
node "replica" { dsn = env("PGMS_DSN_B") }
