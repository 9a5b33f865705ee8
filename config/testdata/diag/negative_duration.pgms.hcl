cluster {
  cleanup_after = "-1h"
}
node "a" { dsn = env("PGMS_DSN_A") }
